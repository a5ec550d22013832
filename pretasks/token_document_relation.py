"""Token-document relation: does each word of a segment also occur elsewhere in its document?

ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
Understanding", AAAI) predicts whether a token of a segment appears in other segments of the
original document; words that recur across a document tend to be its key words, so the task
teaches the model what a document is about.

Segments are a document's paragraphs (blank-line separated, from the annotation); a
paragraph longer than ``max_seq_length - 2`` tokens is cut into windows at sentence starts
(:func:`pretasks.alignment.pack_segments`), each window a segment of its own. A document that
generic headings ("CHAPTER I") divide into sections (:mod:`ernie_cpt.data.sections`) is read as one
document per section: in a whole novel 94 % of the labelled words recur somewhere, in a chapter
the label says which words the chapter is about. Only documents (sections) with at least 2
segments give examples, one per segment.

Labels, on the first sub-token of each word of the tokenizer's pre-tokenizer (whitespace and
punctuation split): 1 if the word's raw text, case-folded (``str.casefold``), is also the
case-folded text of a word in another segment of the same document (section), else 0. Not scored (-100):
spaCy's English stop words (``spacy.lang.en.stop_words.STOP_WORDS``, compared case-folded,
plus the endings of its contractions: s, t, ll, ... of "Anne's", "don't", which the pre-tokenizer
splits off) unless ``tdr_label_stop_words``, words with no letter or digit (punctuation) unless
``tdr_label_punctuation``, other sub-tokens and [CLS]/[SEP]. A segment with fewer than
``tdr_min_words`` labelled words gives no example but still counts as a segment of its
document. Labels are computed once at build time; ``make_example`` only adds the special tokens.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.data.column_stats import count_runs
from ernie_cpt.data.sections import paragraph_sections
from ernie_cpt.data.spacy_pipeline import english_stop_words
from ernie_cpt.messages import plural
from ernie_cpt.options import Range, option
from pretasks.alignment import (
    LABELLED_SEGMENT_COLUMNS,
    DocumentTokens,
    add_labelled_segments,
    pack_segments,
    tokenize_documents,
)
from pretasks.base import IGNORE_INDEX, PreTask, TaskUnavailable, features, split_name
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

# The pre-tokenizer splits "Anne's" and "don't" at the apostrophe, so the endings of spaCy's
# contraction stop words ('s, 'll, n't, ...) are stop words too: s, ll, t, ...
APOSTROPHES = re.compile("['\u2018\u2019]")


@functools.cache
def stop_word_keys() -> frozenset[str]:
    """spaCy's English stop words and the endings of its contractions, case-folded."""
    words = english_stop_words()
    return frozenset(words) | {APOSTROPHES.split(word)[-1] for word in words if APOSTROPHES.search(word)}


@dataclass
class TokenDocumentRelationOptions:
    """token_document_relation: predict which words of a segment occur in other segments of its document"""

    tdr_label_stop_words: bool = option(False, "Also label spaCy's English stop words (the, of, she, ...)")
    tdr_label_punctuation: bool = option(False, "Also label words with no letter or digit (punctuation)")
    tdr_min_words: int = option(5, "Segments with fewer labelled words give no example (they still count as "
                                   "segments of their document; 0 keeps every segment)", valid=Range(0, 1000))


