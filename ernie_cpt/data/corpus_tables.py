"""Corpus tables and saved datasets: one row = one document, read by `datasets` into Arrow (memory-mapped).

A ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet`` file, or one compressed as a whole (``.gz``,
``.bz2``, ``.xz``, ``.zst``: `datasets` decompresses it as it reads), or a folder that
``save_to_disk`` wrote. A CSV or TSV is read with the delimiter its header splits on
(:mod:`ernie_cpt.data.delimiters`; logged when it is not the type's own). Rows are normalised in
batches (``Dataset.map``), never pulled into Python whole: each cell is type-checked
(:mod:`ernie_cpt.data.cells`), a row with an empty text is dropped (counted in a warning), and a text
longer than ``--max-document-chars`` becomes parts (:mod:`ernie_cpt.data.text_files`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc

from ernie_cpt.compression import compression, format_suffix, open_binary
from ernie_cpt.data.cells import id_cell, text_cell
from ernie_cpt.data.delimiters import delimiter_name, sniff_delimiter
from ernie_cpt.data.discovery import TABLE_FORMATS, CorpusFile
from ernie_cpt.data.options import CorpusOptions
from ernie_cpt.data.read_only import load_read_only
from ernie_cpt.data.text_files import document_parts, rows_per_batch
from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from ernie_cpt.text_encoding import read_bytes, text_encoding

log = logging.getLogger(__name__)

COLUMNS = ["doc_id", "title", "text"]
# One schema for every source, so that folders and tables concatenate (pandas reads CSV as large_string).
FEATURES = datasets.Features({c: datasets.Value("string") for c in COLUMNS})
# While normalising: a document's part (0 = whole, else 1..parts) and its number of parts.
PART_FEATURES = datasets.Features({**FEATURES, "part": datasets.Value("int32"), "parts": datasets.Value("int32")})
DELIMITED = {".csv": ",", ".tsv": "\t"}


def _normalise(batch: dict[str, list[Any]], indices: list[int], source: str, name: str, text_field: str,
               title_field: str, max_chars: int) -> dict[str, list[Any]]:
    """``Dataset.map`` function: checked cells, empty texts dropped, long texts cut into parts."""
    out: dict[str, list[Any]] = {column: [] for column in PART_FEATURES}
    for k, index in enumerate(indices):
        row = f"{source} row {index + 1}"
        text = text_cell(batch[text_field][k], row, text_field, paragraphs=True)
        doc_id = id_cell(batch["id"][k], row, "id") if "id" in batch else f"{name}:{index}"
        title = text_cell(batch[title_field][k], row, title_field) if title_field in batch else None
        if text is None or not text.strip():
            continue
        parts = document_parts(text.replace("\r\n", "\n"), max_chars, f"{source} (document {doc_id})")
        for number, part in enumerate(parts, 1):
            out["doc_id"].append(doc_id if len(parts) == 1 else f"{doc_id}#part-{number}")
            out["title"].append(title)
            out["text"].append(part)
            out["part"].append(0 if len(parts) == 1 else number)
            out["parts"].append(len(parts))
    return out


def _longest(ds: datasets.Dataset, column: str) -> int:
    """The largest value of a text column in bytes (from Arrow, a slice at a time); for a column of another
    type (lists of paragraphs), the table's bytes per row."""
    kind = ds.features.arrow_schema.field(column).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return ds.data.nbytes // max(1, ds.data.num_rows)
    largest = 0
    for batch in ds.select_columns([column]).with_format("arrow").iter(batch_size=10_000):
        largest = max(largest, pc.max(pc.binary_length(batch.column(0))).as_py() or 0)
    return largest


