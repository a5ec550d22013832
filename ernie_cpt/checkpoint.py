"""Crash-safe checkpoints: atomic writes, a ``latest`` pointer written last, and the last K kept.

A checkpoint is a folder ``checkpoints/step-NNNNNNNN`` with:

* ``model.safetensors``: every parameter (encoder and heads);
* ``training_state.pt``: optimizer, LR scheduler, RNG states, loaded with ``weights_only=True``;
* ``trainer_state.json``: step, stage, task counts and data positions, readable by people.

It is written under a temporary name and renamed into place, so a crash leaves either the
whole checkpoint or none. A checkpoint that cannot be read is skipped with a warning.
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
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

log = logging.getLogger(__name__)

CHECKPOINT_DIR = re.compile(r"^step-(\d{8})$")
LATEST = "latest"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root/checkpoints``, oldest first."""
    folder = root / "checkpoints"
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and CHECKPOINT_DIR.match(p.name))


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, training_state: dict[str, Any],
                    trainer_state: dict[str, Any], keep: int) -> Path:
    folder = root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"step-{step:08d}"
    tmp = folder / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(weights, tmp / "model.safetensors", metadata={"step": str(step)})
    torch.save(training_state, tmp / "training_state.pt")
    (tmp / "trainer_state.json").write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")
    for name in ("model.safetensors", "training_state.pt", "trainer_state.json"):
        _fsync_file(tmp / name)
    if final.exists():  # a re-run of the same step after a resume
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(folder)
    atomic_write_text(folder / LATEST, final.name + "\n")
    for old in checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """(model weights, training state, trainer state) of one checkpoint; raises on damage."""
    weights = load_file(path / "model.safetensors")
    training_state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
    trainer_state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    return weights, training_state, trainer_state


def latest_checkpoint(root: Path) -> tuple[Path, tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]] | None:
    """The newest readable checkpoint and its contents; damaged ones are skipped with a warning."""
    candidates = checkpoints(root)
    pointer = root / "checkpoints" / LATEST
    if pointer.exists():
        named = root / "checkpoints" / pointer.read_text(encoding="utf-8").strip()
        if named in candidates:  # prefer the pointer, then anything older
            candidates = [c for c in candidates if c.name <= named.name]
    for path in reversed(candidates):
        try:
            return path, read_checkpoint(path)
        except (OSError, SafetensorError, RuntimeError, ValueError, EOFError) as e:
            log.warning("skipping unreadable checkpoint %s (%s: %s)", path, type(e).__name__, str(e)[:120])
    return None


def latest_model_weights(root: Path) -> dict[str, torch.Tensor] | None:
    """The model weights of the newest readable checkpoint of a run."""
    found = latest_checkpoint(root)
    return found[1][0] if found else None
