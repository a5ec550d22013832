"""The one builder of a multi-task model, called by pretrain, finetune, the loader, the benchmarks
and the tests.

``build_model`` makes the encoder (new from a size preset, from a BERT/ERNIE ``--init-from``
folder, or from a saved config such as a resumed run's), turns it into the chosen architecture,
and gives every task its head. Random initialisation happens in that order (encoder,
architecture, heads in task order), so a seed gives the same model every time. Started from an
ernie-cpt model (``source``: ``--init-from`` an export or a run), it then takes every weight of
the source that it has too: the encoder with the task embedding, and the head of every task the
source trained with the same head and classes.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import ErnieConfig, ErnieModel

from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from ernie_cpt.modeling.architectures import ARCHITECTURES, Architecture, ArchitectureOptions
from ernie_cpt.modeling.encoder import ModelOptions, encoder_config, encoder_from_checkpoint
from ernie_cpt.modeling.heads import MaskedLMHead, build_head

log = logging.getLogger(__name__)


class TaskSpec(Protocol):
    """What the builder needs of a task: the name of its head and its number of classes."""

    @property
    def head(self) -> str: ...
    @property
    def num_labels(self) -> int: ...


@dataclass(frozen=True)
class HeadSpec:
    """A :class:`TaskSpec` without the task: what rebuilds a saved model's head."""

    head: str
    num_labels: int


def new_encoder(options: ModelOptions, vocab_size: int, max_seq_length: int, num_task_ids: int,
                config: ErnieConfig | None = None) -> tuple[ErnieModel, dict[str, torch.Tensor]]:
    """The encoder and any masked-LM head weights (``--init-from`` a checkpoint that has them):
    from ``config`` if given, else from ``options.init_from``, else new from the size preset."""
    mlm_weights: dict[str, torch.Tensor] = {}
    if config is not None:
        encoder = ErnieModel(config)
    elif options.init_from:
        encoder, mlm_weights = encoder_from_checkpoint(options.init_from, num_task_ids, vocab_size)
    else:
        encoder = ErnieModel(encoder_config(options, vocab_size, max_seq_length, num_task_ids))
    return encoder, mlm_weights


def build_model(tasks: Mapping[str, TaskSpec], task_ids: dict[str, int], options: ModelOptions,
                architecture: ArchitectureOptions, vocab_size: int, max_seq_length: int, num_task_ids: int,
                config: ErnieConfig | None = None, source: Architecture | None = None,
                target_counts: Mapping[str, Mapping[int, int]] | None = None,
                architecture_options: Any = None) -> Architecture:
    """The architecture ``architecture.architecture`` (with ``architecture_options``, its own options:
    an instance of its ``options_class``, its defaults when None) over a new encoder (see
    :func:`new_encoder`), or over ``source``'s, with one head per task of ``tasks`` (in order) and each
    task on its row ``task_ids[task]`` of the task embedding. A masked-LM head starts from the ``--init-from``
    checkpoint's MLM head when it has one; with ``source``, see :func:`_take_weights`. Else, with
    ``options.mlm_bias_init == "prior"``, its bias starts from the prior of the task's targets
    counted in ``target_counts[task]`` (see :meth:`MaskedLMHead.init_bias_from_prior`)."""
    cls = ARCHITECTURES.get(architecture.architecture)
    own = architecture_options if architecture_options is not None or cls.options_class is None \
        else cls.options_class()
    mlm_weights: dict[str, torch.Tensor]
    if source is not None:
        encoder, mlm_weights = _source_encoder(source, architecture, own), {}
    else:
        encoder, mlm_weights = new_encoder(options, vocab_size, max_seq_length, num_task_ids, config)
    if encoder.config.max_position_embeddings < max_seq_length:
        raise UserError(f"--max-seq-length {max_seq_length} exceeds the model's "
                        f"{encoder.config.max_position_embeddings} positions; lower it")
    if max(task_ids.values(), default=0) >= encoder.config.task_type_vocab_size:
        raise UserError(f"the task embedding of the model has {encoder.config.task_type_vocab_size} rows, fewer than "
                        f"the {max(task_ids.values()) + 1} task ids of the tasks; start a new run for these tasks")
    # a registered architecture is made from the encoder; Architecture.__init__ itself takes the encoder's config
    model = cls(encoder, task_ids, architecture, own)  # type: ignore[arg-type]
    for name, task in tasks.items():
        head = build_head(task.head, model.config, task.num_labels, model.word_embeddings())
        if isinstance(head, MaskedLMHead) and options.mlm_bias_init == "prior" and target_counts is not None \
                and name in target_counts:
            head.init_bias_from_prior(target_counts[name])
            if "bias" not in mlm_weights:
                log.info("%s: the masked-LM bias starts at the prior of %s (--mlm-bias-init prior)", name,
                         plural(sum(target_counts[name].values()), "sampled target"))
        if isinstance(head, MaskedLMHead) and mlm_weights:
            head.load_state_dict({k: v for k, v in mlm_weights.items() if k in head.state_dict()}, strict=False)
        model.add_head(name, head)
    if source is not None:
        _take_weights(model, source)
    return model


