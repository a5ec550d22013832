"""The folders ernie-cpt writes a model to, and reads it back from: every head and the task embedding.

A folder holds ``ernie_cpt_model.json`` (:func:`describe_model`: the architecture's
``describe()``, the task ids, each task's head name and classes, the encoder's ErnieConfig) and
the weights in one of two layouts:

* ``state_dict``: the architecture's whole ``state_dict()`` in one safetensors file (checkpoints,
  and exports of architectures that do not fold into one ErnieModel: mmoe, cgc, ple, ...);
* ``transformers`` (an architecture that is one ErnieModel, ``Architecture.ernie_model()``): a
  Hugging Face folder written by ``save_pretrained``. With a masked-LM head on task id 0 (the id
  ``ErnieForMaskedLM`` feeds when given no ``task_type_ids``), it is an ``ErnieForMaskedLM``
  checkpoint: the head as ``cls.predictions.*``, its projection tied to the word embeddings as in
  BERT (Devlin et al. 2019), and the trained pooler kept as ``ernie.pooler.*`` for
  ``ErnieModel`` and ``ErnieForSequenceClassification`` (``ErnieForMaskedLM`` has no pooler and
  reports those two tensors as unused). Without one it is an ``ErnieModel``. The other heads go
  to ``ernie_cpt_heads.safetensors`` under their state-dict names.

:func:`read_model_folder` rebuilds the architecture with :func:`~ernie_cpt.modeling.builder.build_model`
and loads every tensor; a tensor missing or left over is an error, never a silent new weight.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformers import ErnieConfig, ErnieForMaskedLM, ErnieModel

from ernie_cpt import __version__
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.builder import model_from_description
from ernie_cpt.modeling.heads import MaskedLMHead
from ernie_cpt.modeling.safe_loading import load_weights, weight_files

MODEL_JSON = "ernie_cpt_model.json"
HEADS_FILE = "ernie_cpt_heads.safetensors"
STATE_DICT_FILE = "ernie_cpt_model.safetensors"
REQUIRED_KEYS = ("architecture", "task_ids", "heads", "encoder_config")
MLM_PREFIX = "cls.predictions."
ENCODER_PREFIX = "ernie."


def describe_model(model: Architecture) -> dict[str, Any]:
    """What rebuilds ``model`` (with :func:`rebuild`) before its weights are loaded: the architecture
    options of its ``describe()``, its task ids and heads, and the encoder config."""
    described = model.describe()
    return {"ernie_cpt_version": __version__,
            "architecture": {k: v for k, v in described.items() if k not in ("task_ids", "heads")},
            "task_ids": described["task_ids"], "heads": described["heads"],
            "encoder_config": model.config.to_diff_dict()}


def rebuild(description: Mapping[str, Any]) -> Architecture:
    """The architecture ``description`` (an ``ernie_cpt_model.json``) describes, with new weights."""
    return model_from_description({**description["architecture"], "task_ids": description["task_ids"],
                                   "heads": description["heads"]},
                                  ErnieConfig.from_dict(description["encoder_config"]))


def _module_prefix(model: torch.nn.Module, module: torch.nn.Module) -> str:
    """The state-dict prefix of ``module`` inside ``model`` ("encoder." for hard sharing)."""
    name = next(name for name, child in model.named_modules() if child is module)
    return f"{name}." if name else ""


def _masked_lm_task(model: Architecture) -> str | None:
    """The task whose masked-LM head ``ErnieForMaskedLM`` can be: on task id 0, its default."""
    return next((task for task, head in model.heads.items()
                 if isinstance(head, MaskedLMHead) and model.task_ids[task] == 0), None)


def _save_transformers(model: Architecture, encoder: ErnieModel, folder: Path) -> dict[str, Any]:
    """``save_pretrained`` of the ErnieForMaskedLM (or ErnieModel) the model is; the other heads apart."""
    mlm_task = _masked_lm_task(model)
    if mlm_task is None:
        encoder.save_pretrained(str(folder))
    else:
        hf = ErnieForMaskedLM(copy.deepcopy(encoder.config))
        encoder_weights = encoder.state_dict()
        hf.ernie.load_state_dict({k: v for k, v in encoder_weights.items() if not k.startswith("pooler.")})
        missing, unexpected = hf.cls.predictions.load_state_dict(model.heads[mlm_task].state_dict(), strict=False)
        if unexpected or set(missing) != {"decoder.weight", "decoder.bias"}:  # tied: word embeddings, bias
            raise ValueError(f"the masked-LM head does not fit ErnieForMaskedLM's (missing {missing}, left over "
                             f"{unexpected})")
        weights = {**hf.state_dict(), **{ENCODER_PREFIX + k: v for k, v in encoder_weights.items()
                                         if k.startswith("pooler.")}}
        hf.save_pretrained(str(folder), state_dict=weights)
    others = {f"heads.{task}.{k}": v.detach().contiguous().cpu() for task, head in model.heads.items()
              if task != mlm_task for k, v in head.state_dict().items()}
    if others:
        save_file(others, folder / HEADS_FILE, metadata={"format": "pt"})
    return {"layout": "transformers", "masked_lm_task": mlm_task, "heads_file": HEADS_FILE if others else None}


def save_model_folder(model: Architecture, folder: Path, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``model`` into the existing, empty ``folder`` (weights and ``ernie_cpt_model.json``, with
    ``extra`` added to it); returns the description written. The layout is ``transformers`` where
    the architecture is one ErnieModel, ``state_dict`` otherwise (see the module)."""
    encoder = model.ernie_model()
    if encoder is not None:
        layout = _save_transformers(model, encoder, folder)
    else:
        weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(weights, folder / STATE_DICT_FILE, metadata={"format": "pt"})
        layout = {"layout": "state_dict", "weights": STATE_DICT_FILE}
    description = {**describe_model(model), **layout, **extra}
    (folder / MODEL_JSON).write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def read_description(folder: Path) -> dict[str, Any]:
    """``folder``'s ``ernie_cpt_model.json``; a UserError when it has none or it is not one."""
    path = folder / MODEL_JSON
    if not path.is_file():
        raise UserError(f"{folder} has no {MODEL_JSON}; pass a folder written by ernie-cpt export, a checkpoint "
                        f"folder or a run directory")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path} is damaged ({e}); export the model again") from e
    absent = [key for key in REQUIRED_KEYS if key not in description]
    if absent:
        raise UserError(f"{path} lacks {', '.join(absent)}; it was not written by this ernie-cpt: export again")
    return description


