"""Annotation shared out over the processes of a torchrun job: every rank parses a shard of the
paragraphs, with its own ``--num-proc`` spaCy workers, into the shared cache; rank 0 combines them.

The corpus's paragraph pieces (:func:`ernie_cpt.data.annotate.cut_pieces`) are dealt round-robin
to the N ranks, piece i to rank i mod N, so every rank parses about as much text. Rank r writes
its parsed pieces to ``<cache-dir>/annotations/.<fingerprint>.shards-of-N/rank-r`` through a
staging folder (:mod:`ernie_cpt.staging`), renamed into place only when complete. Once every rank
is done (a ``torch.distributed`` collective), rank 0 puts the pieces back in corpus order, writes
the cache entry ``annotations/<fingerprint>`` exactly as a 1-process :func:`annotate` writes it
(staged, then renamed: the entry is the last thing written), and removes the shards.

A rank killed mid-shard leaves a staging folder, which the next run removes, and no shard (a rank
that fails, on a full disk say, removes its own, and rank 0 the shards' folder if it holds none); a
later run parses what is missing and reuses the completed shards of the same corpus, pipeline,
settings and number of ranks. Without a process group (a plain ``prepare`` or ``pretrain``)
:func:`annotate_on_all_ranks` is :func:`annotate`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path

import datasets
import numpy as np

from ernie_cpt import distributed
from ernie_cpt.data.annotate import (
    annotate,
    annotation_target,
    cut_pieces,
    dealt_order,
    load_annotations,
    log_throughput,
    parse_pieces,
    save_annotations,
    spacy_processes,
)
from ernie_cpt.data.corpus import corpus_chars
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.data.spacy_pipeline import warn_if_not_english
from ernie_cpt.errors import UserError
from ernie_cpt.files import check_cache_writable
from ernie_cpt.full_disk import writing
from ernie_cpt.messages import plural
from ernie_cpt.staging import remove_stale, staging_dir

log = logging.getLogger(__name__)

EMPTY = "EMPTY"  # the file of a shard with no pieces (more ranks than pieces)


def shard_root(target: Path, size: int) -> Path:
    """The folder of the ``size`` shards of the cache entry ``target`` (hidden: not a cache entry)."""
    return target.parent / f".{target.name}.shards-of-{size}"


def annotate_shard(corpus: datasets.Dataset, options: AnnotationOptions, rank: int, size: int,
                   sharing: int = 1) -> Path:
    """Parse pieces ``rank``, ``rank + size``, ... of ``corpus`` in this process and its spaCy workers
    (``--num-proc``; for 0, the CPUs this process may use divided by ``sharing``, the ranks on this
    machine) and write them as shard ``rank`` of ``size``; returns its folder (kept when complete
    from an earlier run). Raises UserError when the pipeline is not installed."""
    pipeline, _, target = annotation_target(corpus, options)
    root = shard_root(target, size)
    shard = root / f"rank-{rank}"
    if shard.is_dir():  # renamed into place only when complete
        log.info("Reusing annotation shard %s of an earlier run", shard)
        return shard
    check_cache_writable(root, "the annotations of this corpus")
    with writing(f"annotation shard {shard.name} in {root}", root):
        return _write_shard(corpus, options, pipeline, rank, size, sharing, shard)


def _write_shard(corpus: datasets.Dataset, options: AnnotationOptions, pipeline: str, rank: int, size: int,
                 sharing: int, shard: Path) -> Path:
    build_dir = staging_dir(shard.parent, shard.name)
    try:
        pieces = cut_pieces(corpus, options, build_dir)
        mine = pieces.select(range(rank, len(pieces), size))
        n_process = spacy_processes(options, corpus_chars(corpus) // size, sharing)
        log.info("Rank %d of %d: annotating %s of %d with %s (%s)", rank, size, plural(len(mine), "paragraph piece"),
                 len(pieces), pipeline, plural(n_process, "process", "processes"))
        if len(mine):
            parse_pieces(mine, pipeline, options, n_process, build_dir).save_to_disk(str(build_dir / "final"))
        else:  # more ranks than pieces: datasets cannot load a saved table of no rows back
            (build_dir / "final").mkdir()
            (build_dir / "final" / EMPTY).touch()
        os.replace(build_dir / "final", shard)
    except OSError:
        if not shard.is_dir():
            raise
        log.info("Another process wrote annotation shard %s first; using it", shard)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return shard


def combine_shards(corpus: datasets.Dataset, options: AnnotationOptions, size: int) -> Path:
    """Write the cache entry of ``corpus`` from its ``size`` complete shards (the pieces back in corpus
    order), then remove the shards; returns the entry's folder. Raises UserError for a shard that is
    missing (the cache folder is not shared by every machine)."""
    _, fingerprint, target = annotation_target(corpus, options)
    root = shard_root(target, size)
    if not (target / "dataset_info.json").exists():
        folders = [root / f"rank-{rank}" for rank in range(size)]
        missing = [str(rank) for rank, folder in enumerate(folders) if not folder.is_dir()]
        if missing:
            raise UserError(f"the annotation shards of rank(s) {', '.join(missing)} are not in {root}, though those "
                            f"ranks finished: every machine must share the cache folder (--cache-dir or "
                            f"ERNIE_CPT_CACHE on a shared file system)")
        shards = [datasets.load_from_disk(str(folder)) for folder in folders if not (folder / EMPTY).exists()]
        total = sum(len(shard) for shard in shards)
        dealt = dealt_order(total, size)
        parsed = datasets.concatenate_datasets(shards).select(np.argsort(dealt))
        with writing(f"the annotations in {target.parent}", target.parent):
            build_dir = staging_dir(target.parent, fingerprint)
            try:
                save_annotations(corpus, parsed, target, build_dir)
                del parsed, shards
            finally:
                shutil.rmtree(build_dir, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    return target


def annotate_on_all_ranks(corpus: datasets.Dataset, options: AnnotationOptions) -> datasets.Dataset:
    """:func:`annotate`, with the parsing shared out over the ranks of the process group when there is
    one (every rank must call it): the same annotations, from the same cache. A UserError on any rank
    is raised on all of them."""
    size = distributed.world_size()
    if size == 1:
        return annotate(corpus, options)
    pipeline, fingerprint, target = annotation_target(corpus, options)
    seen = distributed.gather((fingerprint, str(target)))
    other = next((r for r, entry in enumerate(seen) if entry != seen[0]), None)
    if other is not None:
        raise UserError(f"rank {other} reads another corpus or cache than rank 0 (annotations {seen[other][1]} "
                        f"there, {seen[0][1]} on rank 0): give every process the same --corpus files and "
                        f"--cache-dir, on a file system all machines share")
    remove_stale(target.parent)
    if distributed.is_main():
        warn_if_not_english((text for batch in corpus.select_columns(["text"]).iter(batch_size=100)
                             for text in batch["text"]), pipeline)

    def cached() -> bool:
        if (target / "dataset_info.json").exists():
            shutil.rmtree(shard_root(target, size), ignore_errors=True)  # a run killed before it removed them
            return True
        return False

    if distributed.main_result(cached):  # one decision for all ranks
        log.info("Reusing cached annotations %s", target)
    else:
        start = time.perf_counter()
        try:
            distributed.every_rank(lambda: annotate_shard(corpus, options, distributed.rank(), size,
                                                          distributed.local_world_size()))
        except UserError:  # every rank is past its shard now: a folder that holds no finished one goes
            if distributed.is_main():
                with contextlib.suppress(OSError):
                    shard_root(target, size).rmdir()
            raise
        distributed.main_result(lambda: combine_shards(corpus, options, size))
        if distributed.is_main():
            log_throughput(corpus, time.perf_counter() - start, spacy_processes(options, corpus_chars(corpus) // size,
                                                                               distributed.local_world_size()) * size)
    return load_annotations(target, options)
