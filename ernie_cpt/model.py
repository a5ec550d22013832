"""The encoder (`transformers.ErnieModel` with the ERNIE 2.0 task embedding) and per-task heads.

``ErnieMultiTask`` runs the shared encoder with each task's id in ``task_type_ids`` and
scores the task's head with cross-entropy (every ERNIE 2.0 task is a classification).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, ErnieConfig, ErnieModel, PretrainedConfig

from ernie_cpt.errors import UserError
from ernie_cpt.options import option
from ernie_cpt.safe_loading import load_weights, weight_files
from pretasks.registry import NUM_TASK_IDS

log = logging.getLogger(__name__)

# (layers, hidden size, attention heads, feed-forward size); `base` has BERT-base dimensions.
PRESETS = {
    "tiny": (2, 128, 2, 512),
    "mini": (4, 256, 4, 1024),
    "small": (4, 512, 8, 2048),
    "medium": (8, 512, 8, 2048),
    "base": (12, 768, 12, 3072),
}
ENCODER_PREFIXES = ("ernie.", "bert.")


@dataclass
class ModelOptions:
    """Model: the encoder's size, or the checkpoint it starts from"""

    model_size: str = option("mini", "Size preset: tiny L2/H128, mini L4/H256, small L4/H512, medium L8/H512, "
                             "base L12/H768 (BERT-base)", choices=tuple(PRESETS))
    num_layers: int | None = option(None, "Override the preset's number of layers")
    hidden_size: int | None = option(None, "Override the preset's hidden size")
    num_heads: int | None = option(None, "Override the preset's number of attention heads")
    intermediate_size: int | None = option(None, "Override the preset's feed-forward size")
    dropout: float = option(0.1, "Dropout of hidden states and attention probabilities")
    init_from: str | None = option(None, "Start from a local BERT or ERNIE checkpoint folder (safetensors); "
                                   "its tokenizer is used and the task embedding is new")


def encoder_config(options: ModelOptions, vocab_size: int, max_positions: int) -> ErnieConfig:
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
        max_position_embeddings=max(max_positions, 128), use_task_id=True, task_type_vocab_size=NUM_TASK_IDS,
    )


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


def encoder_from_checkpoint(path: str | Path) -> tuple[ErnieModel, dict[str, torch.Tensor]]:
    """An ErnieModel with the encoder weights of a local BERT or ERNIE checkpoint, a new task
    embedding, and the checkpoint's MLM head weights (``cls.predictions.*``) if it has any."""
    path = Path(path)
    source = _source_config(path)
    config = ErnieConfig(**{k: getattr(source, k) for k in (
        "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
        "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
        "type_vocab_size", "layer_norm_eps", "pad_token_id")}, use_task_id=True, task_type_vocab_size=NUM_TASK_IDS)
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


class TaskOutput(NamedTuple):
    loss: torch.Tensor
    logits: torch.Tensor
    labels: torch.Tensor


class ErnieMultiTask(nn.Module):
    """The shared ERNIE encoder and one head per task, each task with its own task id and
    number of classes."""

    def __init__(self, encoder: ErnieModel, heads: dict[str, nn.Module], task_ids: dict[str, int],
                 num_labels: dict[str, int]) -> None:
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleDict(heads)
        self.task_ids = task_ids
        self.num_labels = num_labels

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        input_ids = batch["input_ids"]
        out = self.encoder(
            input_ids=input_ids,
            attention_mask=batch["attention_mask"],
            token_type_ids=batch["token_type_ids"],
            task_type_ids=torch.full_like(input_ids, self.task_ids[task]),
        )
        logits, labels = self.heads[task](out.last_hidden_state, out.pooler_output, batch)
        return TaskOutput(F.cross_entropy(logits.float(), labels), logits, labels)
