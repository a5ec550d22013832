"""Output paths and file modes.

An output path is checked before any work (:func:`check_output_path`): a file where a folder goes
or the other way round, and a folder that this process cannot write (permissions, a read-only
file system), found by creating an unnamed temporary file there, as the write itself would.

What ernie-cpt writes gets the modes the umask gives, as ``open`` and ``mkdir`` do. Some writers
do not: ``tempfile.mkdtemp`` makes 0700 folders, and safetensors writes its files 0600 (it writes
a temporary file and renames it). A folder built under such a name and renamed into place, or
such a file, would be unreadable to the group and others whatever the umask.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
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


def unwritable(folder: Path) -> str | None:
    """Why this process cannot create a file in the existing ``folder`` (``"Permission denied"``,
    ``"Read-only file system"``), or None when it can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def existing_folder(path: Path) -> Path:
    """``path`` when it is a folder, else the nearest existing folder above it: where it would be made."""
    return next(p for p in (path, *path.absolute().parents) if p.is_dir())


def check_output_path(path: str | Path, flag: str, folder: bool = False) -> None:
    """Refuse, before any work, an output path that cannot be written: for a file (``folder`` False) an
    existing directory; for a folder an existing file; for either, a path under a file, or one whose
    folder, or the folder above it (where it is made, or built and renamed, and claimed: see
    :mod:`ernie_cpt.claims`), this process cannot write. ``flag`` (``--output-json``) names the option
    in the UserError."""
    path = Path(path)
    if not folder and path.is_dir():
        raise UserError(f"{flag} {path} is a directory; pass a file path, e.g. {path / 'results.json'}")
    if folder and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; choose a folder")
    above = next((parent for parent in path.absolute().parents if parent.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"{flag} {path}: {above} is a file, not a folder; choose another path")
    written = [above] + ([path] if folder and path.is_dir() else [])
    for where in filter(None, written):
        if reason := unwritable(where):
            raise UserError(f"{flag} {path}: cannot write in {where} ({reason}); make it writable, or choose "
                            f"another path")


def check_cache_writable(folder: Path, what: str) -> None:
    """Refuse, before the work that fills it, a cache ``folder`` (or the folder it would be made in)
    that this process cannot write, ``what`` (``"the annotations of this corpus"``) not being cached
    there yet. A cache that already holds what a run needs is only read, and may be read-only."""
    where = existing_folder(folder)
    if reason := unwritable(where):
        raise UserError(f"the cache folder {where} cannot be written ({reason}), and it does not hold {what} yet: "
                        f"make it writable, or pass --cache-dir (or set ERNIE_CPT_CACHE) to a writable folder")


def content_digest(path: str | Path) -> str | None:
    """The SHA-256 of the bytes of the file ``path`` (hex, first 16 digits): what tells a file replaced or edited
    under the same name, as a resume must; None when it cannot be read (the reader of the file says why)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()[:16]
