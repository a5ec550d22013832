"""Sentence reordering: which permutation shuffled the segments of a paragraph?

ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
Understanding", AAAI), section "Structure-aware Pre-training Tasks": a paragraph is split
into 1 to m segments, the segments are shuffled, and the model classifies the permutation
among all k = sum_{n=1..m} n! permutations of 1..m segments (m=3: 9 classes, m=4: 33).

Static rows are windows of consecutive spaCy sentences of one paragraph (a long paragraph is
cut at sentence boundaries so that a window fits ``max_seq_length - 1 - m`` tokens); windows
with fewer than 2 sentences are dropped. Each epoch, a window is cut into n contiguous
non-empty groups of whole sentences (n uniform in 1..min(m, sentences), the cut points
uniform), the groups are shuffled by a uniformly random permutation and joined as
``[CLS] g1 [SEP] g2 [SEP] ...`` with segment ids alternating 0/1.

Labels. A permutation ``p`` of n groups means: shuffled position i holds original group
``p[i]`` (0-based). The labels enumerate all permutations in a fixed order: n=1 first
(``(0,)`` is label 0), then n=2 in ``itertools.permutations`` order (``(0, 1)`` is label 1,
``(1, 0)`` label 2), then n=3 (labels 3..8), and so on; :func:`permutation_of_label` maps a
label back. A label name lists the original groups 1-based in shuffled order: "2-3-1" means
the input shows the second group, then the third, then the first. With n=1 (no shuffle) the
label is the identity class 0, as the paper's k counts it. Groups with the same tokens (a
paragraph of '"Yes." "Yes."') make several permutations show the same input; such an example
gets the smallest label among them, so that the label can be read from the input.
"""

from __future__ import annotations

import functools
import itertools
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.data.column_stats import total_length
from ernie_cpt.messages import plural
from ernie_cpt.options import Range, option
from pretasks.alignment import pack_segments, tokenize_documents
from pretasks.base import PreTask, TaskUnavailable, features, split_name
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

MAX_SEGMENTS_LIMIT = 6  # 6 segments already give 873 classes
COLUMNS = {
    "doc_id": "string",
    "sentence_ids": ["int32"],  # the window's sentences, concatenated
    "sentence_lengths": ["int32"],
    "length": "int32",
}


@functools.cache
def permutations_up_to(max_segments: int) -> tuple[tuple[int, ...], ...]:
    """All permutations of 1..``max_segments`` groups in label order (see the module docstring)."""
    return tuple(p for n in range(1, max_segments + 1) for p in itertools.permutations(range(n)))


def permutation_of_label(label: int, max_segments: int) -> tuple[int, ...]:
    """The permutation a label stands for: shuffled position i holds original group ``p[i]``."""
    return permutations_up_to(max_segments)[label]


@dataclass
class SentenceReorderingOptions:
    """sentence_reordering: classify the permutation of a paragraph's shuffled segments"""

    reorder_max_segments: int = option(3, "Maximum number of segments m a paragraph is cut into; "
                                       "sum_{n=1..m} n! classes (3 -> 9, 4 -> 33)",
                                       valid=Range(2, MAX_SEGMENTS_LIMIT))


