"""The encoder: `transformers.ErnieModel` with the ERNIE 2.0 task embedding, new from a size
preset or loaded from a local BERT/ERNIE checkpoint (``--init-from``).

An ``--init-from`` folder's tokenizer and config must fit the run, checked before any work
(:func:`check_init_from`): ``--max-seq-length`` within its positions, segment ids within its token
type vocabulary, a casing the tasks accept. A tokenizer larger than the embedding matrix (added
tokens) gets the standard Hugging Face remedy, ``resize_token_embeddings`` (new rows at the mean
of the old ones), with a warning; a smaller one leaves some rows unused, as in many BERTs.

The task embedding has as many rows as the run's task ids need (``task_type_vocab_size``, given
by the caller: :mod:`ernie_cpt.training.task_ids`), not one per installed task. An architecture
(``ernie_cpt.modeling.architectures``) decides how the tasks share the encoder's layers.
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
        hidden_dropout_prob=options.dropout, attention_probs_dropout_prob=options.attention_dropout,
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


def check_init_from(path: str | Path, max_seq_length: int = 0, token_types: int = 1) -> PretrainedConfig:
    """Refuse, before any work, an --init-from folder that cannot be loaded (no config, pickled
    weights) or does not fit the run (``check_fits``). Returns the folder's config."""
    source = _source_config(Path(path))
    weight_files(Path(path), "--init-from")
    check_fits(source, path, max_seq_length, token_types)
    return source


def check_fits(source: PretrainedConfig, path: str | Path, max_seq_length: int, token_types: int) -> None:
    """Raise UserError when the encoder of --init-from ``path`` (config ``source``) has fewer positions
    than ``max_seq_length`` or fewer token types (segment ids) than the tasks' inputs use."""
    if max_seq_length > source.max_position_embeddings:
        raise UserError(f"--max-seq-length {max_seq_length} exceeds the {source.max_position_embeddings} positions of "
                        f"--init-from {path}; lower --max-seq-length to {source.max_position_embeddings} or less")
    if token_types > source.type_vocab_size:
        raise UserError(f"the tasks put {token_types} segments in an input (token type ids 0 to {token_types - 1}), "
                        f"but --init-from {path} has a token type vocabulary of {source.type_vocab_size}; leave out "
                        f"the sentence-pair tasks and sentence_reordering, or start from another checkpoint")


def _fit_vocabulary(encoder: ErnieModel, mlm: dict[str, torch.Tensor], vocab_size: int, path: Path) -> None:
    """Resize the embeddings (and the MLM bias) of ``encoder`` to a tokenizer of ``vocab_size`` tokens
    when it has more tokens than the embedding matrix has rows (added tokens), with a warning."""
    rows = encoder.config.vocab_size
    if vocab_size <= rows:
        return
    log.warning("the tokenizer of --init-from %s has %d tokens but its embedding matrix %d rows (added tokens); "
                "the embeddings are resized to %d with resize_token_embeddings (new rows at the mean of the old ones)",
                path, vocab_size, rows, vocab_size)
    encoder.resize_token_embeddings(vocab_size)
    for key, tensor in mlm.items():
        if key in ("bias", "decoder.bias") and tensor.shape == (rows,):
            mlm[key] = torch.cat([tensor, tensor.new_zeros(vocab_size - rows)])


def encoder_from_checkpoint(path: str | Path, task_ids: int,
                            vocab_size: int = 0) -> tuple[ErnieModel, dict[str, torch.Tensor]]:
    """An ErnieModel with the encoder weights of a local BERT or ERNIE checkpoint, a new task
    embedding of ``task_ids`` rows, and the checkpoint's MLM head weights (``cls.predictions.*``)
    if it has any; its embeddings are resized to a tokenizer of ``vocab_size`` tokens if that is
    larger. Raises UserError when the folder is not a BERT/ERNIE checkpoint."""
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
    if "bias" not in mlm and "decoder.bias" in mlm:  # saved only as the decoder's (tied to it in transformers)
        mlm["bias"] = mlm["decoder.bias"]
    _fit_vocabulary(encoder, mlm, vocab_size, path)
    return encoder, mlm
