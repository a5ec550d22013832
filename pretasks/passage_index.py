"""The search engine of IR relevance: BM25 over the passages of a bounded sample of query units.

Okapi BM25 (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and Beyond";
k1=1.2, b=0.75, Lucene's non-negative idf) over an inverted index of passages: the paragraphs of
at least ``MIN_PASSAGE_WORDS`` words of the indexed query units (a document, or a chapter of an
untitled one; see :func:`pretasks.ir_relevance.query_units`). Terms are case-folded words minus
spaCy's English stop words, numbers, single letters and underscores.

The index holds at most about ``INDEX_PASSAGES`` passages, so its memory does not grow with the
corpus: when the corpus has more, :func:`sample_units` draws whole query units in a seeded random
order until their passages reach that budget (BM25's document frequencies are then those of the
sample). A corpus with fewer passages is indexed whole. The postings and the term -> units
relation are flat numpy arrays (compressed sparse rows), 8 bytes a posting.
"""

from __future__ import annotations

import re
from array import array
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from ernie_cpt.data.spacy_pipeline import english_stop_words

K1, B = 1.2, 0.75  # BM25 constants (Robertson & Zaragoza 2009)
MIN_PASSAGE_WORDS = 8
INDEX_PASSAGES = 16_384  # passages the index holds at most (beyond the last unit that crosses it)
TERM = re.compile(r"[^\W_]+")


def content_terms(text: str) -> list[str]:
    """The case-folded words of ``text`` that carry content: no stop words, numbers, single letters or underscores."""
    return [w for w in TERM.findall(text.lower()) if w not in english_stop_words() and len(w) > 1 and not w.isdigit()]


def unit_passages(unit: dict[str, Any]) -> list[tuple[int, str]]:
    """(paragraph number in the document, text) of the passages of a query unit, in order."""
    found = []
    for p, (start, end) in enumerate(zip(unit["paragraph_starts"], unit["paragraph_ends"])):
        text = unit["text"][start:end]
        if len(text.split()) >= MIN_PASSAGE_WORDS:
            found.append((unit["first_paragraph"] + p, text))
    return found


def sample_units(passage_counts: np.ndarray, seed: int, budget: int = INDEX_PASSAGES) -> np.ndarray | None:
    """Which query units to index (a boolean mask), or None for all of them when their passages fit
    ``budget``: whole units in a seeded random order until their passages reach it."""
    if int(passage_counts.sum()) <= budget:
        return None
    order = np.random.default_rng(seed).permutation(len(passage_counts))
    taken = order[:int(np.searchsorted(np.cumsum(passage_counts[order]), budget)) + 1]
    chosen = np.zeros(len(passage_counts), dtype=bool)
    chosen[taken] = True
    return chosen


def _group(keys: array, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """Compressed sparse rows: the order that groups entries by ``keys`` (stable), and each key's offsets."""
    keys_np = np.frombuffer(keys, dtype=np.int32) if len(keys) else np.zeros(0, dtype=np.int32)
    order = np.argsort(keys_np, kind="stable")
    offsets = np.zeros(n_keys + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys_np, minlength=n_keys), out=offsets[1:])
    return order, offsets


class PassageIndex:
    """The passages of a set of query units with an inverted index of their content terms, for BM25
    scoring, and which units contain each term (title included).

    ``units`` may be a generator, read once. Each unit is a document's annotation restricted to a
    query unit, with ``document`` (the document's index), ``doc_id``, ``first_paragraph`` and, when the
    units indexed are a sample of a corpus's, ``unit``: its number among all (default: 0, 1, ...)."""

    def __init__(self, units: Iterable[dict[str, Any]]) -> None:
        self.texts: list[str] = []
        self.doc_ids: dict[int, str] = {}  # document index -> doc id
        unit_of, paragraph_of, document_of, lengths = array("q"), array("q"), array("q"), array("q")
        self.vocabulary: dict[str, int] = {}
        post_terms, post_passages, post_tfs = array("i"), array("i"), array("i")
        unit_terms, unit_units = array("i"), array("i")
        for position, unit in enumerate(units):
            u = unit.get("unit", position)
            self.doc_ids[unit["document"]] = unit["doc_id"]
            terms_of_unit = set(content_terms(unit["title"] or ""))
            for p, (start, end) in enumerate(zip(unit["paragraph_starts"], unit["paragraph_ends"])):
                text = unit["text"][start:end]
                terms = content_terms(text)
                terms_of_unit.update(terms)
                if len(text.split()) < MIN_PASSAGE_WORDS:
                    continue
                for term, tf in Counter(terms).items():
                    post_terms.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                    post_passages.append(len(self.texts))
                    post_tfs.append(tf)
                self.texts.append(text)
                unit_of.append(u)
                paragraph_of.append(unit["first_paragraph"] + p)
                document_of.append(unit["document"])
                lengths.append(len(terms))
            for term in terms_of_unit:
                unit_terms.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                unit_units.append(u)
        self.unit_of, self.paragraph_of, self.document_of = (np.array(a, dtype=np.int64)
                                                             for a in (unit_of, paragraph_of, document_of))
        self.lengths = np.array(lengths, dtype=np.float64)
        self.avg_length = max(float(self.lengths.mean()), 1.0) if len(self.lengths) else 1.0
        order, self.posting_offsets = _group(post_terms, len(self.vocabulary))
        self.posting_passages = np.array(post_passages, dtype=np.int32)[order]
        self.posting_tfs = np.array(post_tfs, dtype=np.float64)[order]
        order, self.unit_offsets = _group(unit_terms, len(self.vocabulary))
        self.term_units = np.array(unit_units, dtype=np.int64)[order]

    def bm25(self, terms: list[str]) -> np.ndarray:
        """The BM25 score of every passage for a query of ``terms`` (Lucene's non-negative idf)."""
        scores = np.zeros(len(self.texts))
        for term in dict.fromkeys(terms):
            t = self.vocabulary.get(term)
            if t is None or self.posting_offsets[t] == self.posting_offsets[t + 1]:
                continue
            ids = self.posting_passages[self.posting_offsets[t]:self.posting_offsets[t + 1]]
            tf = self.posting_tfs[self.posting_offsets[t]:self.posting_offsets[t + 1]]
            idf = np.log(1 + (len(self.texts) - len(ids) + 0.5) / (len(ids) + 0.5))
            scores[ids] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * self.lengths[ids] / self.avg_length))
        return scores

    def ranked(self, scores: np.ndarray, exclude_document: int) -> np.ndarray:
        """Passages of other documents with a positive score, best first (index order breaks ties)."""
        found = np.flatnonzero((scores > 0) & (self.document_of != exclude_document))
        return found[np.lexsort((found, -scores[found]))]

    def units_with(self, terms: list[str]) -> np.ndarray:
        """The units (their ids) that contain any of ``terms``, in a paragraph or the title."""
        found = [self.term_units[self.unit_offsets[t]:self.unit_offsets[t + 1]]
                 for t in (self.vocabulary.get(term) for term in set(terms)) if t is not None]
        return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
