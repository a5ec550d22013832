"""Scratch space: derived per-corpus data a task writes while it builds examples, kept on disk.

A task that needs a corpus-wide table (sentence distance's example rows, IR relevance's row plan)
writes it here in bounded batches with `datasets`' ``ArrowWriter`` and reads it back
memory-mapped, so the table never has to fit in memory. A finished annotation cache entry is
read-only input and is never written into: the scratch folder of a process is
``<cache-dir>/scratch/.tasks.staging-<host>-<pid>-<random>`` beside the annotations the data
derives from (the system's temporary folder for documents that have no cache file), made on
first use and removed when the process exits. One left by a killed process is removed by the
next process that makes its own there (:mod:`ernie_cpt.staging`).
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from ernie_cpt.staging import staging_dir

if TYPE_CHECKING:  # pre-task modules import this one, and --help must not load datasets
    import datasets

WRITER_BATCH_ROWS = 256  # rows buffered in memory before a record batch is written
_folders: dict[tuple[int, Path], Path] = {}
_names = itertools.count()


def _remove(folder: Path, owner: int) -> None:
    if os.getpid() == owner:  # forked workers (datasets, DataLoader) inherit the handler
        shutil.rmtree(folder, ignore_errors=True)


def scratch_root(documents: datasets.Dataset) -> Path:
    """``<cache-dir>/scratch`` for annotations read from ``<cache-dir>/annotations/<entry>``, else a
    folder of the system's temporary folder."""
    for cache_file in documents.cache_files:
        entry = Path(cache_file["filename"]).parent
        if entry.parent.name == "annotations":
            return entry.parent.parent / "scratch"
    return Path(tempfile.gettempdir()) / "ernie-cpt-scratch"


def scratch_dir(documents: datasets.Dataset) -> Path:
    """This process's scratch folder near ``documents`` (made on first use, removed at exit)."""
    root = scratch_root(documents)
    key = (os.getpid(), root)
    if key not in _folders or not _folders[key].is_dir():
        _folders[key] = staging_dir(root, "tasks")
        atexit.register(_remove, _folders[key], os.getpid())
    return _folders[key]


def write_dataset(batches: Iterable[dict[str, list]], features: datasets.Features, near: datasets.Dataset,
                  name: str) -> datasets.Dataset:
    """The rows of ``batches`` (column name -> values) written to a new Arrow file in the scratch folder
    near ``near``, ``WRITER_BATCH_ROWS`` at a time, and read back memory-mapped."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    path = scratch_dir(near) / f"{name}-{next(_names)}.arrow"
    with ArrowWriter(features=features, path=str(path), writer_batch_size=WRITER_BATCH_ROWS) as writer:
        for batch in batches:
            if batch and len(next(iter(batch.values()))):
                writer.write_batch(batch)
        writer.finalize()
    return datasets.Dataset.from_file(str(path))
