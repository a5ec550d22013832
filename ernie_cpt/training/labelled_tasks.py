"""Labelled sets as tasks of the trainer: the same ``TaskStream`` batches that pre-tasks give.

A :class:`LabelledTask` has what ``TaskStream`` reads of a pre-task (``name``, ``task_id``,
``tokenizer``, ``make_example``) and its own ``collate``: labels are class ids, float scores
(regression) or, for ranking, a query's candidates flattened into (query, passage) rows with a
(queries, candidates) grid of relevance labels padded with -100 (see ``RankingHead``). Its
``task_id`` keys only the RNG of the stream (example order), one per set; the row of the task
embedding a set uses is the model's (``Architecture.task_ids``).
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from ernie_cpt.data.labelled_sets import LabelledSet
from ernie_cpt.training.batching import TaskStream
from pretasks.base import IGNORE_INDEX


class LabelledTask:
    """A labelled set's examples for ``TaskStream``: static examples, made as they are (no RNG)."""

    def __init__(self, labelled: LabelledSet, stream_key: int, tokenizer: Any) -> None:
        self.name, self.task_id, self.tokenizer = labelled.spec.name, stream_key, tokenizer
        self.ranking = labelled.spec.kind == "ranking"
        self.regression = labelled.spec.kind == "regression"

    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        return row

    def _pad(self, sequences: list[list[int]], value: int) -> torch.Tensor:
        width = max(len(s) for s in sequences)
        return torch.tensor([s + [value] * (width - len(s)) for s in sequences], dtype=torch.long)

    def collate(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Padded ``input_ids``, ``token_type_ids``, ``attention_mask`` (rows, tokens) and ``labels``:
        (batch,) long or float, or (queries, candidates) long for ranking, -100 where a query has fewer."""
        if self.ranking:
            ids = [seq for e in examples for seq in e["input_ids"]]
            types = [seq for e in examples for seq in e["token_type_ids"]]
            labels = self._pad([list(e["labels"]) for e in examples], IGNORE_INDEX)
        else:
            ids, types = [e["input_ids"] for e in examples], [e["token_type_ids"] for e in examples]
            labels = torch.tensor([e["labels"] for e in examples],
                                  dtype=torch.float32 if self.regression else torch.long)
        return {"input_ids": self._pad(ids, self.tokenizer.pad_token_id), "token_type_ids": self._pad(types, 0),
                "attention_mask": self._pad([[1] * len(s) for s in ids], 0), "labels": labels}


def _rows(examples: list[dict[str, Any]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict({key: [e[key] for e in examples] for key in examples[0]})


def labelled_stream(labelled: LabelledSet, stream_key: int, tokenizer: Any, batch_size: int, seed: int,
                    rank: int = 0, world_size: int = 1) -> TaskStream:
    """Endless, resumable training batches of a set (``TaskStream``), shuffled every epoch by ``seed``."""
    return TaskStream(LabelledTask(labelled, stream_key, tokenizer), _rows(labelled.train), batch_size, seed,
                      0, rank, world_size)


def test_batches(labelled: LabelledSet, tokenizer: Any, batch_size: int) -> DataLoader:
    """The test examples in file order, ``batch_size`` per batch (queries, for ranking)."""
    task = LabelledTask(labelled, 0, tokenizer)
    # torch types DataLoader's dataset as a Dataset; any sized, indexable sequence is one (map-style)
    return DataLoader(labelled.test, batch_size=batch_size, collate_fn=task.collate)  # type: ignore[arg-type]
