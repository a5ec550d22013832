"""The encoder: `transformers.ErnieModel` with the ERNIE 2.0 task embedding, new from a size
preset or loaded from a local BERT/ERNIE checkpoint (``--init-from``).

The task embedding has one row per registered task (``task_type_vocab_size``, given by the
caller from the task registry). An architecture (``ernie_cpt.modeling.architectures``) decides
how the tasks share the encoder's layers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, ErnieConfig, ErnieModel, PretrainedConfig

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.options import PRESETS, ModelOptions
from ernie_cpt.modeling.safe_loading import load_weights, weight_files

log = logging.getLogger(__name__)

ENCODER_PREFIXES = ("ernie.", "bert.")


def encoder_config(options: ModelOptions, vocab_size: int, max_positions: int, task_ids: int) -> ErnieConfig:
    """The ErnieConfig of a new encoder: the preset's sizes with any overrides, ``task_ids`` rows
    of the task embedding and at least ``max_positions`` (>= 128) positions. Raises UserError
    when the hidden size is not a multiple of the attention heads."""
    layers, hidden, heads, ffn = PRESETS[options.model_size]
    hidden = options.hidden_size or hidden
    heads = options.num_heads or heads
    if hidden % heads:
        raise UserError(f"hidden size {hidden} is not a multiple of {heads} attention heads; "
                        f"change --hidden-size or --num-heads")
    return ErnieConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=options.num_layers or layers,
        num_attention_heads=heads, intermediate_size=options.intermediate_size or ffn,
        hidden_dropout_prob=options.dropout, attention_probs_dropout_prob=options.dropout,
        max_position_embeddings=max(max_positions, 128), use_task_id=True, task_type_vocab_size=task_ids,
    )


def preset_layers(options: ModelOptions) -> int | None:
    """The number of layers a new encoder of ``options`` gets; None with --init-from (the checkpoint decides)."""
    return None if options.init_from else options.num_layers or PRESETS[options.model_size][0]


def _checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors checkpoint; pickled weights are refused."""
    weights: dict[str, torch.Tensor] = {}
    for file in weight_files(path, "--init-from"):
        weights.update(load_weights(file))
    return weights


def _source_config(path: Path) -> PretrainedConfig:
    try:
        source = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"--init-from {path} is not a model folder with a config.json") from e
    if source.model_type not in ("bert", "ernie"):
        raise UserError(f"--init-from {path} is a '{source.model_type}' model; only BERT and ERNIE are supported")
    return source


def check_init_from(path: str | Path) -> None:
    """Refuse an --init-from folder that cannot be loaded (no config, pickled weights) before any work."""
    _source_config(Path(path))
    weight_files(Path(path), "--init-from")


def encoder_from_checkpoint(path: str | Path, task_ids: int) -> tuple[ErnieModel, dict[str, torch.Tensor]]:
    """An ErnieModel with the encoder weights of a local BERT or ERNIE checkpoint, a new task
    embedding of ``task_ids`` rows, and the checkpoint's MLM head weights (``cls.predictions.*``)
    if it has any. Raises UserError when the folder is not a BERT/ERNIE checkpoint."""
    path = Path(path)
    source = _source_config(path)
    config = ErnieConfig(**{k: getattr(source, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
        "type_vocab_size", "layer_norm_eps", "pad_token_id")}, use_task_id=True, task_type_vocab_size=task_ids)
    encoder = ErnieModel(config)
    weights = _checkpoint_weights(path)
    mapped = {}
    for key, tensor in weights.items():
        for prefix in ENCODER_PREFIXES:
            key = key.removeprefix(prefix)
        mapped[key] = tensor
    expected = set(encoder.state_dict())
    missing = expected - set(mapped) - {"embeddings.task_type_embeddings.weight"}
    if any(not k.startswith("pooler.") for k in missing):
        raise UserError(f"--init-from {path} lacks encoder weights such as {sorted(missing)[0]}; "
                        f"is it a BERT/ERNIE checkpoint?")
    encoder.load_state_dict({k: v for k, v in mapped.items() if k in expected}, strict=False)
    log.info("Initialised the encoder from %s (new: task embedding%s)", path, ", pooler" if missing else "")
    mlm = {k.removeprefix("cls.predictions."): v for k, v in weights.items() if k.startswith("cls.predictions.")}
    return encoder, mlm
