"""The one builder of a multi-task model, called by pretrain, finetune, the benchmarks and the tests.

``build_model`` makes the encoder (new from a size preset, from ``--init-from``, or from a saved
config such as a resumed run's), turns it into the chosen architecture, and gives every task
its head. Random initialisation happens in that order (encoder, architecture, heads in task
order), so a seed gives the same model every time.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import torch
from transformers import ErnieConfig, ErnieModel

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import ARCHITECTURES, Architecture, ArchitectureOptions
from ernie_cpt.modeling.encoder import ModelOptions, encoder_config, encoder_from_checkpoint
from ernie_cpt.modeling.heads import MaskedLMHead, build_head

log = logging.getLogger(__name__)


class TaskSpec(Protocol):
    """What the builder needs of a task: the name of its head and its number of classes."""

    head: str
    num_labels: int


def new_encoder(options: ModelOptions, vocab_size: int, max_seq_length: int, num_task_ids: int,
                config: ErnieConfig | None = None) -> tuple[ErnieModel, dict[str, torch.Tensor]]:
    """The encoder and any masked-LM head weights (``--init-from`` a checkpoint that has them):
    from ``config`` if given, else from ``options.init_from``, else new from the size preset.
    Raises UserError when ``max_seq_length`` exceeds the encoder's positions."""
    mlm_weights: dict[str, torch.Tensor] = {}
    if config is not None:
        encoder = ErnieModel(config)
    elif options.init_from:
        encoder, mlm_weights = encoder_from_checkpoint(options.init_from, num_task_ids)
    else:
        encoder = ErnieModel(encoder_config(options, vocab_size, max_seq_length, num_task_ids))
    if encoder.config.max_position_embeddings < max_seq_length:
        raise UserError(f"--max-seq-length {max_seq_length} exceeds the model's "
                        f"{encoder.config.max_position_embeddings} positions; lower it")
    return encoder, mlm_weights


def build_model(tasks: Mapping[str, TaskSpec], task_ids: dict[str, int], options: ModelOptions,
                architecture: ArchitectureOptions, vocab_size: int, max_seq_length: int, num_task_ids: int,
                config: ErnieConfig | None = None) -> Architecture:
    """The architecture ``architecture.architecture`` over a new encoder (see :func:`new_encoder`),
    with one head per task of ``tasks`` (in order) and each task on its row ``task_ids[task]``
    of the task embedding. A masked-LM head starts from the ``--init-from`` checkpoint's MLM
    head when it has one."""
    encoder, mlm_weights = new_encoder(options, vocab_size, max_seq_length, num_task_ids, config)
    model = ARCHITECTURES.get(architecture.architecture)(encoder, task_ids, architecture)
    for name, task in tasks.items():
        head = build_head(task.head, model.config, task.num_labels, model.word_embeddings())
        if isinstance(head, MaskedLMHead) and mlm_weights:
            head.load_state_dict({k: v for k, v in mlm_weights.items() if k in head.state_dict()}, strict=False)
        model.add_head(name, head)
    return model


class HeadSpec(NamedTuple):
    """A task's head as ``Architecture.describe()`` records it."""

    head: str
    num_labels: int


def model_from_description(description: dict[str, Any], config: ErnieConfig) -> Architecture:
    """The model ``Architecture.describe()`` described, over a new encoder of ``config`` (its
    ``encoder_config.json``), with new weights: load the saved ``state_dict()`` into it (strictly)
    to get the saved model back. Tasks added with ``add_task`` are built like the others."""
    fields = {field.name for field in dataclasses.fields(ArchitectureOptions)}
    options = ArchitectureOptions(**{key: value for key, value in description.items() if key in fields})
    tasks = {task: HeadSpec(**spec) for task, spec in description["heads"].items()}
    return build_model(tasks, description["task_ids"], ModelOptions(), options, config.vocab_size,
                       config.max_position_embeddings, config.task_type_vocab_size, config)
