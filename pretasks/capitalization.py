"""Capitalization prediction: which words of the lower-cased input were capitalized?

ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
Understanding", AAAI) adds capitalization prediction as a word-aware pre-training task:
capitalized words (names, sentence openings) usually carry particular meaning, and an uncased
model never sees case in its input.

Input: a segment of whole sentences, exactly as knowledge masking makes it
(:func:`pretasks.alignment.document_segments`), lower-cased by the uncased tokenizer.
Labels, on the first sub-token of each word of the tokenizer's pre-tokenizer (whitespace and
punctuation split, so "Elliot's" is three words: "Elliot", "'", "s"): 1 if the word's raw text,
before lower-casing, starts with an upper-case letter (``str.isupper``), 0 if it starts with
another letter (lower-case or caseless). A word that does not start with a letter (punctuation,
numbers) gets -100 (not scored), or 0 with ``capitalization_label_non_letters``. Other
sub-tokens and [CLS]/[SEP] get -100. Labels are computed once at build time;
``make_example`` only adds the special tokens, so examples are the same every epoch. Segments
without any labelled word are skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from ernie_cpt.options import option
from pretasks.alignment import LABELLED_SEGMENT_COLUMNS, DocumentTokens, add_labelled_segments, document_segments
from pretasks.base import IGNORE_INDEX, PreTask, TaskUnavailable, features
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

CASE_PROBES = ("Anne", "ELLIOT", "The")  # an uncased tokenizer gives these the ids of their lower-case forms


@dataclass
class CapitalizationOptions:
    """capitalization: predict which words start with an upper-case letter in the raw text"""

    capitalization_label_non_letters: bool = option(
        False, "Label words that do not start with a letter (punctuation, numbers) 0 instead of leaving them unscored")


@register
class Capitalization(PreTask):
    name = "capitalization"
    options_class = CapitalizationOptions
    level = "token"
    label_names = ("lower", "capitalized")

    def __init__(self, tokenizer: Any, options: CapitalizationOptions, max_seq_length: int) -> None:
        super().__init__(tokenizer, options, max_seq_length)
        self.check_tokenizer(tokenizer)

    @classmethod
    def check_tokenizer(cls, tokenizer: Any) -> None:
        """The tokenizer must lower-case: a cased one would show the labels in the input."""
        for probe in CASE_PROBES:
            if tokenizer(probe, add_special_tokens=False)["input_ids"] != \
                    tokenizer(probe.lower(), add_special_tokens=False)["input_ids"]:
                raise UserError(f"capitalization needs an uncased (lower-casing) tokenizer, but this one tokenizes "
                                f"'{probe}' and '{probe.lower()}' differently, so the input would give the labels "
                                "away; use the default corpus tokenizer or an uncased one, or drop the task")

    def word_labels(self, text: str, tokens: DocumentTokens) -> np.ndarray:
        """A label per token of a document: 1/0 on each word's first sub-token, -100 elsewhere."""
        labels = np.full(len(tokens), IGNORE_INDEX, dtype=np.int64)
        non_letter = 0 if self.options.capitalization_label_non_letters else IGNORE_INDEX
        for first in tokens.word_ranges()[:, 0]:
            initial = text[tokens.starts[first]]
            labels[first] = int(initial.isupper()) if initial.isalpha() else non_letter
        return labels

    def _segments(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {k: [] for k in ("doc_id", "input_ids", "labels", "length")}
        for doc_index, tokens, segments in document_segments(self.tokenizer, batch, self.max_seq_length - 2):
            labels = self.word_labels(batch["text"][doc_index], tokens)
            add_labelled_segments(out, batch["doc_id"][doc_index], tokens, labels, segments)
        return out

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        rows = documents.map(self._segments, batched=True, batch_size=32, remove_columns=documents.column_names,
                             features=features(LABELLED_SEGMENT_COLUMNS), num_proc=num_proc,
                             desc="capitalization examples",
                             new_fingerprint=self.fingerprint(documents))
        if len(rows) == 0 and not held_out:
            raise TaskUnavailable(f"capitalization found no word starting with a letter in "
                                  f"{plural(len(documents), 'document')}; it needs text with words")
        return rows

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        return join_segments(self.tokenizer, [row["input_ids"]], self.max_seq_length, labels=[row["labels"]])
