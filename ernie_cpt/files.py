"""File modes: what ernie-cpt writes gets the modes the umask gives, as ``open`` and ``mkdir`` do.

Some writers do not: ``tempfile.mkdtemp`` makes 0700 folders, and safetensors writes its files
0600 (it writes a temporary file and renames it). A folder built under such a name and renamed
into place, or such a file, would be unreadable to the group and others whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path

from ernie_cpt.errors import UserError


def current_umask() -> int:
    """The process's umask (read by setting it and setting it back: os has no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask(path: Path) -> None:
    """Give ``path`` and, for a folder, everything under it the modes a fresh ``open``/``mkdir``
    would: 0666 (files) or 0777 (folders) less the umask. Symbolic links are left alone."""
    mask = current_umask()
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for item in paths:
        if not item.is_symlink():
            item.chmod((0o777 if item.is_dir() else 0o666) & ~mask)


def check_output_path(path: str | Path, flag: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: for a file (``folder`` False) an
    existing directory; for a folder an existing file; for either, a path under a file. ``flag``
    (``--output-json``) names the option in the UserError."""
    path = Path(path)
    if not folder and path.is_dir():
        raise UserError(f"{flag} {path} is a directory; pass a file path, e.g. {path / 'results.json'}")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; choose a folder")
    above = next((parent for parent in path.absolute().parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{flag} {path}: {above} is a file, not a folder; choose another path")
