"""Where ``ernie-cpt finetune --output-dir`` saves the fine-tuned model, and how.

The folder holds what ``Trainer.save_model`` would: the ``ErnieForSequenceClassification`` via
``save_pretrained`` (its config names the labels in ``id2label``/``label2id``; for a routed
architecture, ``ArchitectureForSequenceClassification.save_pretrained``: ernie-cpt's own folder,
which ``load_model`` reads), the tokenizer
(``model_max_length`` = the model's positions) and ``metrics.json`` (the results ``finetune``
returns). It is written under a temporary name and renamed into place, with the modes the umask
gives (a folder replaced with ``--overwrite`` is moved aside until the new one is in place), so
an interrupted run never leaves a part-written folder at ``--output-dir``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from ernie_cpt.errors import UserError
from ernie_cpt.files import apply_umask
from ernie_cpt.full_disk import writing

METRICS = "metrics.json"


def check_output_dir(out_dir: Path, model_dir: Path, overwrite: bool, flag: str = "--output-dir") -> None:
    """Refuse, before any training, a non-empty ``out_dir`` (unless ``overwrite``) and one that is
    or holds ``model_dir`` (replacing it would delete the model being fine-tuned); the errors name
    the option ``flag``."""
    resolved, source = out_dir.resolve(), model_dir.resolve()
    if resolved == source or resolved in source.parents:
        raise UserError(f"{flag} {out_dir} holds MODEL_DIR {model_dir}; choose another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{flag} {out_dir} is a file; choose a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise UserError(f"{flag} {out_dir} is not empty; pass --overwrite to replace it, or choose another folder")


def save_output(out_dir: Path, model: Any, tokenizer: Any, label_names: list[Any], positions: int,
                results: dict[str, Any]) -> None:
    """Save ``model`` (an ErnieForSequenceClassification or ArchitectureForSequenceClassification)
    with its labels, ``tokenizer`` and ``results`` to ``out_dir``, replacing what is there."""
    model.config.id2label = {i: str(name) for i, name in enumerate(label_names)}
    model.config.label2id = {str(name): i for i, name in enumerate(label_names)}
    tokenizer.model_max_length = positions
    staging = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    replaced = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    try:
        with writing(f"the fine-tuned model {out_dir}", out_dir.parent):
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            model.save_pretrained(str(staging))
            tokenizer.save_pretrained(str(staging))
            (staging / METRICS).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            apply_umask(staging)
        if out_dir.exists():  # moved aside, not deleted, until the new folder is in place
            os.replace(out_dir, replaced)
        try:
            os.replace(staging, out_dir)
        except BaseException:
            if replaced.exists():
                os.replace(replaced, out_dir)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(replaced, ignore_errors=True)
