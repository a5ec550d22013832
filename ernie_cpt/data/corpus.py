"""Corpus ingestion: text files, tables and saved datasets become one `datasets.Dataset`, memory-mapped.

Every source is normalised to the columns ``doc_id`` (stable: a relative path, ``file:row`` or the
table's ``id``), ``title`` (``None`` when the source has none) and ``text`` (blank line =
paragraph break). Which files a ``--corpus`` path stands for (folders, globs, compressed files;
hidden files, editor backups and other formats skipped and named) is
:mod:`ernie_cpt.data.discovery`; tables are :mod:`ernie_cpt.data.corpus_tables`. Text files are
read as streams (:mod:`ernie_cpt.data.text_files`) into an Arrow file, so memory holds one
document at a time, not the corpus: files that are empty, binary, not UTF-8 text or damaged are
skipped with one warning; a document longer than ``--max-document-chars`` is cut into parts at
section or paragraph boundaries (logged); a paragraph longer than ``MAX_PARAGRAPH_CHARS`` (say, a
50 MB file without a line break) is an error: such text is not prose in paragraphs, and the
tasks work on paragraphs and sentences.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
from datasets.exceptions import DatasetGenerationError

from ernie_cpt.data.corpus_tables import COLUMNS, FEATURES, load_saved, load_table
from ernie_cpt.data.discovery import CorpusFile, discover, skipped_summary
from ernie_cpt.data.options import MAX_PARAGRAPH_CHARS, CorpusOptions
from ernie_cpt.data.text_files import file_chunks, file_encoding, rows_per_batch, scan_text_file, text_parts
from ernie_cpt.data.units import as_units
from ernie_cpt.errors import UserError
from ernie_cpt.files import existing_folder, unwritable
from ernie_cpt.full_disk import writing
from ernie_cpt.messages import plural

__all__ = ["MAX_PARAGRAPH_CHARS", "CorpusOptions", "bundled_corpus", "corpus_chars", "corpus_fingerprint",
           "corpus_words", "held_out_count", "load_corpus", "paragraph_bounds", "split_documents"]

log = logging.getLogger(__name__)

PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
ARROW_BATCH_ROWS = 64  # documents of up to --max-document-chars each: a batch copied from a selection stays small


def bundled_corpus() -> Path:
    """The demo corpus shipped with the package: chapters 1-12 of Austen's *Persuasion*."""
    return Path(str(resources.files("ernie_cpt.data") / "persuasion"))


def paragraph_bounds(text: str) -> list[tuple[int, int]]:
    """Char spans of the text between blank lines, as they are (untrimmed, blank ones included)."""
    breaks = list(PARAGRAPH_BREAK.finditer(text))
    return list(zip([0, *(match.end() for match in breaks)], [*(match.start() for match in breaks), len(text)]))


def _text_documents(files: list[tuple[str, str, int, int, int, int]]) -> Iterator[dict[str, Any]]:
    """Generator for `Dataset.from_generator`: each file's parts. A file is (doc_id, path, size, mtime, parts,
    max_chars): its stamp and the limit make the generator's cache key."""
    for doc_id, path, _size, _mtime, parts, max_chars in files:
        encoding, problem = file_encoding(path)
        if encoding is None:  # it was text when it was scanned
            raise UserError(f"{path} changed while the corpus was read (now {problem}); run again")
        for number, part in enumerate(text_parts(file_chunks(path, encoding), max_chars if parts > 1 else 0, path),
                                      1):
            yield {"doc_id": doc_id if parts == 1 else f"{doc_id}#part-{number}", "title": None,
                   "text": part.replace("\r\n", "\n")}


def _load_text_files(files: list[CorpusFile], max_chars: int, skipped: dict[str, list[str]],
                     long_docs: list[str]) -> datasets.Dataset | None:
    """The usable files as documents, read in one streaming pass to check them and one to write them to
    Arrow; the others are added to ``skipped`` under their problem, the parts of long ones to ``long_docs``."""
    usable, longest = [], 0
    for file in files:
        scan = scan_text_file(file.path, max_chars)
        if scan.problem:
            skipped.setdefault(scan.problem, []).append(file.name)
            continue
        if scan.parts > 1:
            long_docs.append(f"{file.name} ({scan.chars:,} characters, {scan.parts} parts)")
        stat = file.path.stat()
        usable.append((file.name, str(file.path.resolve()), stat.st_size, stat.st_mtime_ns, scan.parts, max_chars))
        longest = max(longest, scan.longest)
    if not usable:
        return None
    try:
        return datasets.Dataset.from_generator(_text_documents, gen_kwargs={"files": usable}, features=FEATURES,
                                               writer_batch_size=rows_per_batch(longest))
    except DatasetGenerationError as e:  # datasets wraps what the generator raised
        if isinstance(e.__cause__, UserError):  # a file that changed after its scan
            raise e.__cause__ from None
        raise


def _check_ids(corpus: datasets.Dataset) -> None:
    """Refuse two documents with one ``doc_id``: counted in Arrow, column by column, never in a Python set."""
    chunks = [batch.column("doc_id") for batch in corpus.select_columns(["doc_id"]).with_format("arrow")
              .iter(batch_size=100_000)]
    ids = pa.chunked_array(chunks, type=pa.string())
    if pc.count_distinct(ids).as_py() == len(corpus):
        return
    counts = pc.value_counts(ids)
    twice = counts.filter(pc.greater(counts.field("counts"), 1))[0]["values"].as_py()
    raise UserError(f"two corpus documents share the id {twice!r}; pass sources with distinct file names or 'id' "
                    f"values")