def normalise_table(ds: datasets.Dataset, source: str, name: str, options: CorpusOptions,
                    long_docs: list[str]) -> datasets.Dataset:
    """``ds`` as documents (doc_id, title, text): ids from its ``id`` column, else ``<name>:<row>``. Adds the
    documents cut into parts to ``long_docs`` (``"doc (3 parts)"``)."""
    if options.text_field not in ds.column_names:
        raise UserError(f"{source} has no '{options.text_field}' field (it has: {', '.join(ds.column_names)}); "
                        f"pass --text-field NAME")
    columns = [c for c in (options.text_field, options.title_field, "id") if c in ds.column_names]
    rows = rows_per_batch(_longest(ds, options.text_field))
    normalised = ds.select_columns(columns).map(
        _normalise, batched=True, batch_size=rows, writer_batch_size=rows, with_indices=True,
        remove_columns=columns, features=PART_FEATURES,
        fn_kwargs={"source": source, "name": name, "text_field": options.text_field,
                   "title_field": options.title_field, "max_chars": options.max_document_chars},
        desc=f"Reading {Path(source).name}")
    part = normalised.data.column("part")
    whole_or_first = pc.sum(pc.less_equal(part, 1)).as_py() or 0
    if whole_or_first < len(ds):
        log.warning("skipped %s of %s with an empty or missing '%s'", plural(len(ds) - whole_or_first, "row"),
                    source, options.text_field)
    first_parts = normalised.data.filter(pc.equal(part, 1)).select(["doc_id", "parts"]).slice(0, 3).to_pylist()
    count = pc.sum(pc.equal(part, 1)).as_py() or 0
    long_docs += [f"{r['doc_id'].removesuffix('#part-1')} ({r['parts']} parts)" for r in first_parts]
    long_docs += ["..."] * (count > len(first_parts))
    return normalised.remove_columns(["part", "parts"])


def _read_options(path: Path, builder: str) -> dict[str, Any]:
    """The `datasets` builder options of a table: the encoding and delimiter of a text table, and reads of
    about BATCH_CHARS at a time (`datasets` reads JSON in 10 MB chunks that it also parses into Python
    objects, CSV in 10,000 rows, Parquet in whole row groups, whatever their size)."""
    if builder == "parquet":
        import pyarrow.parquet as pq

        if compression(path):
            return {}
        meta = pq.ParquetFile(path).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        return {"batch_size": rows_per_batch(size // max(1, meta.num_rows))}
    encoding = text_encoding(path, "corpus table")
    if builder == "json":
        return {"encoding": encoding, "chunksize": 1 << 20}
    head = read_bytes(path, 65536).decode(encoding, errors="replace")
    own = DELIMITED[format_suffix(path)]
    sep = sniff_delimiter(head, own)
    if sep != own:
        log.info("%s is read with %s between fields: its header splits on it", path, delimiter_name(sep))
    return {"encoding": encoding, "sep": sep, "chunksize": rows_per_batch(len(head) // max(1, head.count("\n")))}


def load_table(file: CorpusFile, options: CorpusOptions, long_docs: list[str]) -> datasets.Dataset:
    """The documents of one table file (compressed or not). Raises UserError for a file `datasets` cannot read,
    naming the delimiter of a CSV."""
    path = file.path
    builder = TABLE_FORMATS[format_suffix(path)]
    kwargs = _read_options(path, builder)
    try:
        if builder == "parquet" and compression(path):  # Parquet is read from its end: undo the compression first
            ds = _load_compressed_parquet(path)
        else:
            ds = datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as e:  # datasets raises many types for malformed files
        detail = str(e).splitlines()[0][:150] if str(e) else ""
        fields = f" with {delimiter_name(kwargs['sep'])} between fields" if "sep" in kwargs else ""
        raise UserError(f"cannot read {path} as {builder.upper()}{fields} ({type(e).__name__}: {detail}); check the "
                        f"file format") from e
    return normalise_table(ds, str(path), file.name, options, long_docs)


def _load_compressed_parquet(path: Path) -> datasets.Dataset:
    """A ``.parquet.gz`` (or .bz2/.xz/.zst) file, decompressed into a temporary file as a stream, then read."""
    with tempfile.TemporaryDirectory(prefix="ernie-cpt-parquet-") as folder:
        plain = Path(folder) / path.name.removesuffix(path.suffix)
        with open_binary(path) as source, open(plain, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
        ds = datasets.load_dataset("parquet", data_files=str(plain), split="train")
    return ds


def load_saved(file: CorpusFile, options: CorpusOptions, long_docs: list[str]) -> datasets.Dataset:
    """The documents of a folder written by ``save_to_disk``: a Dataset, or a DatasetDict's ``train`` split
    (which split is read, and which are not, is logged)."""
    ds = load_read_only(file.path)  # a user's folder is input: what is derived from it goes elsewhere
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise UserError(f"{file.path} holds splits {', '.join(ds)}; save a single split or one named 'train'")
        others = [split for split in ds if split != "train"]
        if others:
            log.info("%s holds the splits %s: the corpus is its 'train' split; %s %s not read (ernie-cpt holds out "
                     "--eval-fraction of the documents itself)", file.path, ", ".join(ds), ", ".join(others),
                     "is" if len(others) == 1 else "are")
        ds = ds["train"]
    return normalise_table(ds, str(file.path), file.name, options, long_docs)
