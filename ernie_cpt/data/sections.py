"""Sections of a document: the parts that generic headings ("CHAPTER I", "Volume 2") divide it into.

A novel read as one document has hundreds of thousands of words, so "occurs elsewhere in the
document" is true of almost every word (94 % of Austen's labelled words) and six novels give
six queries. Tasks that need a document to be about one thing (token-document relation, IR
queries) use its sections when it has them.
"""

from __future__ import annotations

import re

GENERIC_HEADING = re.compile(r"(chapter|volume|book|part|section|act|scene|letter|appendix)\s+([0-9]+|[ivxlcdm]+)\.?",
                             re.IGNORECASE)


def is_generic_heading(paragraph: str) -> bool:
    """Whether a paragraph is a numbered label such as "Chapter 3" or "VOLUME II" and nothing else."""
    return GENERIC_HEADING.fullmatch(" ".join(paragraph.split())) is not None


def paragraph_sections(text: str, starts: list[int], ends: list[int]) -> list[int]:
    """The section number of each paragraph: how many generic headings open at or before it (0 for
    what precedes the first heading, and for every paragraph of a document without headings)."""
    sections, current = [], 0
    for start, end in zip(starts, ends):
        current += is_generic_heading(text[start:end])
        sections.append(current)
    return sections