def _source_encoder(source: Architecture, architecture: ArchitectureOptions, own: Any) -> ErnieModel:
    """The ErnieModel a new architecture is built from when it starts from ``source``: a copy of
    the one ``source`` is (hard sharing), else a new one of its config, which :func:`_take_weights`
    fills. An architecture that does not fold can only continue as itself, with the same options
    (``architecture`` and ``own``, the new one's own options)."""
    folded = source.ernie_model()
    if folded is not None:
        return copy.deepcopy(folded)
    theirs, ours = source.describe(), {**dataclasses.asdict(architecture), **_fields(own)}
    differ = [k for k, value in theirs.items() if ours.get(k, value) != value]
    if differ:
        flags = " ".join(f"--{k.replace('_', '-')} {theirs[k]}" for k in differ)
        raise UserError(f"--init-from is a {source.name} model, which does not fold into one encoder, so it starts "
                        f"only a run of the same architecture: pass {flags}")
    return ErnieModel(source.config)


def _take_weights(model: Architecture, source: Architecture) -> None:
    """Copy into ``model`` every tensor of ``source`` it has under the same name and shape (the encoder,
    the task embedding, routing, and the heads of the tasks both have with the same head and classes)."""
    theirs, ours = source.state_dict(), model.state_dict()
    taken = {k: v for k, v in theirs.items() if k in ours and ours[k].shape == v.shape}
    model.load_state_dict(taken, strict=False)
    new_heads = sorted({k.split(".")[1] for k in ours if k.startswith("heads.") and k not in taken})
    kept = sorted(set(model.heads) - set(new_heads))
    log.info("Started from the ernie-cpt model given to --init-from: encoder, task embedding and the heads of %s%s",
             ", ".join(kept) or "no task", f"; new heads: {', '.join(new_heads)}" if new_heads else "")


def _fields(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options) if options is not None else {}


def _from(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of the options dataclass ``cls`` from the values of its fields in ``values`` (others ignored)."""
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


def model_from_description(description: dict[str, Any], config: ErnieConfig) -> Architecture:
    """The model ``Architecture.describe()`` described, over a new encoder of ``config`` (its
    ``encoder_config.json``), with new weights: load the saved ``state_dict()`` into it (strictly)
    to get the saved model back. Tasks added with ``add_task`` are built like the others. The
    description's options fields that the architecture does not read are ignored (a model exported
    before the options moved into the architectures recorded every architecture's)."""
    sharing = _from(ArchitectureOptions, description)
    own_class = ARCHITECTURES.get(sharing.architecture).options_class
    tasks = {task: HeadSpec(**spec) for task, spec in description["heads"].items()}
    return build_model(tasks, description["task_ids"], ModelOptions(), sharing, config.vocab_size,
                       config.max_position_embeddings, config.task_type_vocab_size, config,
                       architecture_options=None if own_class is None else _from(own_class, description))
