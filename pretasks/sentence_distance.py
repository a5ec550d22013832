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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ernie_cpt.data.scratch import cached_dataset
from ernie_cpt.messages import plural
from ernie_cpt.options import Range, option
from pretasks.alignment import pack_segments, tokenize_documents
from pretasks.base import PreTask, TaskUnavailable, features, split_name
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
STREAM_ROWS = 1024  # sentences read (and example rows made) at a time


def _crc32_of_ids(parts: list[datasets.Dataset]) -> int:
    """``zlib.crc32`` of the doc ids of ``parts`` joined by newlines, read in batches."""
    crc, first = 0, True
    for part in parts:
        for batch in part.select_columns(["doc_id"]).iter(batch_size=STREAM_ROWS):
            for doc_id in batch["doc_id"]:
                crc = zlib.crc32((doc_id if first else "\n" + doc_id).encode(), crc)
                first = False
    return crc


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
            sentences = tokens.token_ranges(batch["sentence_starts"][i], batch["sentence_ends"][i])
            ranges: np.ndarray | list[tuple[int, int]] = (
                pack_segments(len(tokens), sentences[:, 0], self.segment_tokens) if self.segment_tokens else sentences)
            out["doc_index"] += [doc_offset + indices[i]] * len(ranges)
            out["doc_id"] += [batch["doc_id"][i]] * len(ranges)
            out["sentence_index"] += range(len(ranges))
            out["tokens"] += [tokens.ids[start:end].astype(np.int32) for start, end in ranges]
        return out

    def _sentence_pool(self, documents: datasets.Dataset, doc_offset: int, num_proc: int | None) -> datasets.Dataset:
        return documents.map(self._sentences, batched=True, batch_size=32, with_indices=True,
                             fn_kwargs={"doc_offset": doc_offset}, remove_columns=documents.column_names,
                             features=features(POOL_COLUMNS), num_proc=num_proc, desc="sentence_distance sentences",
                             new_fingerprint=self.fingerprint(documents, "sentences", doc_offset))

    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        import datasets

        self.notes = []
        pools = [self._sentence_pool(documents, 0, num_proc)]
        if background is not None and len(background):
            pools.append(self._sentence_pool(background, len(documents), num_proc))
        pool = datasets.concatenate_datasets(pools)
        n_docs = len(documents) + (len(background) if background is not None and len(pools) > 1 else 0)
        sentence_counts = np.zeros(n_docs, dtype=np.int64)
        for batch in pool.select_columns(["doc_index"]).with_format("numpy").iter(batch_size=STREAM_ROWS):
            sentence_counts += np.bincount(batch["doc_index"], minlength=n_docs)

        unit = "segment" if self.segment_tokens else "sentence"
        own_counts = sentence_counts[:len(documents)]
        counts = (f"{plural(len(documents), 'document')}: {np.sum(own_counts == 0)} without {unit}s, "
                  f"{np.sum(own_counts == 1)} with 1 {unit}, {np.sum((own_counts >= 2) & (own_counts < 4))} "
                  f"with 2-3, {np.sum(own_counts >= MIN_ANCHOR_SENTENCES)} with 4 or more")
        anchor_docs = np.flatnonzero(own_counts >= MIN_ANCHOR_SENTENCES)
        if len(anchor_docs) == 0:
            message = f"sentence_distance needs documents with at least {MIN_ANCHOR_SENTENCES} {unit}s; {counts}"
            if self.segment_tokens:
                message += f" of up to {self.segment_tokens} tokens (--distance-segment-tokens 0: single sentences)"
            if not held_out:
                raise TaskUnavailable(message)
            log.warning("%s (held-out split: no evaluation for this task)", message)
            return datasets.Dataset.from_dict({name: [] for name in COLUMNS}, features=features(COLUMNS))
        if np.any(sentence_counts[anchor_docs] == len(pool)):
            raise TaskUnavailable(f"sentence_distance needs a second document for its 'other document' pairs; "
                                  f"{counts} and {len(pool) - len(pools[0])} background {unit}s")
        rows = cached_dataset(self._anchor_rows(pool, sentence_counts, anchor_docs, documents, background),
                              features(COLUMNS), documents, "sentence_distance",
                              self.fingerprint(documents, background, "anchor rows"), {})
        n_anchors = int(own_counts[anchor_docs].sum())
        if len(rows) < n_anchors:
            self.notes.append(f"sentence_distance dropped {n_anchors - len(rows)} of {n_anchors} anchors: every "
                              f"candidate partner repeats the text of a sentence the label rules out")
        log.info("sentence_distance (%s): %s (only those give anchors; the others give 'other document' partners), "
                 "%d anchors, %d %ss in the partner pool (%d from background documents)", split_name(held_out),
                 counts, len(rows), len(pool), unit, len(pool) - len(pools[0]))
        return rows

    def _anchor_rows(self, pool: datasets.Dataset, sentence_counts: np.ndarray, anchor_docs: np.ndarray,
                     documents: datasets.Dataset,
                     background: datasets.Dataset | None) -> Iterator[dict[str, list[Any]]]:
        """The rows of the anchors of ``anchor_docs``, a few documents at a time (see the module docstring).

        The candidates are drawn as if by one ``rng.random((anchors, k))`` for the same-document ones,
        then another for the other-document ones, from a Generator seeded by the crc32 of every
        document id joined by newlines: the second stream starts where the first would end."""
        k = self.options.distance_candidates
        first_sentence = np.cumsum(sentence_counts) - sentence_counts
        seed = _crc32_of_ids([documents] + ([background] if background is not None and len(background) else []))
        other_bits = np.random.PCG64(seed)  # what default_rng(seed) uses
        same_rng, other_rng = np.random.default_rng(seed), np.random.Generator(other_bits)
        other_bits.advance(int(sentence_counts[anchor_docs].sum()) * k)
        chunk: list[tuple[int, int, int]] = []  # (document, first anchor, last anchor + 1)
        for d in anchor_docs.tolist():
            size = int(sentence_counts[d])
            for low in range(0, size, STREAM_ROWS):  # a long document a slice of anchors at a time
                chunk.append((d, low, min(size, low + STREAM_ROWS)))
                if sum(high - low for _, low, high in chunk) >= STREAM_ROWS:
                    yield self._chunk_rows(pool, chunk, sentence_counts, first_sentence, same_rng, other_rng)
                    chunk = []
        if chunk:
            yield self._chunk_rows(pool, chunk, sentence_counts, first_sentence, same_rng, other_rng)

    def _draw(self, low: int, high: int, size: int, start: int, pool_size: int, same_rng: np.random.Generator,
              other_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of anchors ``low``..``high - 1`` of a document of ``size`` sentences from pool row
        ``start``: same-document ones (sentence numbers), other-document ones (pool rows)."""
        k = self.options.distance_candidates
        position = np.arange(low, high)
        # Same document, |i - j| >= 2: j < i - 1 (there are max(i - 1, 0) such j) or j > i + 1.
        left = np.maximum(position - 1, 0)
        n_far = left + np.maximum(size - position - 2, 0)
        draw = (same_rng.random((high - low, k)) * n_far[:, None]).astype(np.int64)
        same = np.where(draw < left[:, None], draw, draw - left[:, None] + position[:, None] + 2)
        # Other documents: uniform over the pool with the anchor's own document left out.
        other = (other_rng.random((high - low, k)) * (pool_size - size)).astype(np.int64)
        return same, other + np.where(other >= start, size, 0)

    def _chunk_rows(self, pool: datasets.Dataset, chunk: list[tuple[int, int, int]], sentence_counts: np.ndarray,
                    first_sentence: np.ndarray, same_rng: np.random.Generator,
                    other_rng: np.random.Generator) -> dict[str, list[Any]]:
        """The rows of the anchors of ``chunk``'s slices of documents (every sentence is an anchor)."""
        k = self.options.distance_candidates
        out: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        drawn = [self._draw(low, high, int(sentence_counts[d]), int(first_sentence[d]), len(pool), same_rng,
                            other_rng) for d, low, high in chunk]
        fetched = pool.select_columns(["doc_id", "sentence_index", "tokens"])[
            np.concatenate([other.ravel() for _, other in drawn]).tolist()]
        other_keys = [hash(tuple(tokens)) for tokens in fetched["tokens"]]
        offset = 0
        for (d, low, high), (same, _) in zip(chunk, drawn):
            start = int(first_sentence[d])
            sentences = pool.select_columns(["doc_id", "tokens"])[start:start + int(sentence_counts[d])]
            tokens = sentences["tokens"]
            keys = [hash(tuple(t)) for t in tokens]
            own = set(keys)
            for row, i in enumerate(range(low, high)):
                neighbours = {keys[j] for j in (i - 1, i + 1) if 0 <= j < len(keys)}
                good_same = [int(j) for j in same[row] if keys[j] not in neighbours]
                candidates = range(offset + row * k, offset + row * k + k)
                good_other = [c for c in candidates if other_keys[c] not in own]
                if not (good_same and good_other):
                    continue
                good_same, good_other = np.resize(good_same, k).tolist(), np.resize(good_other, k).tolist()
                adjacent = i + 1 if i + 1 < len(keys) else i - 1
                out["doc_id"].append(sentences["doc_id"][i])
                out["sentence_index"].append(i)
                out["anchor_tokens"].append(tokens[i])
                out["adjacent_index"].append(adjacent)
                out["adjacent_tokens"].append(tokens[adjacent])
                out["same_doc_indices"].append(good_same)
                out["same_doc_tokens"].append([tokens[j] for j in good_same])
                out["other_doc_ids"].append([fetched["doc_id"][c] for c in good_other])
                out["other_doc_indices"].append([fetched["sentence_index"][c] for c in good_other])
                out["other_doc_tokens"].append([fetched["tokens"][c] for c in good_other])
                out["length"].append(min(self.max_seq_length, 3 + len(tokens[i]) + len(tokens[adjacent])))
            offset += (high - low) * k
        return out

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
