"""The rows of a labelled file (.jsonl/.json/.csv/.parquet) as they are written, each value its own.

A table library would coerce a column to one type (a float among integer labels makes every
label a float; a string among lists of numbers is turned into a number), and its error would
name the coerced value, or no row at all. These readers keep every cell as written, so an error
names the real row and value:

* JSON lines (or a .json list of objects): each line decoded and parsed by itself (a Latin-1
  byte or a malformed line is an error naming the line); ``NaN``/``Infinity`` are read as the
  floats they are, for the label checks to refuse;
* CSV and TSV (header first): read with :mod:`csv`, with the delimiter sniffed from the header
  (``;``, tab or ``|`` as well as the type's own: :mod:`ernie_cpt.data.delimiters`, logged when it
  is not the type's own); a text cell stays a string; an empty cell is missing; a label column
  whose every cell is a number gets each cell's own number (``int`` or ``float``), else every
  cell is a string (as pandas infers a column);
* Parquet: its own typed columns (:mod:`pyarrow.parquet`).

A file compressed as a whole (``train.jsonl.gz``, ``.bz2``, ``.xz``, ``.zst``) is read as its
uncompressed form (:mod:`ernie_cpt.compression`).

Every error is a :class:`~ernie_cpt.errors.UserError` naming the option, the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ernie_cpt.compression import COMPRESSIONS, compression, format_suffix
from ernie_cpt.data.cells import text_cell
from ernie_cpt.data.delimiters import delimiter_name, sniff_delimiter
from ernie_cpt.errors import UserError
from ernie_cpt.text_encoding import read_bytes, read_text

log = logging.getLogger(__name__)

FORMATS = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
DELIMITED = {".csv": ",", ".tsv": "\t"}  # each type's own delimiter
KNOWN = f"a .jsonl, .csv, .tsv or .parquet file (or one compressed: {', '.join(COMPRESSIONS)})"
NUMBER = re.compile(r"[+-]?(\d+\.?\d*([eE][+-]?\d+)?|\.\d+([eE][+-]?\d+)?|nan|inf|infinity)", re.IGNORECASE)
INTEGER = re.compile(r"[+-]?\d+")


@dataclass
class Rows:
    """A file's rows (dicts of field -> value, None when missing), its fields in order of first
    appearance, and ``where`` (``"--train file F"``) for messages."""

    rows: list[dict[str, Any]]
    fields: list[str]
    where: str
    csv: bool = False

    def column(self, name: str, numbers: bool = False) -> list[Any]:
        """Each row's ``name`` value (None where missing); with ``numbers``, a CSV column as numbers when
        every cell is one (CSV cells are otherwise strings)."""
        values = [row.get(name) for row in self.rows]
        if numbers and self.csv and all(v is None or NUMBER.fullmatch(v.strip()) for v in values):
            values = [None if v is None else int(v) if INTEGER.fullmatch(v.strip()) else float(v) for v in values]
        return values


def check_file(path: Path, flag: str) -> None:
    """A UserError unless ``path`` is a non-empty file of a known format; ``flag`` names the option."""
    if path.is_dir():
        raise UserError(f"{flag} {path} is a directory; pass {KNOWN}")
    if not path.is_file():
        raise UserError(f"{flag} file {path} does not exist; pass {KNOWN}")
    if format_suffix(path) not in FORMATS:
        raise UserError(f"{flag} file {path} must end in .jsonl, .json, .csv, .tsv or .parquet (or one of these and "
                        f"{', '.join(COMPRESSIONS)})")
    if not read_bytes(path, 4096).strip():
        raise UserError(f"{flag} file {path} is empty; pass a file with labelled examples")


def _json_rows(text: str, where: str) -> list[Any]:
    if text.lstrip().startswith("["):  # a .json list of objects
        try:
            return json.loads(text)
        except ValueError as e:
            raise UserError(f"{where} is not valid JSON ({e}); write a list of objects, or one object per line") from e
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise UserError(f"{where} line {number} is not valid JSON ({e}); write one object per line") from e
    return rows


def _csv_rows(text: str, where: str, own: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a delimited text; ``own`` is its type's delimiter (``,`` for .csv), used unless the
    header splits on another (:func:`~ernie_cpt.data.delimiters.sniff_delimiter`)."""
    delimiter = sniff_delimiter(text[:65536], own)
    if delimiter != own:
        log.info("%s is read with %s between fields: its header splits on it", where, delimiter_name(delimiter))
    separator = delimiter_name(delimiter)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    rows: list[dict[str, str | None]] = []
    line = 1  # line: the last line of the record read last
    try:
        header = next(reader)
        for record in reader:
            if any(cell.strip() for cell in record):
                if len(record) > len(header):
                    raise UserError(f"{where} row {len(rows) + 1} (line {line + 1}) has {len(record)} fields but "
                                    f"the header has {len(header)} (fields separated by {separator}); quote cells "
                                    f"that hold {separator}")
                rows.append({name: cell if cell.strip() else None for name, cell in zip(header, record)})
            line = reader.line_num
    except csv.Error as e:
        raise UserError(f"{where} row {len(rows) + 1} (line {line + 1}) cannot be read as fields separated by "
                        f"{separator} ({e}: a quote opened there is never closed?); close its quotes (a quote inside "
                        f"a cell is written \"\")") from e
    return rows, header


