"""Real English text found on this machine, as documents for the scale corpora (:mod:`benchmarks.scale_corpus`).

Each source yields ``(id, title, text)`` documents (paragraphs separated by a blank line, the wrapped
lines of a paragraph joined with single spaces) in the order of a hash of their id, so that a
smaller corpus takes a prefix of every source of a larger one. A source that is absent here
yields nothing. The ``mixed`` recipe's sources:

* ``austen``: the chapters of the six novels of ``../shared/corpora/austen`` ("CHAPTER I" kept);
* ``jargon``: the entries of ``../shared/corpora/jargon.jsonl`` (titled);
* ``pydoc``: Python's own help topics (``pydoc_data.topics``; titled);
* ``docstrings``: the docstrings of each module of Python's standard library, one document per module;
* ``man``: manual pages rendered to text with ``man -l -P cat`` (titled ``name(section)``).

The ``reference`` recipe's, built otherwise (other text, other sizes of document):

* ``libraries``: the docstrings of each class (its methods' included) and top-level function of the
  installed third-party packages (``purelib``), one document each, titled ``module.name``;
* ``info``: whole GNU Info manuals (``/usr/share/info``; coreutils is 0.9 M characters), one document
  each, the ``Node:`` headers as paragraphs;
* ``docs``: the READMEs, NEWS files and ``.md``/``.txt``/``.rst`` notes of ``/usr/share/doc``;
* ``fortunes``: ``../shared/corpora/fortunes-topics``, 25 fortunes of one topic per document, one a paragraph;
* ``man_tail``: manual pages taken from the other end of the hash order (so not those of ``mixed``).
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import re
import subprocess
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora"
MAN_ROOT = Path("/usr/share/man")
INFO_ROOT = Path("/usr/share/info")
DOC_ROOT = Path("/usr/share/doc")
CHAPTER = re.compile(r"^CHAPTER [IVXLC0-9]+\.?$")
DOC_NOTE = re.compile(r"^(README|NEWS|FAQ|TODO)|\.(md|txt|rst)$", re.IGNORECASE)
FORTUNES_PER_DOCUMENT = 25
Document = tuple[str, str | None, str]  # (id, title, text)


def paragraphs(text: str) -> str:
    """Blank-line separated paragraphs, each paragraph's lines joined by single spaces."""
    blocks = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n"))
    return "\n\n".join(" ".join(block.split()) for block in blocks if block.strip())


def hash_order(ids: list[str]) -> list[str]:
    return sorted(ids, key=lambda name: hashlib.sha1(name.encode()).hexdigest())


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode("utf-8", errors="replace")


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
    for name in hash_order(list(chapters)):
        yield name, None, chapters[name]


def jargon() -> Iterator[Document]:
    path = SHARED / "jargon.jsonl"
    if not path.is_file():
        return
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        record = json.loads(line)
        entries[f"jargon:{number}"] = (record["title"], paragraphs(record["text"]))
    for name in hash_order(list(entries)):
        yield name, *entries[name]


def pydoc() -> Iterator[Document]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return
    for name in hash_order(list(topics)):
        yield f"pydoc:{name}", name, paragraphs(topics[name])


def _docstrings(nodes: list[ast.AST]) -> str:
    found = [ast.get_docstring(node) for top in nodes for node in ast.walk(top)
             if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    return paragraphs("\n\n".join(filter(None, found)))


def _modules(root: Path, skip: set[str]) -> dict[str, Path]:
    return {str(p.relative_to(root)): p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts)}


