"""Small helpers for messages people read."""

from __future__ import annotations


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 document"``, ``"2 documents"``, ``"1,200 steps"``; ``plural_form`` for irregular nouns
    (``plural(2, "process", "processes")``)."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"