def _parquet_rows(path: Path, where: str) -> list[Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:  # a whole-file compression (.parquet.gz) is undone first: Parquet is read from its end
        return pq.read_table(pa.BufferReader(read_bytes(path)) if compression(path) else path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"cannot read {where} as Parquet ({type(e).__name__}: {str(e)[:100]}); check the file") from e


def read_rows(path: str | Path, flag: str) -> Rows:
    """The rows of a .jsonl/.json/.csv/.tsv/.parquet file (or one compressed) as written; ``flag``
    (``--train``) names the option that gave the path in errors. Raises UserError for a missing, empty or
    malformed file, a byte that is not UTF-8, or a row that is not an object, naming the file and row."""
    path = Path(path)
    check_file(path, flag)
    where = f"{flag} file {path}"
    suffix = format_suffix(path)
    fields: list[str] = []
    if suffix == ".parquet":
        rows = _parquet_rows(path, where)
    elif suffix in DELIMITED:
        rows, fields = _csv_rows(read_text(path, f"{flag} file"), where, DELIMITED[suffix])
    else:
        rows = _json_rows(read_text(path, f"{flag} file"), where)
    odd = next((i for i, row in enumerate(rows) if not isinstance(row, dict)), None)
    if odd is not None:
        raise UserError(f"{where} row {odd + 1} is not an object of fields ({type(rows[odd]).__name__}); write one "
                        f"object per row")
    if not rows:
        raise UserError(f"{where} has no rows; pass a file with labelled examples")
    for row in rows:
        fields.extend(key for key in row if key not in fields)
    return Rows(rows, fields, where, csv=suffix in DELIMITED)


def field_values(table: Rows, name: str, hint: str, numbers: bool = False) -> list[Any]:
    """The ``name`` value of every row (``numbers``: see :meth:`Rows.column`); a UserError when no row has
    the field (``hint`` says how to name another) or a row lacks it."""
    if name not in table.fields:
        raise UserError(f"{table.where} has no '{name}' field (it has: {', '.join(table.fields)}); {hint}")
    values = table.column(name, numbers)
    missing = next((i for i, v in enumerate(values) if v is None), None)
    if missing is not None:
        raise UserError(f"{table.where}: row {missing + 1} has no '{name}'; fill it in or drop the row")
    return values


def nonempty_text(value: Any, where: str, name: str) -> str:
    """A text cell that must hold words: a string that is not blank. ``where`` names the file and row."""
    text = text_cell(value, where, name)
    if text is None:
        raise UserError(f"{where}: '{name}' is missing; fill it in or drop the row")
    if not text.strip():
        raise UserError(f"{where}: '{name}' is {'empty' if not text else 'only whitespace'}; give it text or "
                        f"drop the row")
    return text