def _transformers_weights(folder: Path, model: Architecture, description: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors of a ``transformers``-layout folder under ``model``'s state-dict names."""
    encoder = model.ernie_model()
    if encoder is None:  # a hand-edited description: only a model that folds into one encoder has this layout
        raise UserError(f"{folder / MODEL_JSON} says layout \"transformers\" for a {model.name} model, which is "
                        f"saved in ernie-cpt's own layout; export the model again")
    prefix = _module_prefix(model, encoder)
    mlm_task = description.get("masked_lm_task")
    weights = {}
    for file in weight_files(folder, "model folder"):
        for key, tensor in load_weights(file).items():
            if key.startswith(MLM_PREFIX) and mlm_task:
                weights[f"heads.{mlm_task}.{key.removeprefix(MLM_PREFIX)}"] = tensor
            else:
                weights[prefix + key.removeprefix(ENCODER_PREFIX)] = tensor
    if description.get("heads_file"):
        weights.update(load_weights(folder / description["heads_file"]))
    return weights


def read_model_folder(folder: Path, weights_file: str | None = None) -> tuple[Architecture, dict[str, Any]]:
    """The model saved in ``folder`` (an export, or a checkpoint whose state dict is ``weights_file``)
    with every weight loaded, and its description. Raises UserError when a weight is missing, left
    over or of another shape."""
    description = read_description(folder)
    model = rebuild(description)
    if description.get("layout") == "transformers":
        weights = _transformers_weights(folder, model, description)
    else:
        weights = load_weights(folder / (weights_file or description.get("weights", STATE_DICT_FILE)))
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or reshaped:
        raise UserError(f"the weights in {folder} do not match its {MODEL_JSON} (missing: {missing[:3]}, left "
                        f"over: {unexpected[:3]}, other shape: {reshaped[:3]}); export the model again")
    model.load_state_dict(weights)
    return model, description
