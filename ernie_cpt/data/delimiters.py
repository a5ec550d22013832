"""The field delimiter of a CSV or TSV file, sniffed from its first lines before it is parsed.

Excel in a European locale (where the comma is the decimal mark) saves "CSV" with ``;`` between
fields, and its texts hold commas; read as comma-separated, such a file fails with advice about
quotes that leads the user to edit the wrong thing. So the header line decides: the candidate
(``,``, ``;``, tab, ``|``) that splits it into several fields is the delimiter; where several do,
the one that splits the most of the first lines into as many fields as the header (the
consistency ``csv.Sniffer`` measures) wins, the file type's own (comma for ``.csv``, tab for
``.tsv``) on a tie. A file whose header holds one field is read with its type's own.
"""

from __future__ import annotations

import csv
import io

CANDIDATES = (",", ";", "\t", "|")
SAMPLE_LINES = 50
NAMES = {",": "','", ";": "';'", "\t": "a tab", "|": "'|'"}


def _fields(lines: list[str], delimiter: str) -> list[int]:
    """The number of fields of each record of ``lines`` split at ``delimiter`` (quotes respected)."""
    try:
        return [len(record) for record in csv.reader(io.StringIO("".join(lines), newline=""), delimiter=delimiter)]
    except csv.Error:  # an unclosed quote in the sample: this delimiter is no better than the others
        return []


def sniff_delimiter(head: str, default: str = ",") -> str:
    """The delimiter of a delimited text whose first characters are ``head`` (its header line first);
    ``default`` is the file type's own (``","`` for .csv, ``"\\t"`` for .tsv)."""
    lines = head.splitlines(keepends=True)
    if len(lines) > 1 and not lines[-1].endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut off
    lines = lines[:SAMPLE_LINES]
    if not lines:
        return default
    header = {d: n[0] for d in CANDIDATES if (n := _fields(lines[:1], d)) and n[0] > 1}
    if len(header) <= 1:
        return next(iter(header), default)
    consistent = {d: sum(count == header[d] for count in _fields(lines, d)) for d in header}
    best = max(consistent.values())
    return default if consistent.get(default) == best else next(d for d in CANDIDATES if consistent.get(d) == best)


def delimiter_name(delimiter: str) -> str:
    """How a message names a delimiter: ``';'``, ``a tab``."""
    return NAMES.get(delimiter, repr(delimiter))
