"""The one loader of what ernie-cpt saves: an export folder of either layout, a checkpoint folder,
or a run directory (its newest readable checkpoint, or a chosen one).

It rebuilds the architecture with every head and the task embedding
(:func:`ernie_cpt.modeling.saved_model.read_model_folder`) and says where the tokenizer is.
``pretrain --init-from`` uses it (a plain BERT/ERNIE folder goes the ``encoder_from_checkpoint``
way instead), and so does ``export``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.saved_model import MODEL_JSON, read_model_folder
from ernie_cpt.training.checkpoint import find_checkpoint, stage_end

RUN_MARKER = "encoder_config.json"  # written with run_config.json when a run starts


@dataclass
class SavedModel:
    """A model read back: the architecture (in eval mode, on CPU), its ``ernie_cpt_model.json``
    (for a checkpoint with ``step``, ``checkpoint`` and ``stage_end`` added) and the tokenizer folder."""

    model: Architecture
    description: dict[str, Any]
    tokenizer_dir: Path


def is_run_dir(path: Path) -> bool:
    return (path / RUN_MARKER).is_file()


def is_saved_model(path: str | Path) -> bool:
    """Whether ``path`` is something :func:`load_model` reads (not a plain Hugging Face folder)."""
    path = Path(path)
    return (path / MODEL_JSON).is_file() or is_run_dir(path)


def _checkpoint_info(path: Path) -> dict[str, Any]:
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    return {"step": state["step"], "checkpoint": path.name, "stage_end": stage_end(path)}


def load_model(path: str | Path, checkpoint: str | None = None, stage: int | None = None) -> SavedModel:
    """The model saved at ``path``: an export or checkpoint folder, or a run directory, of which
    ``checkpoint`` (a name such as ``step-600``) or the end of stage ``stage`` (from 1) is read,
    by default the newest readable checkpoint. Raises UserError when there is no such model."""
    path = Path(path)
    if is_run_dir(path):
        folder = find_checkpoint(path, checkpoint, stage)
        tokenizer_dir = path / "tokenizer"
    elif checkpoint is not None or stage is not None:
        raise UserError(f"{path} is not a run directory; --checkpoint and --stage choose among a run's checkpoints")
    elif (path / MODEL_JSON).is_file():
        folder = path
        is_checkpoint = (path / "trainer_state.json").is_file()
        tokenizer_dir = path.parent.parent / "tokenizer" if is_checkpoint else path
    else:
        raise UserError(f"{path} is not an ernie-cpt model: pass an export folder (with {MODEL_JSON}), a "
                        f"checkpoint folder or a pretrain run directory")
    if not (folder / MODEL_JSON).is_file():
        raise UserError(f"checkpoint {folder} has no {MODEL_JSON} (written by an older ernie-cpt); export it with "
                        f"that version")
    model, description = read_model_folder(folder)
    if (folder / "trainer_state.json").is_file():
        description = {**description, **_checkpoint_info(folder)}
    return SavedModel(model.eval(), description, tokenizer_dir)