def _parsed(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return None


def docstrings() -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["stdlib"])
    modules = _modules(root, {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo"})
    for name in hash_order(list(modules)):
        if tree := _parsed(modules[name]):
            yield f"stdlib:{name}", name.removesuffix(".py").replace("/", "."), _docstrings([tree])


def libraries() -> Iterator[Document]:
    root = Path(sysconfig.get_paths()["purelib"])
    modules = _modules(root, {"test", "tests", "testing", "_vendor", "vendored", "benchmarks"})
    for name in hash_order(list(modules)):
        tree = _parsed(modules[name])
        module = name.removesuffix(".py").replace("/", ".")
        for node in tree.body if tree else []:
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"lib:{module}:{node.lineno}", f"{module}.{node.name}", _docstrings([node])


def info() -> Iterator[Document]:
    manuals: dict[str, list[Path]] = {}
    for path in sorted(INFO_ROOT.glob("*.info*")):
        manuals.setdefault(re.sub(r"\.info(-\d+)?(\.gz)?$", "", path.name), []).append(path)
    for name in hash_order(list(manuals)):
        parts = sorted(manuals[name], key=lambda p: int(m[1]) if (m := re.search(r"-(\d+)", p.name)) else 0)
        nodes = [node for p in parts for node in _read_text(p).split("\x1f")
                 if not node.lstrip().startswith(("Tag Table:", "Indirect:", "End Tag Table"))]
        text = "\n\n".join(nodes)
        yield f"info:{name}", name, paragraphs(text)


def docs() -> Iterator[Document]:
    notes = {str(p.relative_to(DOC_ROOT)): p for p in DOC_ROOT.rglob("*")
             if p.is_file() and not p.is_symlink() and DOC_NOTE.search(p.name.removesuffix(".gz"))}
    for name in hash_order(list(notes)):
        try:
            yield f"doc:{name}", name.removesuffix(".gz"), paragraphs(_read_text(notes[name]))
        except (OSError, EOFError, gzip.BadGzipFile):
            continue


def fortunes() -> Iterator[Document]:
    by_topic: dict[str, list[str]] = {}
    for path in sorted((SHARED / "fortunes-topics").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            by_topic.setdefault(record["label"], []).append(" ".join(record["text"].split()))
    groups = {f"fortunes:{topic}#{k // FORTUNES_PER_DOCUMENT}": (topic, "\n\n".join(texts[k:k + FORTUNES_PER_DOCUMENT]))
              for topic, texts in by_topic.items() for k in range(0, len(texts), FORTUNES_PER_DOCUMENT)}
    for name in hash_order(list(groups)):
        yield name, *groups[name]


def _man(reverse: bool) -> Iterator[Document]:
    pages = {str(p.relative_to(MAN_ROOT)): p for p in MAN_ROOT.glob("man[1-8]/*") if p.is_file()}
    env = {**os.environ, "MANWIDTH": "80", "LANG": "C.UTF-8", "MAN_KEEP_FORMATTING": ""}
    order = hash_order(list(pages))
    for name in reversed(order) if reverse else order:
        try:
            rendered = subprocess.run(["man", "-l", "-P", "cat", str(pages[name])], capture_output=True, env=env,
                                      timeout=60).stdout.decode("utf-8", errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            return  # no man command
        text = re.sub(r".\x08", "", rendered)  # overstrike bold and underline, if any
        page = Path(name).name.removesuffix(".gz")
        yield f"man:{name}", f"{page.rsplit('.', 1)[0]}({page.rsplit('.', 1)[-1]})", paragraphs(text)


def man() -> Iterator[Document]:
    return _man(reverse=False)


def man_tail() -> Iterator[Document]:
    return _man(reverse=True)


# Each recipe: its sources, each with its share of the bytes.
RECIPES: dict[str, dict[str, tuple[Callable[[], Iterator[Document]], float]]] = {
    "mixed": {"austen": (austen, 0.25), "jargon": (jargon, 0.08), "pydoc": (pydoc, 0.03),
              "docstrings": (docstrings, 0.11), "man": (man, 0.53)},
    "reference": {"libraries": (libraries, 0.50), "info": (info, 0.25), "docs": (docs, 0.10),
                  "fortunes": (fortunes, 0.05), "man_tail": (man_tail, 0.10)},
}
