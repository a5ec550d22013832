"""A corpus of distinct English documents of a chosen size, from real text found on this machine.

``python -m benchmarks.scale_corpus OUT --megabytes 16 [--recipe mixed|reference] [--shards N]``
writes ``OUT`` (one ``{"id", "title", "text"}`` per line, paragraphs separated by a blank line; with
``--shards N``, a folder of N gzipped JSONL files) and ``OUT.json`` beside it (what it holds per
source). A recipe is a set of sources (:mod:`benchmarks.corpus_sources`), each with a share of the
bytes: ``mixed`` (Austen chapters, Jargon File entries, Python's help topics and standard library
docstrings, manual pages) and ``reference`` (other text, other document sizes: third-party
libraries' docstrings per class or function, whole GNU Info manuals, /usr/share/doc notes, fortunes
grouped by topic, manual pages from the other end of their order).

Within a source, documents are taken in the order of a hash of their id, so a smaller corpus is a
prefix of a larger one of every source: 1 MB and 16 MB of one recipe have the same mix. A missing
source's share goes to the others. Documents with the same text are kept once. Only when the
machine's sources cannot fill the size are documents repeated, each repeat with its paragraphs in
another seeded order and its own id (``distinct`` is then false in ``OUT.json``): the texts differ,
but their sentences recur across documents.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.corpus_sources import RECIPES, Document

VERSION = 1  # of what the sources give: part of the name of a cached corpus
MIN_DOCUMENT_CHARS = 200


def _take(source: Iterator[Document], budget: int, seen: set[str], taken: list[Document]) -> int:
    """Append documents of ``source`` to ``taken`` until ``budget`` bytes; returns the bytes taken."""
    size = 0
    for document in source:
        if size >= budget:
            break
        text = document[2]
        digest = hashlib.sha1(text.encode()).hexdigest()
        if len(text) < MIN_DOCUMENT_CHARS or digest in seen:
            continue
        seen.add(digest)
        taken.append(document)
        size += len(text.encode())
    return size


def build(megabytes: float, seed: int = 0, recipe: str = "mixed") -> tuple[list[Document], dict]:
    """Documents of about ``megabytes`` MB (10^6 bytes of UTF-8 text) of ``recipe``'s sources, and what they
    hold per source."""
    target = int(megabytes * 1e6)
    taken: list[Document] = []
    seen: set[str] = set()
    stats: dict = {"sources": {}}
    sources = RECIPES[recipe]
    shares = [share for _, share in sources.values()]
    for i, (name, (source, share)) in enumerate(sources.items()):  # each its share of what is left: a shortfall
        left = target - sum(s["bytes"] for s in stats["sources"].values())  # passes on
        budget = int(left * share / sum(shares[i:]))
        before = len(taken)
        got = _take(source(), budget, seen, taken)
        stats["sources"][name] = {"documents": len(taken) - before, "bytes": got}
    remaining = target - sum(s["bytes"] for s in stats["sources"].values())
    stats["distinct"] = remaining <= target * 0.02
    rng = np.random.default_rng(seed)
    originals = list(taken)
    repeat = 1
    while remaining > target * 0.02 and originals:  # the machine has too little text: shuffled repeats
        for doc_id, title, text in originals:
            parts = text.split("\n\n")
            shuffled = "\n\n".join(parts[i] for i in rng.permutation(len(parts)))
            taken.append((f"{doc_id}~{repeat}", title, shuffled))
            remaining -= len(shuffled.encode())
            if remaining <= 0:
                break
        repeat += 1
    order = np.random.default_rng(seed).permutation(len(taken))
    documents = [taken[i] for i in order]
    stats.update(documents=len(documents), bytes=sum(len(t.encode()) for _, _, t in documents),
                 words=sum(len(t.split()) for _, _, t in documents))
    return documents, stats


def info_path(path: Path) -> Path:
    """Where the statistics of the corpus ``path`` (a JSONL file or a folder of shards) are written."""
    return path.with_name(path.name.removesuffix(".jsonl") + ".json")


def _lines(documents: list[Document]) -> Iterator[str]:
    for doc_id, title, text in documents:
        yield json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n"


def write(path: Path, megabytes: float, seed: int = 0, recipe: str = "mixed", shards: int = 0) -> dict:
    """Build and write the corpus to ``path`` (JSONL; with ``shards``, a folder of that many gzipped JSONL
    files, ``shard-00000.jsonl.gz``, ...) and its statistics beside it (:func:`info_path`); returns them."""
    documents, stats = build(megabytes, seed, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".partial")
    if shards:
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir()
        for k in range(shards):
            with gzip.open(staged / f"shard-{k:05d}.jsonl.gz", "wt", encoding="utf-8") as out:
                out.writelines(_lines(documents[k::shards]))
        shutil.rmtree(path, ignore_errors=True)
    else:
        with staged.open("w", encoding="utf-8") as out:
            out.writelines(_lines(documents))
    os.replace(staged, path)
    settings = {"megabytes": megabytes, "seed": seed, "recipe": recipe, "shards": shards}
    info_path(path).write_text(json.dumps({**settings, **stats}, indent=2) + "\n")
    return stats


def cached(path: Path, megabytes: float, seed: int = 0, recipe: str = "mixed", shards: int = 0) -> dict:
    """:func:`write` unless ``path`` already holds a corpus of these settings; returns its statistics."""
    info = info_path(path)
    if path.exists() and info.is_file():
        stats = json.loads(info.read_text())
        settings = {"megabytes": megabytes, "seed": seed, "recipe": recipe, "shards": shards}
        if {key: stats.get(key, default) for key, default in (("recipe", "mixed"), ("shards", 0), ("megabytes", None),
                                                              ("seed", None))} == settings:
            return stats
    return write(path, megabytes, seed, recipe, shards)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the JSONL file (or with --shards, the folder) to write; statistics "
                        "go beside it, to OUT with .json")
    parser.add_argument("--megabytes", type=float, default=16.0, help="size of the text (10^6 bytes; default 16)")
    parser.add_argument("--seed", type=int, default=0, help="order of the documents in the file")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="mixed", help="which sources (default: mixed)")
    parser.add_argument("--shards", type=int, default=0, help="write a folder of this many .jsonl.gz files")
    args = parser.parse_args(argv)
    stats = write(args.out, args.megabytes, args.seed, args.recipe, args.shards)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
