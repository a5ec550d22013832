"""Reading weights and state without running code from a file: the security policy in one place.

* Model weights are read only from safetensors files: a JSON header and raw tensor bytes, so
  reading one runs no code. A pickle in place of ``model.safetensors`` (what ``torch.save``
  writes) and a folder with only ``pytorch_model.bin`` are refused with a message.
* Optimizer, scheduler and trainer state (``training_state.pt``, written by ernie-cpt itself)
  is read with ``torch.load(weights_only=True)``, whose unpickler builds only tensors and plain
  containers and refuses anything that would import or call code.
* No other user-provided file is unpickled.
"""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from ernie_cpt.errors import UserError

PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth")
CONVERT_HINT = "convert it with save_pretrained(..., safe_serialization=True)"


class UnreadableFile(UserError):
    """A weights or state file that is damaged, or of a kind that is never loaded (a pickle)."""


def _what_it_is(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive such as torch.save writes"
    if head[:1] == b"\x80":
        return "a pickle"
    return "damaged or another format"


def _refuse(path: Path, error: Exception) -> UnreadableFile:
    return UnreadableFile(f"{path} is not a readable safetensors file ({_what_it_is(path)}); model weights are "
                          f"loaded only from safetensors and never unpickled: {CONVERT_HINT} ({error})")


def _require(path: Path, what: str) -> None:
    """:class:`UnreadableFile` when ``path`` (``what`` it holds) is not there: the folder is incomplete."""
    if not Path(path).is_file():
        raise UnreadableFile(f"{Path(path).parent} has no {Path(path).name} (its {what}): the folder is incomplete; "
                             f"export the model again, or copy the file back")


def check_weights(path: Path) -> None:
    """Raise :class:`UnreadableFile` unless ``path`` has a valid safetensors header (the tensors are not read)
    or when it is missing."""
    _require(path, "weights")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except SafetensorError as e:
        raise _refuse(path, e) from e


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path``; :class:`UnreadableFile` if it is not one or is missing."""
    _require(path, "weights")
    try:
        return load_file(path)
    except SafetensorError as e:
        raise _refuse(path, e) from e


def load_state(path: Path) -> Any:
    """Training state written by ``torch.save``, unpickled with ``weights_only=True`` (tensors and
    plain containers only); :class:`UnreadableFile` if it is missing, damaged or holds anything else."""
    _require(path, "training state")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the file is refused anyway
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as e:
        raise UnreadableFile(f"{path} is damaged or holds more than tensors and plain data, and was not "
                             f"loaded ({type(e).__name__}: {str(e).splitlines()[0][:100]})") from e


def weight_files(folder: Path, what: str) -> list[Path]:
    """The safetensors files of a model folder (one, or the shards of an index), each checked;
    a folder with pickled weights only, or none, is refused with a message naming ``what`` it is."""
    index = folder / "model.safetensors.index.json"
    try:
        names = (sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
                 if index.is_file() else ["model.safetensors"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise UnreadableFile(f"{index} is damaged ({type(e).__name__}: {e}); export the model again") from e
    files = [folder / name for name in names]
    pickled = [name for name in PICKLED_WEIGHTS if (folder / name).exists()]
    if not index.is_file() and not files[0].is_file() and pickled:
        raise UserError(f"{what} {folder} has no model.safetensors (only {pickled[0]}, a pickle, which is never "
                        f"loaded); {CONVERT_HINT}")
    for file in files:
        check_weights(file)
    return files
