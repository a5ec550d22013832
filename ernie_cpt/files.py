"""File modes: what ernie-cpt writes gets the modes the umask gives, as ``open`` and ``mkdir`` do.

Some writers do not: ``tempfile.mkdtemp`` makes 0700 folders, and safetensors writes its files
0600 (it writes a temporary file and renames it). A folder built under such a name and renamed
into place, or such a file, would be unreadable to the group and others whatever the umask.
"""

from __future__ import annotations

import os
from pathlib import Path


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
