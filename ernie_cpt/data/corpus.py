"""Corpus ingestion: local text files, tables and saved datasets become one `datasets.Dataset`.

Every source is normalised to the columns ``doc_id`` (stable: a relative path or
``file:row``), ``title`` (``None`` when the source has none) and ``text`` (blank line =
paragraph break). In a table, a text that is a list of strings is read as paragraphs; any other
type is an error naming the file and the row (:mod:`ernie_cpt.data.cells`). Files that are empty
or not UTF-8 text are skipped with a warning. A paragraph longer than ``MAX_PARAGRAPH_CHARS``
(say, a 50 MB file without a line break) is an error: such text is not prose in paragraphs, and
the tasks work on paragraphs and sentences.
"""

from __future__ import annotations

import hashlib
import logging
import re
from importlib import resources
from pathlib import Path
from typing import Any

import datasets

from ernie_cpt.data.cells import id_cell, text_cell
from ernie_cpt.data.options import MAX_PARAGRAPH_CHARS, CorpusOptions
from ernie_cpt.data.read_only import load_read_only
from ernie_cpt.data.units import as_units
from ernie_cpt.errors import UserError
from ernie_cpt.full_disk import writing
from ernie_cpt.messages import plural
from ernie_cpt.text_encoding import PROBE_BYTES, bom_encoding, read_text, text_encoding, unmarked_utf16

log = logging.getLogger(__name__)

TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
COLUMNS = ["doc_id", "title", "text"]
# One schema for every source, so that folders and tables concatenate (pandas reads CSV as large_string).
FEATURES = datasets.Features({c: datasets.Value("string") for c in COLUMNS})
PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")


def bundled_corpus() -> Path:
    """The demo corpus shipped with the package: chapters 1-12 of Austen's *Persuasion*."""
    return Path(str(resources.files("ernie_cpt.data") / "persuasion"))


