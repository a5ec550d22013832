"""Sentence distance: are two sentences adjacent, in the same document, or from different ones?

ERNIE 2.0 (Sun et al. 2020, "ERNIE 2.0: A Continual Pre-training Framework for Language
Understanding", AAAI), section "Structure-aware Pre-training Tasks": a 3-class sentence-pair
task that extends BERT's next sentence prediction (Devlin et al. 2019).

Labels: 0 "adjacent" - the two sentences are consecutive sentences of one document, in
document order; 1 "same document" - both come from one document and are at least two
sentences apart (|i - j| >= 2), in document order; 2 "other document" - the sentences come
from two different documents, in random order.

A sentence is a spaCy sentence, numbered through the whole document (across paragraphs). With
``--distance-segment-tokens N`` a "sentence" is instead, as in BERT's next sentence prediction,
"an arbitrary span of contiguous text" (Devlin et al. 2019, section 3.1): consecutive whole
sentences packed into segments of at most N tokens (a longer sentence is cut), numbered the
same way. Longer segments give more to compare: on Austen, a bag-of-shared-words classifier
reaches 0.42 held-out accuracy on single sentences and 0.46 on 62-token segments (chance 0.34).

Anchors are the segments of documents with at least 4 segments, so every anchor has an
adjacent and a non-adjacent partner. Each static row stores the anchor, its adjacent partner
(the next sentence, or the previous one for a document's last sentence), K non-adjacent
sentences of its document and K sentences of other documents (of ``documents`` and, when
given, ``background``), all drawn at build time by a Generator seeded from the document ids,
with their positions (doc id, sentence index). Each epoch, the label is drawn uniformly from
{0, 1, 2} (balanced classes) and the partner uniformly among the stored candidates. Documents
with fewer than 4 sentences only supply other-document partners. The pair is joined as
``[CLS] A [SEP] B [SEP]``, truncated longest-first.

Every pair is decidable from its text: a same-document candidate whose tokens equal those of a
sentence next to the anchor would make the very input of an "adjacent" pair, and an
other-document candidate whose tokens occur in the anchor's document (a '"Yes."' of dialogue,
1.3 % of the candidates on the Austen novels) that of a "same document" one. Such a candidate is
replaced by another stored candidate of its kind; an anchor left with none is dropped (counted
in ``inspect-task``).
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.messages import plural
from ernie_cpt.options import Range, option
from pretasks.alignment import pack_segments, tokenize_documents
from pretasks.base import PreTask, TaskUnavailable, features
from pretasks.registry import register
from pretasks.sequences import join_segments

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

ADJACENT, SAME_DOCUMENT, OTHER_DOCUMENT = 0, 1, 2
MIN_ANCHOR_SENTENCES = 4
MIN_SEGMENT_TOKENS = 8  # a packed segment shorter than this holds less than a sentence
TOKENS = ["int32"]
POOL_COLUMNS = {
    "doc_index": "int64",
    "doc_id": "string",
    "sentence_index": "int32",
    "tokens": TOKENS,
}
COLUMNS = {
    "doc_id": "string",
    "sentence_index": "int32",
    "anchor_tokens": TOKENS,
    "adjacent_index": "int32",
    "adjacent_tokens": TOKENS,
    "same_doc_indices": ["int32"],
    "same_doc_tokens": [TOKENS],
    "other_doc_ids": ["string"],
    "other_doc_indices": ["int32"],
    "other_doc_tokens": [TOKENS],
    "length": "int32",
}

Sentence = tuple[str, int, list[int]]  # (doc id, sentence index in the document, token ids)


@dataclass
class SentenceDistanceOptions:
    """sentence_distance: adjacent / same document / other document sentence pairs"""

    distance_candidates: int = option(4, "Same-document and other-document partner candidates stored per anchor "
                                      "sentence (K); each epoch picks one of them", valid=Range(1, 64))
    distance_segment_tokens: int = option(
        0, "Pack consecutive sentences into segments of at most this many tokens, as BERT's next sentence "
        "prediction does (at most (--max-seq-length - 3) / 2, so a pair is never cut); 0 = single spaCy sentences",
        valid=Range(MIN_SEGMENT_TOKENS, also=(0,)))


@register
class SentenceDistance(PreTask):
    name = "sentence_distance"
    options_class = SentenceDistanceOptions
    level = "pair"
    num_token_types = 2
    label_names = ("adjacent", "same document", "other document")

    def __init__(self, tokenizer: Any, options: SentenceDistanceOptions, max_seq_length: int) -> None:
        super().__init__(tokenizer, options, max_seq_length)
        self.segment_tokens = options.distance_segment_tokens

    @classmethod
    def min_seq_length(cls, options: SentenceDistanceOptions) -> tuple[int, str]:
        """Two whole segments of ``--distance-segment-tokens`` and 3 special tokens: truncation would cut
        the end of the first segment, where an adjacent pair meets."""
        if options.distance_segment_tokens:
            return (2 * options.distance_segment_tokens + 3,
                    f"two segments of --distance-segment-tokens {options.distance_segment_tokens} and [CLS], [SEP], "
                    f"[SEP], so that a pair is never cut")
        return super().min_seq_length(options)

    def _sentences(self, batch: dict[str, list[Any]], indices: list[int], doc_offset: int) -> dict[str, list[Any]]:
        """One row per segment (or non-empty sentence), numbered through its document."""
        out: dict[str, list[Any]] = {name: [] for name in POOL_COLUMNS}
        for i, tokens in enumerate(tokenize_documents(self.tokenizer, batch)):
            ranges = tokens.token_ranges(batch["sentence_starts"][i], batch["sentence_ends"][i])
            if self.segment_tokens:
                ranges = pack_segments(len(tokens), ranges[:, 0], self.segment_tokens)
            out["doc_index"] += [doc_offset + indices[i]] * len(ranges)
            out["doc_id"] += [batch["doc_id"][i]] * len(ranges)
            out["sentence_index"] += range(len(ranges))
            out["tokens"] += [tokens.ids[start:end].tolist() for start, end in ranges]
        return out

    def _sentence_pool(self, documents: datasets.Dataset, doc_offset: int, num_proc: int | None) -> datasets.Dataset:
        return documents.map(self._sentences, batched=True, batch_size=32, with_indices=True,
                             fn_kwargs={"doc_offset": doc_offset}, remove_columns=documents.column_names,
                             features=features(POOL_COLUMNS), num_proc=num_proc, desc="sentence_distance sentences",
                             new_fingerprint=self.fingerprint(documents, "sentences", doc_offset))

    def _rows(self, batch: dict[str, list[Any]], pool: datasets.Dataset) -> dict[str, list[Any]]:
        """Fetch the anchor and candidate sentences of a batch of anchors in one ``pool`` lookup."""
        n, k = len(batch["anchor"]), self.options.distance_candidates
        columns = [np.asarray(batch[name]).reshape(n, -1) for name in ("anchor", "adjacent", "same", "other")]
        fetched = pool[np.concatenate(columns, axis=1).ravel().tolist()]
        width = 2 + 2 * k

        def field(name: str, first: int, count: int) -> list[list[Any]]:
            return [fetched[name][row * width + first:row * width + first + count] for row in range(n)]

        anchor_tokens, adjacent_tokens = field("tokens", 0, 1), field("tokens", 1, 1)
        return {
            "doc_id": [ids[0] for ids in field("doc_id", 0, 1)],
            "sentence_index": [index[0] for index in field("sentence_index", 0, 1)],
            "anchor_tokens": [tokens[0] for tokens in anchor_tokens],
            "adjacent_index": [index[0] for index in field("sentence_index", 1, 1)],
            "adjacent_tokens": [tokens[0] for tokens in adjacent_tokens],
            "same_doc_indices": field("sentence_index", 2, k),
            "same_doc_tokens": field("tokens", 2, k),
            "other_doc_ids": field("doc_id", 2 + k, k),
            "other_doc_indices": field("sentence_index", 2 + k, k),
            "other_doc_tokens": field("tokens", 2 + k, k),
            "length": [min(self.max_seq_length, 3 + len(a[0]) + len(b[0]))
                       for a, b in zip(anchor_tokens, adjacent_tokens)],
        }

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        import datasets

        self.notes = []
        pools = [self._sentence_pool(documents, 0, num_proc)]
        if background is not None and len(background):
            pools.append(self._sentence_pool(background, len(documents), num_proc))
        pool = datasets.concatenate_datasets(pools)
        doc_of_sentence = np.asarray(pool["doc_index"], dtype=np.int64)  # ascending: pools are in document order
        n_docs = len(documents) + (len(background) if len(pools) > 1 else 0)
        sentence_counts = np.bincount(doc_of_sentence, minlength=n_docs)
        first_sentence = np.cumsum(sentence_counts) - sentence_counts

        unit = "segment" if self.segment_tokens else "sentence"
        own_counts = sentence_counts[:len(documents)]
        counts = (f"{plural(len(documents), 'document')}: {np.sum(own_counts == 0)} without {unit}s, "
                  f"{np.sum(own_counts == 1)} with 1 {unit}, {np.sum((own_counts >= 2) & (own_counts < 4))} "
                  f"with 2-3, {np.sum(own_counts >= MIN_ANCHOR_SENTENCES)} with 4 or more")
        anchors = np.flatnonzero(sentence_counts[doc_of_sentence[:len(pools[0])]] >= MIN_ANCHOR_SENTENCES)
        if len(anchors) == 0:
            message = f"sentence_distance needs documents with at least {MIN_ANCHOR_SENTENCES} {unit}s; {counts}"
            if self.segment_tokens:
                message += f" of up to {self.segment_tokens} tokens (--distance-segment-tokens 0: single sentences)"
            if not held_out:
                raise TaskUnavailable(message)
            log.warning("%s (held-out split: no evaluation for this task)", message)
            return datasets.Dataset.from_dict({name: [] for name in COLUMNS}, features=features(COLUMNS))
        docs = doc_of_sentence[anchors]
        if np.any(sentence_counts[docs] == len(pool)):
            raise TaskUnavailable(f"sentence_distance needs a second document for its 'other document' pairs; "
                                  f"{counts} and {len(pool) - len(pools[0])} background {unit}s")

        doc_ids = list(documents["doc_id"]) + (list(background["doc_id"]) if len(pools) > 1 else [])
        rng = np.random.default_rng(zlib.crc32("\n".join(doc_ids).encode()))
        k = self.options.distance_candidates
        position, size, start = anchors - first_sentence[docs], sentence_counts[docs], first_sentence[docs]
        adjacent = np.where(position + 1 < size, anchors + 1, anchors - 1)
        # Same document, |i - j| >= 2: j < i - 1 (there are max(i - 1, 0) such j) or j > i + 1.
        left = np.maximum(position - 1, 0)
        n_far = left + np.maximum(size - position - 2, 0)
        draw = (rng.random((len(anchors), k)) * n_far[:, None]).astype(np.int64)
        same = start[:, None] + np.where(draw < left[:, None], draw, draw - left[:, None] + position[:, None] + 2)
        # Other documents: uniform over the pool with the anchor's own document left out.
        other = (rng.random((len(anchors), k)) * (len(pool) - size)[:, None]).astype(np.int64)
        other += np.where(other >= start[:, None], size[:, None], 0)

        kept, same, other = self._decidable(anchors, same, other, doc_of_sentence, pool)
        if not kept.all():
            self.notes.append(f"sentence_distance dropped {int((~kept).sum())} of {len(anchors)} anchors: every "
                              f"candidate partner repeats the text of a sentence the label rules out")
        anchors, adjacent = anchors[kept], adjacent[kept]
        log.info("sentence_distance: %s (only those give anchors; the others give 'other document' partners), "
                 "%d anchors, %d %ss in the partner pool (%d from background documents)",
                 counts, len(anchors), len(pool), unit, len(pool) - len(pools[0]))
        candidates = datasets.Dataset.from_dict({"anchor": anchors, "adjacent": adjacent, "same": same,
                                                 "other": other})
        return candidates.map(self._rows, batched=True, batch_size=256, fn_kwargs={"pool": pool},
                              remove_columns=candidates.column_names, features=features(COLUMNS), num_proc=num_proc,
                              desc="sentence_distance examples", new_fingerprint=self.fingerprint(candidates, pool))

    @staticmethod
    def _decidable(anchors: np.ndarray, same: np.ndarray, other: np.ndarray, doc_of_sentence: np.ndarray,
                   pool: datasets.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Which anchors keep a same-document and an other-document candidate that no pair of another
        label could show (see the module docstring), and their candidates with the others replaced."""
        keys = np.array([hash(tuple(tokens)) for tokens in pool["tokens"]], dtype=np.int64)
        own: dict[int, set[int]] = {}
        for d, key in zip(doc_of_sentence.tolist(), keys.tolist()):
            own.setdefault(d, set()).add(key)
        kept = np.ones(len(anchors), dtype=bool)
        same, other = same.copy(), other.copy()
        for row, anchor in enumerate(anchors.tolist()):
            d = int(doc_of_sentence[anchor])
            neighbours = {int(keys[j]) for j in (anchor - 1, anchor + 1)
                          if 0 <= j < len(keys) and doc_of_sentence[j] == d}
            good_same = [j for j in same[row].tolist() if keys[j] not in neighbours]
            good_other = [j for j in other[row].tolist() if keys[j] not in own[d]]
            kept[row] = bool(good_same and good_other)
            if kept[row]:
                same[row] = np.resize(good_same, same.shape[1])
                other[row] = np.resize(good_other, other.shape[1])
        return kept, same[kept], other[kept]

    def choose_pair(self, row: dict[str, Any], rng: np.random.Generator) -> tuple[int, Sentence, Sentence]:
        """The label (uniform over the three classes) and the two sentences, in input order."""
        label = int(rng.integers(3))
        anchor: Sentence = (row["doc_id"], row["sentence_index"], row["anchor_tokens"])
        if label == OTHER_DOCUMENT:
            k = int(rng.integers(len(row["other_doc_tokens"])))
            partner = (row["other_doc_ids"][k], row["other_doc_indices"][k], row["other_doc_tokens"][k])
            return (label, partner, anchor) if rng.random() < 0.5 else (label, anchor, partner)
        if label == ADJACENT:
            partner = (row["doc_id"], row["adjacent_index"], row["adjacent_tokens"])
        else:
            k = int(rng.integers(len(row["same_doc_tokens"])))
            partner = (row["doc_id"], row["same_doc_indices"][k], row["same_doc_tokens"][k])
        return (label, partner, anchor) if partner[1] < anchor[1] else (label, anchor, partner)

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        label, first, second = self.choose_pair(row, rng)
        example = join_segments(self.tokenizer, [first[2], second[2]], self.max_seq_length)
        example["labels"] = label
        return example
