"""The rows of a labelled file (.jsonl/.json/.csv/.parquet) as they are written, each value its own.

A table library would coerce a column to one type (a float among integer labels makes every
label a float; a string among lists of numbers is turned into a number), and its error would
name the coerced value, or no row at all. These readers keep every cell as written, so an error
names the real row and value:

* JSON lines (or a .json list of objects): each line decoded and parsed by itself (a Latin-1
  byte or a malformed line is an error naming the line); ``NaN``/``Infinity`` are read as the
  floats they are, for the label checks to refuse;
* CSV (comma-separated, header first): read with :mod:`csv`; a text cell stays a string; an
  empty cell is missing; a label column whose every cell is a number gets each cell's own number
  (``int`` or ``float``), else every cell is a string (as pandas infers a column);
* Parquet: its own typed columns (:mod:`pyarrow.parquet`).

Every error is a :class:`~ernie_cpt.errors.UserError` naming the option, the file and the row.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ernie_cpt.data.cells import text_cell
from ernie_cpt.errors import UserError
from ernie_cpt.text_encoding import read_text

FORMATS = (".jsonl", ".json", ".csv", ".parquet")
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
        raise UserError(f"{flag} {path} is a directory; pass a .jsonl, .csv or .parquet file")
    if not path.is_file():
        raise UserError(f"{flag} file {path} does not exist; pass a .jsonl, .csv or .parquet file")
    if path.suffix.lower() not in FORMATS:
        raise UserError(f"{flag} file {path} must end in .jsonl, .json, .csv or .parquet")
    if not path.read_bytes().strip():
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


def _csv_rows(text: str, where: str) -> tuple[list[dict[str, Any]], list[str]]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows, line = [], 1  # line: the last line of the record read last
    try:
        header = next(reader)
        for record in reader:
            if any(cell.strip() for cell in record):
                if len(record) > len(header):
                    raise UserError(f"{where} row {len(rows) + 1} (line {line + 1}) has {len(record)} fields but "
                                    f"the header has {len(header)}; quote cells that hold a comma")
                rows.append({name: cell if cell.strip() else None for name, cell in zip(header, record)})
            line = reader.line_num
    except csv.Error as e:
        raise UserError(f"{where} row {len(rows) + 1} (line {line + 1}) cannot be read as CSV ({e}: a quote opened "
                        f"there is never closed?); close its quotes (a quote inside a cell is written \"\")") from e
    if len(header) == 1 and any(sep in header[0] for sep in ";\t|"):
        sep = next(sep for sep in ";\t|" if sep in header[0])
        raise UserError(f"{where} has a single column {header[0]!r}: its fields are separated by {sep!r}; a .csv "
                        f"must be comma-separated (or save it as .jsonl)")
    return rows, header


def _parquet_rows(path: Path, where: str) -> list[Any]:
    import pyarrow.parquet as pq

    try:
        return pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"cannot read {where} as Parquet ({type(e).__name__}: {str(e)[:100]}); check the file") from e


def read_rows(path: str | Path, flag: str) -> Rows:
    """The rows of a .jsonl/.json/.csv/.parquet file as written; ``flag`` (``--train``) names the option
    that gave the path in errors. Raises UserError for a missing, empty or malformed file, a byte
    that is not UTF-8, or a row that is not an object, naming the file and row."""
    path = Path(path)
    check_file(path, flag)
    where = f"{flag} file {path}"
    suffix = path.suffix.lower()
    fields: list[str] = []
    if suffix == ".parquet":
        rows = _parquet_rows(path, where)
    elif suffix == ".csv":
        rows, fields = _csv_rows(read_text(path, f"{flag} file"), where)
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
    return Rows(rows, fields, where, csv=suffix == ".csv")


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
