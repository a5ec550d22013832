"""A corpus of distinct English documents of a chosen size, from real text found on this machine.

``python -m benchmarks.scale_corpus OUT.jsonl --megabytes 16`` writes ``OUT.jsonl`` (one
``{"id", "title", "text"}`` per line, paragraphs separated by a blank line) and ``OUT.json`` (what
it holds per source). The sources, each with a share of the bytes:

* ``austen`` (25 %): the chapters of the six novels of ``../shared/corpora/austen`` (one document
  per chapter, its "CHAPTER I" heading kept);
* ``jargon`` (8 %): the entries of ``../shared/corpora/jargon.jsonl`` (titled);
* ``pydoc`` (3 %): Python's own help topics (``pydoc_data.topics``; titled);
* ``docstrings`` (11 %): the docstrings of each module of Python's standard library, one document
  per module (titled with its name);
* ``man`` (53 %): manual pages rendered to text with ``man -l -P cat`` (titled ``name(section)``).

Within a source, documents are taken in the order of a hash of their id, so a smaller corpus is a
prefix of a larger one of every source: 1 MB and 16 MB have the same mix. A missing source's share
goes to the others. Documents with the same text are kept once. Wrapped lines of a paragraph are
joined with single spaces. Only when the machine's sources cannot fill the size are documents
repeated, each repeat with its paragraphs in another seeded order and its own id (``distinct`` is
then false in ``OUT.json``): the texts differ, but their sentences recur across documents.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

VERSION = 1  # of what the sources give: part of the name of a cached corpus
SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"
MAN_ROOT = Path("/usr/share/man")
SHARES = {"austen": 0.25, "jargon": 0.08, "pydoc": 0.03, "docstrings": 0.11, "man": 0.53}
MIN_DOCUMENT_CHARS = 200
CHAPTER = re.compile(r"^CHAPTER [IVXLC0-9]+\.?$")
Document = tuple[str, str | None, str]  # (id, title, text)


def paragraphs(text: str) -> str:
    """Blank-line separated paragraphs, each paragraph's lines joined by single spaces."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return "\n\n".join(" ".join(block.split()) for block in blocks if block.strip())


def _hash_order(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda name: hashlib.sha1(name.encode()).hexdigest())


def austen() -> Iterator[Document]:
    chapters: dict[str, str] = {}
    for path in sorted((SHARED / "austen").glob("*.txt")):
        current: list[str] = []
        number = 0
        for paragraph in path.read_text(encoding="utf-8").split("\n\n"):
            if CHAPTER.match(paragraph.strip()) and current:
                chapters[f"austen/{path.stem}#{number}"] = "\n\n".join(current)
                current, number = [], number + 1
            current.append(paragraph.strip())
        chapters[f"austen/{path.stem}#{number}"] = "\n\n".join(current)
    for name in _hash_order(list(chapters)):
        yield name, None, chapters[name]


def jargon() -> Iterator[Document]:
    path = SHARED / "jargon.jsonl"
    if not path.is_file():
        return
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        entries[f"jargon:{number}"] = (record["title"], paragraphs(record["text"]))
    for name in _hash_order(list(entries)):
        yield name, *entries[name]


def pydoc() -> Iterator[Document]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return
    for name in _hash_order(list(topics)):
        yield f"pydoc:{name}", name, paragraphs(topics[name])


def docstrings() -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo"}
    modules = {str(p.relative_to(root)): p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts)}
    for name in _hash_order(list(modules)):
        try:
            tree = ast.parse(modules[name].read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        found = [ast.get_docstring(node) for node in ast.walk(tree)
                 if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        yield f"stdlib:{name}", name.removesuffix(".py").replace("/", "."), paragraphs("\n\n".join(filter(None, found)))


def man() -> Iterator[Document]:
    pages = {str(p.relative_to(MAN_ROOT)): p for p in MAN_ROOT.glob("man[1-8]/*") if p.is_file()}
    env = {**os.environ, "MANWIDTH": "80", "LANG": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    for name in _hash_order(list(pages)):
        try:
            rendered = subprocess.run(["man", "-l", "-P", "cat", str(pages[name])], capture_output=True, env=env,
                                      timeout=60).stdout.decode("utf-8", errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            return  # no man command
        text = re.sub(r".\x08", "", rendered)  # overstrike bold and underline, if any
        page = Path(name).name.removesuffix(".gz")
        yield f"man:{name}", f"{page.rsplit('.', 1)[0]}({page.rsplit('.', 1)[-1]})", paragraphs(text)


SOURCES: dict[str, Callable[[], Iterator[Document]]] = {
    "austen": austen, "jargon": jargon, "pydoc": pydoc, "docstrings": docstrings, "man": man}


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


def build(megabytes: float, seed: int = 0) -> tuple[list[Document], dict]:
    """Documents of about ``megabytes`` MB (10^6 bytes of UTF-8 text) and what they hold per source."""
    target = int(megabytes * 1e6)
    taken: list[Document] = []
    seen: set[str] = set()
    stats: dict = {"sources": {}}
    for i, name in enumerate(SHARES):  # each source its share of what is left: a shortfall passes on
        left = target - sum(s["bytes"] for s in stats["sources"].values())
        budget = int(left * SHARES[name] / sum(list(SHARES.values())[i:]))
        before = len(taken)
        got = _take(SOURCES[name](), budget, seen, taken)
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


def write(path: Path, megabytes: float, seed: int = 0) -> dict:
    """Build and write the corpus to ``path`` (JSONL) and its statistics beside it (``.json``); returns them."""
    documents, stats = build(megabytes, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".partial")
    with staged.open("w", encoding="utf-8") as out:
        for doc_id, title, text in documents:
            out.write(json.dumps({"id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    os.replace(staged, path)
    path.with_suffix(".json").write_text(json.dumps({"megabytes": megabytes, "seed": seed, **stats}, indent=2) + "\n")
    return stats


def cached(path: Path, megabytes: float, seed: int = 0) -> dict:
    """:func:`write` unless ``path`` already holds a corpus of these settings; returns its statistics."""
    info = path.with_suffix(".json")
    if path.is_file() and info.is_file():
        stats = json.loads(info.read_text())
        if stats.get("megabytes") == megabytes and stats.get("seed") == seed:
            return stats
    return write(path, megabytes, seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_corpus", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the JSONL file to write (statistics go to OUT with .json)")
    parser.add_argument("--megabytes", type=float, default=16.0, help="size of the text (10^6 bytes; default 16)")
    parser.add_argument("--seed", type=int, default=0, help="order of the documents in the file")
    args = parser.parse_args(argv)
    stats = write(args.out, args.megabytes, args.seed)
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