def _sources(options: CorpusOptions) -> list[str]:
    """The ``--corpus`` paths, or the chapters of the bundled sample (not its SOURCE.md)."""
    return list(options.corpus) or [str(p) for p in sorted(bundled_corpus().glob("chapter-*.txt"))]


def load_corpus(options: CorpusOptions) -> datasets.Dataset:
    """All documents of the corpus as a Dataset with columns doc_id, title, text (Arrow, memory-mapped).

    Raises:
        UserError: for a path that does not exist, a glob that matches nothing, a folder with nothing to
            read, a table without the text field or with a cell of another type, a paragraph over
            MAX_PARAGRAPH_CHARS, two documents with one id, or no text at all.
    """
    sources = _sources(options)
    found = discover(sources)
    skipped, parts = found.skipped, []
    long_docs: list[str] = []
    texts: list[CorpusFile] = []
    for file in [*found.files, None]:
        if file is not None and file.kind == "text":
            texts.append(file)
            continue
        if texts:
            parts.append(_load_text_files(texts, options.max_document_chars, skipped, long_docs))
            texts = []
        if file is not None:
            parts.append((load_saved if file.kind == "saved" else load_table)(file, options, long_docs))
    parts = [p for p in parts if p is not None and len(p)]
    summary = skipped_summary(skipped)
    if not parts:
        reason = f" (skipped {summary})" if summary else ""
        raise UserError(f"no text found in {', '.join(sources)}{reason}; the corpus needs non-empty UTF-8 text")
    if summary:
        log.warning("skipped %s", summary)
    if long_docs:
        log.info("%s longer than --max-document-chars %s %s read as parts cut at section or paragraph boundaries "
                 "(doc_id#part-K): %s", plural(len([d for d in long_docs if d != "..."]), "document"),
                 f"{options.max_document_chars:,}", "is" if len(long_docs) == 1 else "are", ", ".join(long_docs))
    corpus = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    _check_ids(corpus)
    return corpus


def _arrow_batches(corpus: datasets.Dataset, columns: list[str]) -> Iterator[pa.Table]:
    """``columns`` of the corpus in Arrow batches of ARROW_BATCH_ROWS rows: slices of the memory-mapped table
    (copies of those rows only where the corpus is a selection of another), never Python strings."""
    yield from corpus.select_columns(columns).with_format("arrow").iter(batch_size=ARROW_BATCH_ROWS)


def corpus_fingerprint(corpus: datasets.Dataset) -> str:
    """A content hash of every document (id, title, text): each value's UTF-8 bytes hashed from Arrow's buffers,
    one document at a time."""
    digest = hashlib.sha256()
    for batch in _arrow_batches(corpus, COLUMNS):
        columns = [batch.column(name) for name in COLUMNS]
        for row in range(batch.num_rows):
            for column in columns:
                value = column[row]
                digest.update(value.as_buffer() if value.is_valid else b"")
                digest.update(b"\x1f")
    return digest.hexdigest()


def corpus_chars(corpus: datasets.Dataset) -> int:
    """The number of characters of text in the corpus (counted in Arrow)."""
    return sum(pc.sum(pc.utf8_length(batch.column("text"))).as_py() or 0
               for batch in _arrow_batches(corpus, ["text"]))


def corpus_words(corpus: datasets.Dataset) -> int:
    """The number of whitespace-separated words in the corpus (one document in Python at a time)."""
    return sum(len(text.as_py().split()) for batch in _arrow_batches(corpus, ["text"]) for text in batch.column("text"))


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
    return documents.train_test_split(test_size=held_out_count(len(documents), eval_fraction), seed=seed)


def held_out_count(documents: int, eval_fraction: float) -> int:
    """How many of ``documents`` are held out: ``eval_fraction`` of them rounded down, so the held-out share
    never exceeds what was asked, except that at least one is held out and at least one is left to train
    on (3 documents at 0.5 hold out 1; 20 at 0.001 hold out 1; 3 at 0.9 hold out 2)."""
    wanted = math.floor(eval_fraction * documents + 1e-9)  # 0.29 * 100 is 28.999999999999996
    return min(documents - 1, max(1, wanted))


def read_corpus(options: CorpusOptions) -> datasets.Dataset:
    """:func:`load_corpus`; a datasets cache (``HF_DATASETS_CACHE``) this process cannot write is refused
    first, and a full disk where `datasets` writes text files and tables as Arrow there raises
    :class:`~ernie_cpt.full_disk.DiskFull` naming that folder."""
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    if reason := unwritable(existing_folder(cache)):  # datasets locks and writes there even to read a cached copy
        raise UserError(f"the datasets cache {cache} cannot be written ({reason}); datasets keeps the corpus there as "
                        f"Arrow: make it writable, or set HF_DATASETS_CACHE to a writable folder")
    with writing(f"the corpus into the datasets cache {cache}", cache):
        return load_corpus(options)