@register
class SentenceReordering(PreTask):
    name = "sentence_reordering"
    options_class = SentenceReorderingOptions
    level = "sequence"
    num_token_types = 2

    def __init__(self, tokenizer: Any, options: SentenceReorderingOptions, max_seq_length: int) -> None:
        super().__init__(tokenizer, options, max_seq_length)
        m = options.reorder_max_segments
        self.window_tokens = max_seq_length - 1 - m  # room for [CLS] and one [SEP] per segment
        permutations = permutations_up_to(m)
        self.label_of_permutation = {p: label for label, p in enumerate(permutations)}
        self.label_names = tuple("-".join(str(group + 1) for group in p) for p in permutations)

    @classmethod
    def min_seq_length(cls, options: SentenceReorderingOptions) -> tuple[int, str]:
        """[CLS], a [SEP] per segment and a window of at least two sentences."""
        m = options.reorder_max_segments
        minimum = max(super().min_seq_length(options)[0], m + 3)
        return minimum, f"[CLS], {m} [SEP]s (--reorder-max-segments) and two sentences"

    def _windows(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        m = self.options.reorder_max_segments
        for doc_index, tokens in enumerate(tokenize_documents(self.tokenizer, batch)):
            sentence_starts = np.asarray(batch["sentence_starts"][doc_index], dtype=np.int64)
            sentence_ends = np.asarray(batch["sentence_ends"][doc_index], dtype=np.int64)
            for paragraph_start, paragraph_end in zip(batch["paragraph_starts"][doc_index],
                                                      batch["paragraph_ends"][doc_index]):
                first, last = np.searchsorted(sentence_starts, [paragraph_start, paragraph_end])
                ranges = tokens.token_ranges(sentence_starts[first:last], sentence_ends[first:last])
                if len(ranges) < 2:
                    continue
                offset = ranges[0, 0]
                for window_start, window_end in pack_segments(int(ranges[-1, 1] - offset), ranges[:, 0] - offset,
                                                              self.window_tokens):
                    inside = ranges[(ranges[:, 0] >= window_start + offset) & (ranges[:, 1] <= window_end + offset)]
                    if len(inside) < 2:
                        continue
                    lengths = inside[:, 1] - inside[:, 0]
                    out["doc_id"].append(batch["doc_id"][doc_index])
                    out["sentence_ids"].append(np.concatenate([tokens.ids[s:e] for s, e in inside]).astype(np.int32))
                    out["sentence_lengths"].append(lengths.astype(np.int32))
                    out["length"].append(int(lengths.sum()) + 1 + min(m, len(inside)))
        return out

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        rows = documents.map(self._windows, batched=True, batch_size=32, remove_columns=documents.column_names,
                             features=features(COLUMNS), num_proc=num_proc, desc="sentence_reordering examples",
                             new_fingerprint=self.fingerprint(documents))
        n_paragraphs = total_length(documents, "paragraph_starts")
        n_sentences = total_length(documents, "sentence_starts")
        counts = (f"{plural(len(documents), 'document')}, {plural(n_paragraphs, 'paragraph')}, "
                  f"{plural(n_sentences, 'sentence')}")
        if len(rows) == 0:
            message = (f"sentence_reordering needs paragraphs with at least 2 sentences; {counts} "
                       f"gave no window of 2 or more sentences")
            if not held_out:
                raise TaskUnavailable(message)
            log.warning("%s (held-out split: no evaluation for this task)", message)
            return rows
        n_window_sentences = total_length(rows, "sentence_lengths")
        log.info("sentence_reordering (%s): %s -> %d windows of %.1f sentences on average (%d sentences in "
                 "windows)", split_name(held_out), counts, len(rows), n_window_sentences / len(rows),
                 n_window_sentences)
        return rows

    def shuffle(self, row: dict[str, Any], rng: np.random.Generator) -> tuple[list[list[int]], tuple[int, ...]]:
        """The window cut into n groups of whole sentences (in original order) and the permutation
        that shuffles them: shuffled position i holds ``groups[permutation[i]]``."""
        ids, lengths = row["sentence_ids"], row["sentence_lengths"]
        n_sentences = len(lengths)
        n_groups = int(rng.integers(1, min(self.options.reorder_max_segments, n_sentences) + 1))
        group_starts = np.sort(rng.choice(np.arange(1, n_sentences), size=n_groups - 1, replace=False))
        sentence_offsets = np.cumsum([0, *lengths])
        bounds = [0, *sentence_offsets[group_starts].tolist(), len(ids)]
        groups = [ids[start:end] for start, end in itertools.pairwise(bounds)]
        return groups, tuple(int(group) for group in rng.permutation(n_groups))

    def label_of(self, groups: list[list[int]], permutation: tuple[int, ...]) -> int:
        """The label of ``groups`` shown in ``permutation`` order: the permutation's own, or with equal
        groups the smallest label of a permutation that shows the same input."""
        if len({tuple(group) for group in groups}) == len(groups):
            return self.label_of_permutation[permutation]
        shown = [groups[group] for group in permutation]
        return min(self.label_of_permutation[p] for p in itertools.permutations(range(len(groups)))
                   if [groups[group] for group in p] == shown)

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        groups, permutation = self.shuffle(row, rng)
        example = join_segments(self.tokenizer, [groups[group] for group in permutation], self.max_seq_length)
        example["labels"] = self.label_of(groups, permutation)
        return example