@register
class TokenDocumentRelation(PreTask):
    name = "token_document_relation"
    options_class = TokenDocumentRelationOptions
    level = "token"
    label_names = ("only here", "elsewhere")

    @classmethod
    def min_seq_length(cls, options: TokenDocumentRelationOptions) -> tuple[int, str]:
        """A segment must have room for ``tdr_min_words`` labelled words (a token each at least)."""
        minimum = max(super().min_seq_length(options)[0], options.tdr_min_words + 2)
        return minimum, f"--tdr-min-words {options.tdr_min_words} words between [CLS] and [SEP]"

    def document_segments(self, batch: dict[str, list[Any]]) -> Iterator[tuple[int, DocumentTokens,
                                                                              list[tuple[int, int]], list[int]]]:
        """For each document of a batch: its index, its tokens, the token ranges of its segments
        (paragraphs, long ones cut into windows at sentence starts) and each segment's section."""
        budget = self.max_seq_length - 2
        for doc_index, tokens in enumerate(tokenize_documents(self.tokenizer, batch)):
            sentence_starts = tokens.token_ranges(batch["sentence_starts"][doc_index],
                                                  batch["sentence_ends"][doc_index])[:, 0]
            paragraph_starts, paragraph_ends = batch["paragraph_starts"][doc_index], batch["paragraph_ends"][doc_index]
            segments, sections = [], []
            for (start, end), section in zip(tokens.token_ranges(paragraph_starts, paragraph_ends).tolist(),
                                             paragraph_sections(batch["text"][doc_index], paragraph_starts,
                                                                paragraph_ends)):
                inside = sentence_starts[(sentence_starts > start) & (sentence_starts < end)] - start
                windows = [(start + s, start + e) for s, e in pack_segments(end - start, inside, budget)]
                segments += windows
                sections += [section] * len(windows)
            yield doc_index, tokens, segments, sections

    def is_labelled(self, word: str) -> bool:
        """Whether a word (raw text) is scored under the options."""
        if not any(c.isalnum() for c in word):
            return self.options.tdr_label_punctuation
        return self.options.tdr_label_stop_words or word.casefold() not in stop_word_keys()

    def word_labels(self, text: str, tokens: DocumentTokens, segments: list[tuple[int, int]],
                    sections: list[int]) -> np.ndarray:
        """A label per token of a document: 1/0 on each labelled word's first sub-token, -100 elsewhere.
        A word is keyed by a 64-bit hash of (section, case-folded text), so a long document costs
        arrays, not a Python object per word."""
        words = tokens.word_ranges()
        labels = np.full(len(tokens), IGNORE_INDEX, dtype=np.int64)
        if not len(words):
            return labels
        segment_of_word = np.searchsorted([start for start, _ in segments], words[:, 0], side="right") - 1
        keys = np.empty(len(words), dtype=np.int64)
        labelled = np.empty(len(words), dtype=bool)
        for w, (first, last, segment) in enumerate(zip(words[:, 0].tolist(), words[:, 1].tolist(),
                                                      segment_of_word.tolist())):
            word = text[tokens.starts[first]:tokens.ends[last - 1]]
            keys[w] = hash((sections[segment], word.casefold()))
            labelled[w] = self.is_labelled(word)
        pairs = np.unique(np.stack([keys, segment_of_word]), axis=1)  # (key, segment) once each
        found, n_segments = np.unique(pairs[0], return_counts=True)
        labels[words[labelled, 0]] = np.isin(keys[labelled], found[n_segments > 1]).astype(np.int64)
        return labels

    def _segments(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("doc_id", "input_ids", "labels", "length")}
        for doc_index, tokens, segments, sections in self.document_segments(batch):
            per_section = Counter(sections)
            kept = [segment for segment, section in zip(segments, sections) if per_section[section] >= 2]
            if not kept:
                continue
            labels = self.word_labels(batch["text"][doc_index], tokens, segments, sections)
            add_labelled_segments(out, batch["doc_id"][doc_index], tokens, labels, kept,
                                  min_labelled=self.options.tdr_min_words)
        return out

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        rows = documents.map(self._segments, batched=True, batch_size=32, remove_columns=documents.column_names,
                             features=features(LABELLED_SEGMENT_COLUMNS), num_proc=num_proc,
                             desc="token_document_relation examples",
                             new_fingerprint=self.fingerprint(documents))
        if len(rows):
            log.info("token_document_relation (%s): %s from %d of %s", split_name(held_out),
                     plural(len(rows), "example"), count_runs(rows, "doc_id"), plural(len(documents), "document"))
            return rows
        multi_segment = sum(max(Counter(sections).values(), default=0) >= 2 for batch in documents.iter(batch_size=32)
                            for *_, sections in self.document_segments(batch))
        segments_needed = (f"2 or more segments (paragraphs separated by a blank line, or windows of a paragraph "
                           f"over {self.max_seq_length - 2} tokens)")
        reason = (f"none has {segments_needed}" if multi_segment == 0 else
                  f"{multi_segment} {'has' if multi_segment == 1 else 'have'} {segments_needed} but no "
                  f"segment with {self.options.tdr_min_words} "
                  "labelled words (see --tdr-min-words)")
        message = f"token_document_relation found no example in {plural(len(documents), 'document')}: {reason}"
        if held_out:  # the held-out split may be a single document; evaluation then skips this task
            log.warning(message)
            return rows
        raise TaskUnavailable(message)

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        return join_segments(self.tokenizer, [row["input_ids"]], self.max_seq_length, labels=[row["labels"]])
