"""Building model inputs from token lists: [CLS] A [SEP] (B [SEP] ...), with truncation that
keeps token-level labels aligned with their tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pretasks.base import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def truncate_longest_first(parts: list[list[int]], budget: int,
                           labels: list[list[int]] | None = None) -> tuple[list[list[int]], list[list[int]] | None]:
    """Drop tokens from the end of the currently longest part until all parts fit in ``budget``
    tokens (BERT's longest-first strategy). Label lists, when given, are cut with their parts."""
    parts = [list(p) for p in parts]
    labels = [list(lab) for lab in labels] if labels is not None else None
    excess = sum(len(p) for p in parts) - budget
    while excess > 0:
        longest = max(range(len(parts)), key=lambda i: len(parts[i]))
        parts[longest].pop()
        if labels is not None:
            labels[longest].pop()
        excess -= 1
    return parts, labels


def join_segments(tokenizer: PreTrainedTokenizerBase, parts: list[list[int]], max_length: int,
                  labels: list[list[int]] | None = None) -> dict[str, Any]:
    """``[CLS] p1 [SEP] p2 [SEP] ...`` truncated to ``max_length`` tokens, with segment (token
    type) ids alternating 0/1 from part to part. With ``labels`` (one list per part), the
    example's ``labels`` are aligned with ``input_ids`` (-100 on special tokens)."""
    parts, labels = truncate_longest_first(parts, max_length - 1 - len(parts), labels)
    input_ids, token_type_ids = [tokenizer.cls_token_id], [0]
    aligned = [IGNORE_INDEX]
    for i, part in enumerate(parts):
        input_ids += [*part, tokenizer.sep_token_id]
        token_type_ids += [i % 2] * (len(part) + 1)
        if labels is not None:
            aligned += [*labels[i], IGNORE_INDEX]
    example: dict[str, Any] = {"input_ids": input_ids, "token_type_ids": token_type_ids}
    if labels is not None:
        example["labels"] = aligned
    return example
