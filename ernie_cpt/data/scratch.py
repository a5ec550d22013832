"""Scratch space: derived per-corpus data a task writes while it builds examples, kept on disk.

A task that needs a corpus-wide table (sentence distance's example rows, IR relevance's row plan)
writes it here in bounded batches with `datasets`' ``ArrowWriter`` and reads it back
memory-mapped, so the table never has to fit in memory. :func:`cached_dataset` then keeps it,
under a key, where ``datasets.map`` keeps its cache files (``<cache-dir>/examples/<entry>``), so
that the next run, or the other ranks of a torchrun job, read it instead of building it again. A
finished annotation cache entry is read-only input and is never written into: the scratch folder
of a process is ``<cache-dir>/scratch/.tasks.staging-<host>-<pid>-<random>`` beside the
annotations the data derives from (the system's temporary folder for documents that have no
cache file), made on first use and removed when the process exits. One left by a killed process is removed by the
next process that makes its own there (:mod:`ernie_cpt.staging`).
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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


def cache_folder(documents: datasets.Dataset) -> Path | None:
    """The folder where ``datasets.map`` keeps what it derives from ``documents`` when they are a view of an
    annotation cache entry (``<cache-dir>/examples/<entry>``); None for other documents."""
    for cache_file in documents.cache_files:
        folder = Path(cache_file["filename"]).parent
        if folder.parent.name == "examples":
            return folder
    return None


def cached_dataset(batches: Iterable[dict[str, list]], features: datasets.Features, near: datasets.Dataset,
                   name: str, key: str, info: dict[str, Any]) -> datasets.Dataset:
    """:func:`write_dataset`, kept as ``<name>-<key>.arrow`` in the :func:`cache_folder` of ``near``, with
    ``info`` (what was counted while ``batches`` ran; JSON) beside it: a later call with the same ``key``
    reads both back instead of running ``batches``. The table is renamed into place last, so a killed
    process leaves none. Without a cache folder (documents not from the cache), it is :func:`write_dataset`."""
    import datasets

    folder = cache_folder(near)
    if folder is None:
        return write_dataset(batches, features, near, name)
    path, meta = folder / f"{name}-{key}.arrow", folder / f"{name}-{key}.json"
    if path.is_file() and meta.is_file():
        info.update(json.loads(meta.read_text(encoding="utf-8")))
        return datasets.Dataset.from_file(str(path))
    built = write_dataset(batches, features, near, name)
    staged_meta = meta.with_name(f".{meta.name}.{os.getpid()}")
    staged_meta.write_text(json.dumps(info), encoding="utf-8")
    os.replace(staged_meta, meta)
    try:
        os.replace(built.cache_files[0]["filename"], path)
    except OSError:  # another file system: keep the scratch copy, uncached
        return built
    return datasets.Dataset.from_file(str(path))
