"""Measure 6g: a seven-task ``pretrain`` with the default vocabulary on 32 MB against 16 MB, both past the
vocabulary's cap, so that the model is the same size: does anything else grow?

Row 6d compares 16x with 1x at the default vocabulary, 20·sqrt(words) up to 30,522: 4 times larger at
16x, so the model grows too. Here both corpora have about 2.4 M words or more, where the vocabulary is
at its cap. The 32 MB corpus is the 16 MB corpora of both recipes (:mod:`benchmarks.scale_corpus`)
read together (``--corpus A B``); its annotation cache entry is written from theirs (no spaCy run:
the same documents, in the order the pair is read), as the issue allows for this row.
``python -m benchmarks.scale_cap [--cache-dir DIR]`` prepares the two 16 MB corpora into DIR (a cache hit
when they are there), writes the pair's entry and prints the row.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import datasets

from benchmarks.common import Row
from benchmarks.scale import corpus, prepare, pretrain, vocabulary


def combine(parts: list[Path], cache_dir: str) -> Path:
    """The annotation cache entry of ``parts`` read together, written from the entries of each part (which must
    be in ``cache_dir``); returns its folder. Raises RuntimeError when the documents do not line up."""
    from ernie_cpt.data.annotate import annotation_key, annotation_target
    from ernie_cpt.data.annotation_record import write_record
    from ernie_cpt.data.corpus import CorpusOptions, read_corpus
    from ernie_cpt.data.options import AnnotationOptions

    options = AnnotationOptions(cache_dir=cache_dir)
    pieces = []
    for part in parts:
        target = annotation_target(read_corpus(CorpusOptions(corpus=[str(part)])), options)[2]
        pieces.append(datasets.load_from_disk(str(target)))
    together = read_corpus(CorpusOptions(corpus=[str(part) for part in parts]))
    pipeline, _, target = annotation_target(together, options)
    annotated = datasets.concatenate_datasets(pieces)
    ids = (doc_id for batch in annotated.select_columns(["doc_id"]).iter(1000) for doc_id in batch["doc_id"])
    if any(a != b for a, b in zip(ids, (d for batch in together.select_columns(["doc_id"]).iter(1000)
                                         for d in batch["doc_id"]))) or len(annotated) != len(together):
        raise RuntimeError(f"the documents of {parts} read together are not those of each part in turn")
    if not (target / "dataset_info.json").exists():
        annotated.save_to_disk(str(target))
        write_record(target, annotation_key(together, pipeline, options))
    return target


def measure(cache_dir: str) -> Row:
    """Row 6g, from (or into) ``cache_dir``."""
    (mixed, _), (reference, _) = corpus(16.0), corpus(16.0, "reference")
    for path in (mixed, reference):
        if not _cached(path, cache_dir):
            prepare(path, cache_dir)
    combine([mixed, reference], cache_dir)
    with tempfile.TemporaryDirectory(prefix="bench-cap-") as folder:
        runs = {name: str(Path(folder) / name) for name in ("16", "32")}
        single = pretrain(mixed, cache_dir, runs["16"])
        pair = pretrain([mixed, reference], cache_dir, runs["32"])
        vocab = {name: vocabulary(run) for name, run in runs.items()}
    return Row("6g. peak anonymous memory of a 7-task pretrain: 32 MB vs 16 MB, both at the vocabulary's cap", pair,
               single, "MiB", 1.2, higher_is_better=False,
               note=f"default vocabularies, {vocab['32']:,} vs {vocab['16']:,}; the 16 MB of both recipes against the "
                    f"mixed one; the pair's annotations put together from theirs")


def _cached(path: Path, cache_dir: str) -> bool:
    from ernie_cpt.data.annotate import annotation_target
    from ernie_cpt.data.corpus import CorpusOptions, read_corpus
    from ernie_cpt.data.options import AnnotationOptions

    target = annotation_target(read_corpus(CorpusOptions(corpus=[str(path)])), AnnotationOptions(cache_dir=cache_dir))
    return (target[2] / "dataset_info.json").exists()


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import machine, table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_cap", description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", help="where the annotations are (or go; default: a temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-cap-cache-") as temporary:
        row = measure(args.cache_dir or temporary)
    print(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(
        ["python -m benchmarks.scale_cap", *(argv if argv is not None else sys.argv[1:])]), **machine()}))
    print(table([row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
