"""Aligning spaCy's character spans with tokenizer tokens, and packing sentences into segments.

All tasks share this: a document is tokenized paragraph by paragraph (offset mappings give
each token's character span in the document), and any character span (sentence, entity,
noun chunk) maps to the half-open range of tokens that overlap it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from pretasks.base import IGNORE_INDEX

TOKENIZE_CHARS = 65_536  # paragraph characters per tokenizer call

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class DocumentTokens:
    """The tokens of one document: ids, character spans in the document text, and word index."""

    ids: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    word_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def token_range(self, char_start: int, char_end: int) -> tuple[int, int]:
        """The tokens overlapping ``[char_start, char_end)`` as a half-open range (empty if none)."""
        first = int(np.searchsorted(self.ends, char_start, side="right"))
        last = int(np.searchsorted(self.starts, char_end, side="left"))
        return first, max(first, last)

    def token_ranges(self, char_starts: npt.ArrayLike, char_ends: npt.ArrayLike) -> np.ndarray:
        """Vectorised :meth:`token_range`: an (n, 2) array of token ranges, empty ones dropped."""
        first = np.searchsorted(self.ends, np.asarray(char_starts, dtype=np.int64), side="right")
        last = np.searchsorted(self.starts, np.asarray(char_ends, dtype=np.int64), side="left")
        ranges = np.stack([first, last], axis=1).reshape(-1, 2)
        return ranges[ranges[:, 1] > ranges[:, 0]]

    def word_ranges(self) -> np.ndarray:
        """An (n, 2) array of the token ranges of the tokenizer's words (sub-tokens grouped)."""
        if len(self) == 0:
            return np.zeros((0, 2), dtype=np.int64)
        starts = np.flatnonzero(np.diff(self.word_ids, prepend=-1) != 0)
        return np.stack([starts, np.append(starts[1:], len(self))], axis=1)


def _paragraph_chunks(batch: dict[str, list[Any]]) -> Iterator[list[tuple[int, int, str]]]:
    """(document index, paragraph start, paragraph text) of a batch, about ``TOKENIZE_CHARS`` at a time."""
    chunk, size = [], 0
    for doc, (text, starts, ends) in enumerate(zip(batch["text"], batch["paragraph_starts"],
                                                   batch["paragraph_ends"])):
        for start, end in zip(starts, ends):
            chunk.append((doc, start, text[start:end]))
            size += end - start
            if size >= TOKENIZE_CHARS:
                yield chunk
                chunk, size = [], 0
    if chunk:
        yield chunk


def tokenize_documents(tokenizer: PreTrainedTokenizerBase, batch: dict[str, list[Any]]) -> list[DocumentTokens]:
    """Tokenize every paragraph of a batch of annotated documents, ``TOKENIZE_CHARS`` characters per
    tokenizer call: each call's Python lists become numpy arrays at once, so a long document costs
    its arrays (32 bytes a token), not its lists (about 150)."""
    parts: list[list[tuple[np.ndarray, ...]]] = [[] for _ in batch["text"]]
    word_base = [0] * len(batch["text"])
    for chunk in _paragraph_chunks(batch):
        encoded = tokenizer([text for *_, text in chunk], add_special_tokens=False, return_offsets_mapping=True,
                            return_attention_mask=False, return_token_type_ids=False)
        for i, (doc, start, _) in enumerate(chunk):
            offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
            words = np.asarray([w if w is not None else -1 for w in encoded.word_ids(i)], dtype=np.int64)
            parts[doc].append((np.asarray(encoded["input_ids"][i], dtype=np.int64),
                               offsets[:, 0] + start, offsets[:, 1] + start, words + word_base[doc]))
            word_base[doc] += int(words.max()) + 1 if len(words) else 0
    documents = []
    for doc_parts in parts:
        if doc_parts:
            documents.append(DocumentTokens(*(np.concatenate(column) for column in zip(*doc_parts))))
        else:
            empty = np.zeros(0, dtype=np.int64)
            documents.append(DocumentTokens(empty, empty, empty, empty))
    return documents


def pack_segments(n_tokens: int, boundaries: np.ndarray, max_tokens: int) -> list[tuple[int, int]]:
    """Cut ``n_tokens`` tokens into segments of at most ``max_tokens``, at the given token boundaries
    (sentence starts) where possible; a sentence longer than ``max_tokens`` is cut inside."""
    bounds = np.unique(np.append(boundaries, n_tokens))
    segments, start = [], 0
    while start < n_tokens:
        limit = start + max_tokens
        j = int(np.searchsorted(bounds, limit, side="right")) - 1
        end = int(bounds[j]) if j >= 0 and bounds[j] > start else min(limit, n_tokens)
        segments.append((start, end))
        start = end
    return segments


def document_segments(tokenizer: PreTrainedTokenizerBase, batch: dict[str, list[Any]],
                      max_tokens: int) -> Iterator[tuple[int, DocumentTokens, list[tuple[int, int]]]]:
    """For each document of a batch: its index, its tokens, and its tokens packed into segments
    of whole sentences of at most ``max_tokens`` (a longer sentence is cut inside)."""
    for doc_index, tokens in enumerate(tokenize_documents(tokenizer, batch)):
        sentence_starts = tokens.token_ranges(batch["sentence_starts"][doc_index],
                                              batch["sentence_ends"][doc_index])[:, 0]
        yield doc_index, tokens, pack_segments(len(tokens), sentence_starts, max_tokens)


# The columns add_labelled_segments writes: token ids fit int32, labels (-100, 0, 1) int8.
LABELLED_SEGMENT_COLUMNS = {"doc_id": "string", "input_ids": ["int32"], "labels": ["int8"], "length": "int32"}


def add_labelled_segments(rows: dict[str, list[Any]], doc_id: str, tokens: DocumentTokens, labels: np.ndarray,
                          segments: list[tuple[int, int]], min_labelled: int = 1) -> None:
    """Append to ``rows`` (doc_id, input_ids, labels, length) every segment of a document whose
    token labels (-100 = unlabelled) score at least ``min_labelled`` tokens."""
    for start, end in segments:
        if (labels[start:end] != IGNORE_INDEX).sum() < min_labelled:
            continue
        rows["doc_id"].append(doc_id)
        rows["input_ids"].append(tokens.ids[start:end].astype(np.int32))  # arrays: 4 bytes a token, not 36
        rows["labels"].append(labels[start:end].astype(np.int8))
        rows["length"].append(end - start + 2)
