"""The values of user tables, type-checked: corpus tables, labelled files, pair files, click logs.

A text cell must be a string. A list of strings is read as paragraphs, joined with a blank
line (the corpus' paragraph break) where the column allows it (a document's text); any other
value (a dict, a number, a boolean, a nested list, a list holding a number) is a
:class:`~ernie_cpt.errors.UserError` naming the file, the row and what the value is, never
turned into its Python printout (``"['…', '…']"``).
"""

from __future__ import annotations

from typing import Any

from ernie_cpt.errors import UserError
from ernie_cpt.messages import describe

PARAGRAPH_JOIN = "\n\n"


def text_cell(value: Any, where: str, field: str, paragraphs: bool = False) -> str | None:
    """A cell that must hold text: a string as it is; None when missing; with ``paragraphs``, a
    list of strings joined as paragraphs. ``where`` names the file and row in errors
    (``"corpus.jsonl row 3"``). Raises UserError for any other value."""
    if value is None or isinstance(value, str):
        return value
    if paragraphs and isinstance(value, list) and all(isinstance(item, str) for item in value):
        return PARAGRAPH_JOIN.join(value)
    allowed = "a string, or a list of strings (one per paragraph)" if paragraphs else "a string"
    raise UserError(f"{where}: '{field}' is {describe(value)}; it must be {allowed}: fix that row or pass the "
                    f"right field name")


def id_cell(value: Any, where: str, field: str) -> str:
    """An identifier cell: a string or an integer, as a string. Raises UserError for any other value."""
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return str(value)
    raise UserError(f"{where}: '{field}' is {describe(value)}; an id must be a string or an integer")
