"""Small helpers for messages people read."""

from __future__ import annotations

from typing import Any


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 document"``, ``"2 documents"``, ``"1,200 steps"``; ``plural_form`` for irregular nouns
    (``plural(2, "process", "processes")``)."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"


def describe(value: Any) -> str:
    """What a value is, in words: ``"a number (12)"``, ``"an object (dict)"``, ``"a list holding a list"``."""
    if isinstance(value, (bool, int, float)):
        return f"{_kind(value)} ({str(value).lower() if isinstance(value, bool) else repr(value)})"
    if isinstance(value, dict):
        return "an object (dict)"
    if isinstance(value, list):
        other = next((item for item in value if not isinstance(item, str)), None)
        return f"a list holding {_kind(other)}" if other is not None else "a list of strings"
    return _kind(value)


def _kind(value: Any) -> str:
    kinds = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", dict: "an object",
             list: "a list", str: "a string"}
    return kinds.get(type(value), f"a {type(value).__name__}")