def _text_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be used as a text document (UTF-8, or UTF-8/16/32 with a byte-order mark),
    or None when it can."""
    data = path.read_bytes()
    encoding = bom_encoding(data)
    if encoding:
        try:
            return None if data.decode(encoding).strip() else "empty"
        except UnicodeDecodeError:
            return f"not {encoding.upper().removesuffix('-SIG')} although their byte-order mark says so"
    if not data.strip():
        return "empty"
    if b"\x00" in data:
        utf16 = unmarked_utf16(data[:PROBE_BYTES])
        return f"{utf16} without a byte-order mark (re-encode it: iconv -f {utf16} -t UTF-8)" if utf16 else "binary"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 (re-encode it, e.g. iconv -f latin1 -t utf-8)"
    return None


def paragraph_bounds(text: str) -> list[tuple[int, int]]:
    """Char spans of the text between blank lines, as they are (untrimmed, blank ones included)."""
    breaks = list(PARAGRAPH_BREAK.finditer(text))
    return list(zip([0, *(match.end() for match in breaks)], [*(match.start() for match in breaks), len(text)]))


def _check_paragraphs(text: str, source: str) -> None:
    """Refuse a text with a paragraph (text between blank lines) over ``MAX_PARAGRAPH_CHARS``."""
    if len(text) <= MAX_PARAGRAPH_CHARS:
        return
    longest = max(end - start for start, end in paragraph_bounds(text))
    if longest > MAX_PARAGRAPH_CHARS:
        shape = "has no line break at all" if "\n" not in text else "has no blank line for that long"
        raise UserError(f"{source} holds a paragraph of {longest:,} characters ({shape}); paragraphs of more than "
                        f"{MAX_PARAGRAPH_CHARS:,} are refused: separate paragraphs with blank lines, or split the "
                        f"text into several documents")


def _text_documents(files: list[tuple[str, str, int, int]]):
    """Generator for `Dataset.from_generator`; (doc_id, path, size, mtime) makes its cache key."""
    for doc_id, path, _size, _mtime in files:
        text = read_text(path).replace("\r\n", "\n")
        yield {"doc_id": doc_id, "title": None, "text": text}


def _load_text_files(paths: list[Path], root: Path | None,
                     skipped: dict[str, list[str]]) -> datasets.Dataset | None:
    """The usable files as documents; the others are added to ``skipped`` under their problem."""
    usable = []
    for path in paths:
        problem = _text_file_problem(path)
        if problem:
            skipped.setdefault(problem, []).append(path.name)
            continue
        stat = path.stat()
        if stat.st_size > MAX_PARAGRAPH_CHARS:
            _check_paragraphs(read_text(path), str(path))
        doc_id = str(path.relative_to(root)) if root else path.name
        usable.append((doc_id, str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    if not usable:
        return None
    return datasets.Dataset.from_generator(_text_documents, gen_kwargs={"files": usable}, features=FEATURES)


def _normalise_table(ds: datasets.Dataset, source: str, text_field: str, title_field: str) -> datasets.Dataset:
    if text_field not in ds.column_names:
        raise UserError(f"{source} has no '{text_field}' field (it has: {', '.join(ds.column_names)}); "
                        f"pass --text-field NAME")
    has_title = title_field in ds.column_names
    has_id = "id" in ds.column_names
    name = Path(source).name

    def normalise(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        rows = [f"{source} row {i + 1}" for i in indices]
        texts = [text_cell(t, row, text_field, paragraphs=True) for t, row in zip(batch[text_field], rows)]
        return {
            "doc_id": [id_cell(i, row, "id") for i, row in zip(batch["id"], rows)] if has_id
            else [f"{name}:{i}" for i in indices],
            "title": [text_cell(t, row, title_field) for t, row in zip(batch[title_field], rows)] if has_title
            else [None] * len(texts),
            "text": [t.replace("\r\n", "\n") if t is not None else "" for t in texts],
        }

    normalised = ds.map(normalise, batched=True, with_indices=True, remove_columns=ds.column_names,
                        features=FEATURES, desc=f"Reading {name}")
    kept = normalised.filter(lambda batch: [bool(t.strip()) for t in batch["text"]], batched=True)
    if len(kept) < len(normalised):
        log.warning("skipped %s of %s with an empty or missing '%s'",
                    plural(len(normalised) - len(kept), "row"), source, text_field)
    for batch in kept.select_columns(["doc_id", "text"]).iter(batch_size=1000):
        for doc_id, text in zip(batch["doc_id"], batch["text"]):
            _check_paragraphs(text, f"{source} (document {doc_id})")
    return kept


def _load_table(path: Path, text_field: str, title_field: str) -> datasets.Dataset:
    builder = TABLE_FORMATS[path.suffix.lower()]
    encoding = {} if builder == "parquet" else {"encoding": text_encoding(path, "corpus table")}
    try:
        ds = datasets.load_dataset(builder, data_files=str(path), split="train", **encoding)
    except Exception as e:  # datasets raises many types for malformed files
        raise UserError(f"cannot read {path} as {path.suffix} ({type(e).__name__}); check the file format") from e
    return _normalise_table(ds, str(path), text_field, title_field)


def _load_saved(path: Path, text_field: str, title_field: str) -> datasets.Dataset:
    ds = load_read_only(path)  # a user's folder is input: what is derived from it goes elsewhere
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"{path} holds splits {', '.join(ds)}; save a single split or one named 'train'")
        ds = ds["train"]
    return _normalise_table(ds, str(path), text_field, title_field)


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()


def load_corpus(options: CorpusOptions) -> datasets.Dataset:
    """All documents of the corpus as a Dataset with columns doc_id, title, text."""
    sources = [Path(p) for p in options.corpus] or [bundled_corpus()]
    parts: list[datasets.Dataset | None] = []
    skipped: dict[str, list[str]] = {}
    for source in sources:
        if not source.exists():
            raise UserError(f"corpus path {source} does not exist; pass existing files or folders to --corpus")
        if source.is_dir() and _is_saved_dataset(source):
            parts.append(_load_saved(source, options.text_field, options.title_field))
        elif source.is_dir():
            files = sorted(p for p in source.rglob("*.txt") if p.is_file())
            if not files:
                raise UserError(f"corpus folder {source} contains no .txt files; add text files or pass "
                                f".jsonl/.csv/.parquet files")
            parts.append(_load_text_files(files, source, skipped))
        elif source.suffix.lower() in TABLE_FORMATS:
            parts.append(_load_table(source, options.text_field, options.title_field))
        else:
            parts.append(_load_text_files([source], None, skipped))
    parts = [p for p in parts if p is not None and len(p)]
    summary = "; ".join(f"{plural(len(names), 'file')} that {'is' if len(names) == 1 else 'are'} {problem}: "
                        f"{', '.join(names[:3])}{', ...' if len(names) > 3 else ''}"
                        for problem, names in skipped.items())
    if not parts:
        reason = f" (skipped {summary})" if summary else ""
        raise UserError(f"no text found in {', '.join(map(str, sources))}{reason}; "
                        f"the corpus needs non-empty UTF-8 text")
    if summary:
        log.warning("skipped %s", summary)
    corpus = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    if len(set(corpus["doc_id"])) != len(corpus):
        raise UserError("two corpus documents share an id; pass sources with distinct file names or 'id' values")
    return corpus


def corpus_fingerprint(corpus: datasets.Dataset) -> str:
    """A content hash of every document (id, title, text), streamed in batches."""
    digest = hashlib.sha256()
    for batch in corpus.select_columns(COLUMNS).iter(batch_size=1000):
        for doc_id, title, text in zip(batch["doc_id"], batch["title"], batch["text"]):
            for part in (doc_id, title or "", text):
                digest.update(part.encode("utf-8"))
                digest.update(b"\x1f")
    return digest.hexdigest()


def corpus_chars(corpus: datasets.Dataset) -> int:
    """The number of characters of text in the corpus."""
    return sum(len(t) for batch in corpus.select_columns(["text"]).iter(batch_size=1000) for t in batch["text"])


def corpus_words(corpus: datasets.Dataset) -> int:
    """The number of whitespace-separated words in the corpus."""
    return sum(len(t.split()) for batch in corpus.select_columns(["text"]).iter(batch_size=1000)
               for t in batch["text"])


def split_documents(documents: datasets.Dataset, eval_fraction: float, seed: int) -> datasets.DatasetDict:
    """Hold out a seeded fraction of whole documents (at least one) for evaluation. A corpus of a single
    annotated document is read as its sections or blocks of paragraphs first (:mod:`ernie_cpt.data.units`),
    for training as well. Raises UserError when even that leaves one document to hold out."""
    documents = as_units(documents, eval_fraction)
    if eval_fraction <= 0:
        return datasets.DatasetDict(train=documents, test=documents.select([]))
    if len(documents) < 2:
        raise UserError("the corpus is a single document of one paragraph, so nothing can be held out for "
                        "evaluation; add text (blank lines separate paragraphs) or pass --eval-fraction 0")
    n_test = min(len(documents) - 1, max(1, round(eval_fraction * len(documents))))
    return documents.train_test_split(test_size=n_test, seed=seed)


def read_corpus(options: CorpusOptions) -> datasets.Dataset:
    """:func:`load_corpus`; a full disk where `datasets` writes text files and tables as Arrow (its cache,
    ``HF_DATASETS_CACHE``) raises :class:`~ernie_cpt.full_disk.DiskFull` naming that folder."""
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    with writing(f"the corpus into the datasets cache {cache}", cache):
        return load_corpus(options)
