"""One big document read as several: its sections, or else contiguous blocks of paragraphs.

Held-out evaluation holds out whole documents, and several tasks need more than one document
(sentence distance's "other document" pairs, IR relevance's queries). A corpus of a single
document (one book, one dump, one log file: the commonest first try) has nothing to hold out,
so it is read as units: one per section when generic headings ("CHAPTER I",
:mod:`ernie_cpt.data.sections`) divide it into enough sections that one held out is at most
twice ``--eval-fraction`` of them (10 at the default 5 %; the text before the first heading
joins the first section), else ``max(BLOCKS, 1 / eval_fraction)`` blocks of consecutive
paragraphs of nearly equal counts (``numpy.array_split``). A document longer than
``--max-document-chars`` is read as parts (``<id>#part-<k>``); a corpus of nothing but the parts of
one document is one document too, each part read as its share of the units. Every unit is a
document of its own: ``doc_id`` ``<id>#section-<k>`` or ``<id>#paragraphs-<first>-<last>``
(1-based, inclusive), its text the source from its first paragraph to its last, and every
annotated span (paragraphs, sentences, entities, noun chunks) of the source that lies inside
it, shifted to the unit's text. A single paragraph cannot be divided. A corpus of a few documents (two
novels) whose held-out split would take more than a quarter of the text is read as units the same way
(:func:`few_as_units`, called by :func:`ernie_cpt.data.corpus.split_documents`).
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

import datasets
import numpy as np

from ernie_cpt.data.sections import paragraph_sections

log = logging.getLogger(__name__)

BLOCKS = 20  # blocks of a document without enough sections (at least 1 / eval_fraction)
SPANS = ("paragraph", "sentence", "entity", "noun_chunk")


def units_needed(eval_fraction: float) -> int:
    """How many units a held-out fraction needs: one held out is at most ``eval_fraction`` of them."""
    return max(2, math.ceil(1 / eval_fraction)) if eval_fraction > 0 else 2


def unit_ranges(text: str, starts: list[int], ends: list[int], needed: int) -> tuple[list[tuple[int, int]], str]:
    """Paragraph index ranges [first, last) of the units of one document, and their kind."""
    sections = paragraph_sections(text, starts, ends)
    firsts = [p for p in range(1, len(starts)) if sections[p] != sections[p - 1] and sections[p - 1] > 0]
    bounds = [0, *firsts, len(starts)]
    if len(bounds) - 1 >= max(2, math.ceil(needed / 2)):
        return list(itertools.pairwise(bounds)), "section"
    blocks = np.array_split(np.arange(len(starts)), min(len(starts), max(needed, BLOCKS)))
    return [(int(block[0]), int(block[-1]) + 1) for block in blocks], "paragraphs"


def _unit(doc: dict[str, Any], first: int, last: int, name: str) -> dict[str, Any]:
    """The document restricted to paragraphs [first, last), spans shifted to its own text."""
    low, high = doc["paragraph_starts"][first], doc["paragraph_ends"][last - 1]
    unit = {**doc, "doc_id": f"{doc['doc_id']}#{name}", "title": None, "text": doc["text"][low:high]}
    for kind in SPANS:
        if f"{kind}_starts" not in doc:
            continue
        spans = zip(doc[f"{kind}_starts"], doc[f"{kind}_ends"])
        inside = [i for i, (start, end) in enumerate(spans) if low <= start and end <= high]
        unit[f"{kind}_starts"] = [doc[f"{kind}_starts"][i] - low for i in inside]
        unit[f"{kind}_ends"] = [doc[f"{kind}_ends"][i] - low for i in inside]
        if kind == "entity":
            unit["entity_labels"] = [doc["entity_labels"][i] for i in inside]
    return unit


def _single_source(documents: datasets.Dataset, needed: int) -> str | None:
    """The source's ``doc_id`` when the corpus is one document: a single row, or fewer than ``needed`` rows
    that are all parts of one document (``book.txt#part-1``, ... :mod:`ernie_cpt.data.text_files`)."""
    if len(documents) == 1:
        return documents[0]["doc_id"]
    if len(documents) >= needed:
        return None
    sources = {doc_id.rsplit("#part-", 1)[0] for doc_id in documents["doc_id"]}
    return sources.pop() if len(sources) == 1 and all("#part-" in d for d in documents["doc_id"]) else None


def as_units(documents: datasets.Dataset, eval_fraction: float) -> datasets.Dataset:
    """``documents`` as they are when there are several; a single annotated document (or the parts of one,
    each read as its share of the units) as its units (logged), or as it is when it has a single paragraph."""
    needed = units_needed(eval_fraction)
    if "paragraph_starts" not in documents.column_names:
        return documents
    source = _single_source(documents, needed)
    if source is None or sum(len(starts) for starts in documents["paragraph_starts"]) < 2:
        return documents
    units, how = _read_as_units(documents, needed)
    parts = f", read as {len(documents)} parts" if len(documents) > 1 else ""
    log.info("the corpus is a single document (%s%s), so it is read as %d documents, %s: held-out evaluation and "
             "the tasks that need several documents use them", source, parts, len(units), how)
    return units


def can_divide(documents: datasets.Dataset, eval_fraction: float) -> bool:
    """Whether :func:`few_as_units` can divide ``documents``: annotated, fewer than a held-out fraction needs
    (one held out is more than ``eval_fraction`` of them), and some of them of several paragraphs."""
    return ("paragraph_starts" in documents.column_names and len(documents) < units_needed(eval_fraction)
            and sum(len(starts) for starts in documents["paragraph_starts"]) > len(documents))


def few_as_units(documents: datasets.Dataset, eval_fraction: float, share: float) -> datasets.Dataset:
    """A corpus of a few documents (two novels) whose held-out split would take ``share`` of the text, every
    document read as its units as a single one is (:func:`as_units`), so that about ``eval_fraction`` of
    the text is held out instead of a whole document (logged)."""
    units, how = _read_as_units(documents, units_needed(eval_fraction))
    log.info("the corpus has only %d documents, so holding out whole ones would hold out %.0f%% of its text: they "
             "are read as %d documents, %s; held-out evaluation and the tasks use them", len(documents), 100 * share,
             len(units), how)
    return units


def _read_as_units(documents: datasets.Dataset, needed: int) -> tuple[datasets.Dataset, str]:
    """Every document of several paragraphs as its units, ``needed`` in all at least, and how they were cut."""
    units, kinds, sizes = [], set(), []
    for doc in documents:
        if len(doc["paragraph_starts"]) < 2:
            units.append(doc)
            continue
        ranges, kind = unit_ranges(doc["text"], doc["paragraph_starts"], doc["paragraph_ends"],
                                   math.ceil(needed / len(documents)))
        kinds.add(kind)
        if kind == "section":
            units += [_unit(doc, first, last, f"section-{k + 1}") for k, (first, last) in enumerate(ranges)]
        else:
            units += [_unit(doc, first, last, f"paragraphs-{first + 1}-{last}") for first, last in ranges]
            sizes += [last - first for first, last in ranges]
    if kinds == {"section"}:
        how = "one per section (generic headings such as 'CHAPTER I')"
    elif kinds == {"paragraphs"}:
        how = f"blocks of {min(sizes) if min(sizes) == max(sizes) else f'{min(sizes)}-{max(sizes)}'} consecutive " \
              f"paragraphs"
    else:
        how = "sections where it has generic headings, else blocks of consecutive paragraphs"
    return datasets.Dataset.from_list(units, features=documents.features), how
