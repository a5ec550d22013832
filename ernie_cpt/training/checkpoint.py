"""Crash-safe checkpoints: atomic writes, a ``latest`` pointer written last, and the last K kept.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN`` with:

* ``model.safetensors``: every parameter (encoder and heads);
* ``training_state.pt``: optimizer, LR scheduler and loss-weighting state, loaded with ``weights_only=True``;
* ``trainer_state.json``: step, stage, task counts and data positions, readable by people;
  ``stage_end``: K in the checkpoint written when stage K (from 1) ended;
* ``ernie_cpt_model.json``: what rebuilds the model from ``model.safetensors``
  (``ernie_cpt.modeling.saved_model``), so that a checkpoint loads on its own.

It is written under a temporary name, flushed to disk and renamed into place, so a crash (even
SIGKILL or a full disk) leaves either the whole checkpoint or none. Folders are deleted the
same way round: renamed away first, so no ``step-*`` folder is ever a part of one. Leftover
temporary folders are removed by the next save. A checkpoint that cannot be read is skipped
with a warning. ``--save-total-limit K`` keeps the last K checkpoints and, besides them, every
stage-end checkpoint (the model after each stage, for ``export --stage``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ernie_cpt.errors import UserError
from ernie_cpt.files import apply_umask
from ernie_cpt.full_disk import RERUN, DiskFull, writing
from ernie_cpt.modeling.safe_loading import UnreadableFile, load_state, load_weights
from ernie_cpt.modeling.saved_model import MODEL_JSON

log = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^step-(\d{8})$")
LATEST = "latest"
PARTIAL_PREFIXES = (".tmp-", ".trash-")  # folders being written or deleted


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str, advice: str = RERUN) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a part. A full
    disk raises :class:`~ernie_cpt.full_disk.DiskFull` with ``advice``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(f"{path.name} in {path.parent}", path.parent, advice=advice):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _remove(path: Path) -> None:
    """Delete a checkpoint folder: renamed away first, so that it is never seen half-deleted."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root/checkpoints``, oldest first."""
    folder = root / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name))


def latest_name(root: Path) -> str | None:
    """The name of the checkpoint the ``latest`` pointer of run ``root`` names, if any."""
    pointer = root / "checkpoints" / LATEST
    return pointer.read_text(encoding="utf-8").strip() if pointer.is_file() else None


def resume_advice(root: Path) -> str:
    """What to do after a write into run ``root`` failed for want of space: resume from its last
    checkpoint (the one ``latest`` names, or the newest whole one when it names none), or run again
    when it has none."""
    latest = latest_name(root) or next((c.name for c in reversed(checkpoints(root))), None)
    if latest:
        return f"the last checkpoint, {latest}, is intact: free space, then run the same command with --resume"
    return f"no checkpoint was saved yet: {RERUN}"


def _write(tmp: Path, step: int, model: torch.nn.Module, training_state: dict[str, Any],
           trainer_state: dict[str, Any], description: dict[str, Any] | None) -> None:
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, tmp / "model.safetensors", metadata={"step": str(step)})
    torch.save(training_state, tmp / "training_state.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
    names = ["model.safetensors", "training_state.pt", "trainer_state.json"]
    if description is not None:
        (tmp / MODEL_JSON).write_text(json.dumps({**description, "layout": "state_dict",
                                                  "weights": "model.safetensors"}, indent=2), encoding="utf-8")
        names.append(MODEL_JSON)
    apply_umask(tmp)
    for name in names:
        _fsync_file(tmp / name)


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, training_state: dict[str, Any],
                    trainer_state: dict[str, Any], keep: int, description: dict[str, Any] | None = None) -> Path:
    """Write checkpoint ``step`` (with ``description``, the model's ``ernie_cpt_model.json``, if given),
    point ``latest`` to it and keep it, the ``keep - 1`` before it and every stage-end checkpoint. A
    failed write removes what it wrote (earlier checkpoints stay); a full disk raises
    :class:`~ernie_cpt.full_disk.DiskFull`, which names the last checkpoint."""
    folder = root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for leftover in folder.iterdir():
        if leftover.name.startswith(PARTIAL_PREFIXES):
            shutil.rmtree(leftover, ignore_errors=True)
    final = folder / f"step-{step:08d}"
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    try:
        with writing(f"checkpoint {final.name} in {folder}", tmp, folder):
            tmp.mkdir()
            _write(tmp, step, model, training_state, trainer_state, description)
            if final.exists():  # a re-run of the same step after a resume
                _remove(final)
            os.replace(tmp, final)
            _fsync_dir(folder)
            atomic_write_text(folder / LATEST, final.name + "\n")
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, DiskFull):
            raise e.with_advice(resume_advice(root)) from e
        raise
    older = [c for c in checkpoints(root) if c.name < final.name and stage_end(c) is None]
    for old in older[:max(len(older) - (keep - 1), 0)]:
        _remove(old)
    return final


def stage_end(path: Path) -> int | None:
    """K when checkpoint ``path`` was written at the end of stage K (from 1), else None."""
    try:
        return json.loads((path / "trainer_state.json").read_text(encoding="utf-8")).get("stage_end")
    except (OSError, ValueError):
        return None


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model weights, training state, trainer state) of one checkpoint; raises on damage."""
    weights = load_weights(path / "model.safetensors")
    training_state = load_state(path / "training_state.pt")
    trainer_state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    return weights, training_state, trainer_state


Checkpoint = tuple[Path, tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]]


def find_checkpoint(root: Path, name: str | None = None, stage: int | None = None) -> Path:
    """The checkpoint folder of run ``root`` named ``name`` (``step-00000600``, ``step-600`` or ``600``),
    or written at the end of stage ``stage`` (from 1), or else the newest readable one. A UserError
    names the checkpoints there when there is no such one."""
    found = checkpoints(root)
    if name is not None:
        match = re.fullmatch(r"(?:step-)?(\d+)", Path(name).name)
        wanted = f"step-{int(match[1]):08d}" if match else Path(name).name
        chosen = [c for c in found if c.name == wanted]
        what = f"no checkpoint {name}"
    elif stage is not None:
        chosen = [c for c in found if stage_end(c) == stage]
        what = f"no checkpoint of the end of stage {stage}"
    else:
        latest = latest_checkpoint(root)
        chosen = [latest[0]] if latest else []
        what = "no readable checkpoint yet (let pretrain save one: see --save-steps)"
    if not chosen:
        ends = ", ".join(f"{c.name} (stage {stage_end(c)})" if stage_end(c) else c.name for c in found) or "none"
        raise UserError(f"{root} has {what}; its checkpoints: {ends}")
    return chosen[0]


def latest_checkpoint(root: Path) -> Checkpoint | None:
    """The newest readable checkpoint and its contents; damaged ones are skipped with a warning."""
    candidates = checkpoints(root)
    named = latest_name(root)
    if named and root / "checkpoints" / named in candidates:  # prefer the pointer, then anything older
        candidates = [c for c in candidates if c.name <= named]
    for path in reversed(candidates):
        try:
            return path, read_checkpoint(path)
        except (OSError, UnreadableFile, ValueError) as e:
            log.warning("skipping unreadable checkpoint %s: %s", path, e)
    return None
