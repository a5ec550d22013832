"""Compressed user files: ``.gz``, ``.bz2``, ``.xz`` and ``.zst``, read as their uncompressed form.

A corpus file or a labelled file may be compressed as a whole (``corpus.jsonl.gz``,
``train.csv.zst``, ``chapter-1.txt.bz2``): its format is the suffix under the compression's, and
its bytes are decompressed as they are read (fsspec's codecs, which `datasets` reads these with;
``.zst`` needs the ``zstandard`` package, a dependency).
"""

from __future__ import annotations

import lzma
import zlib
from pathlib import Path
from typing import IO

from ernie_cpt.errors import UserError

COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}


def compression(path: str | Path) -> str | None:
    """fsspec's name of the compression ``path``'s suffix says (``"gzip"`` for ``.gz``), or None."""
    return COMPRESSIONS.get(Path(path).suffix.lower())


def format_suffix(path: str | Path) -> str:
    """The suffix of what is compressed: ``.jsonl`` for ``corpus.jsonl.gz`` and for ``corpus.jsonl``."""
    path = Path(path)
    return (path.with_suffix("") if compression(path) else path).suffix.lower()


def open_binary(path: str | Path) -> IO[bytes]:
    """``path`` opened for reading its bytes, decompressed when its suffix names a compression."""
    codec = compression(path)
    if codec is None:
        return open(path, "rb")  # the caller closes it
    import fsspec

    return fsspec.open(str(path), "rb", compression=codec).open()


def decompression_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a damaged or truncated compressed file raises while it is read."""
    errors: tuple[type[BaseException], ...] = (EOFError, zlib.error, lzma.LZMAError, OSError)  # bz2, gzip: OSError
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:
        pass
    return errors


def damaged(path: str | Path, error: BaseException) -> UserError:
    """The error for a compressed file that cannot be decompressed (truncated, or not what its suffix says)."""
    return UserError(f"{path} cannot be decompressed as {Path(path).suffix} ({type(error).__name__}: "
                     f"{str(error)[:100]}); it is damaged or truncated: compress it again, or pass it uncompressed")
