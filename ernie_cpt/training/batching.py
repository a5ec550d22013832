"""Task examples to batches: one task per batch, length-bucketed, dynamically padded.

A ``TaskStream`` yields batches of one task forever, epoch after epoch. An epoch shuffles the
static rows and cuts them into windows of ``BUCKET_BATCHES`` batches; each window's examples
are made (masks drawn, pair partners picked), sorted by their real length, cut into batches and
the batches shuffled, as torchtext's ``BucketIterator`` pools do. Sorting the examples made,
not the static rows, matters for pair tasks, whose length is only known once the partner is
picked. The batch order and every example's random choices come from RNGs seeded by
(seed, task id, epoch[, window or example]), so the stream's whole state is (epoch, batches
consumed) and a resumed run sees exactly the batches an uninterrupted run would have.

With several processes (``torchrun``), every rank draws the same global batches and takes its
contiguous share of each (the global batch size is kept); an epoch's batches with fewer
examples than there are ranks are left out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from itertools import islice
from typing import Any, Protocol

import datasets
import numpy as np
import torch
from torch.utils.data import DataLoader

from pretasks.base import IGNORE_INDEX

BUCKET_BATCHES = 50  # batches per sorting window of length bucketing
EVAL_EPOCH = 2**31  # RNG key of evaluation examples: fixed, never a training epoch


def collate(examples: list[dict[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Pad a list of examples to the longest one; list labels are padded with -100."""
    width = max(len(e["input_ids"]) for e in examples)

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples], dtype=torch.long)

    batch = {
        "input_ids": padded("input_ids", pad_token_id),
        "token_type_ids": padded("token_type_ids", 0),
        "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                        for e in examples], dtype=torch.long),
    }
    if isinstance(examples[0]["labels"], list):
        batch["labels"] = padded("labels", IGNORE_INDEX)
    else:
        batch["labels"] = torch.tensor([e["labels"] for e in examples], dtype=torch.long)
    return batch


class StreamTask(Protocol):
    """What the streams read of a task: a ``PreTask``, or a labelled set's ``LabelledTask`` (fine-tuning)."""

    @property
    def name(self) -> str: ...
    @property
    def task_id(self) -> int: ...
    @property
    def tokenizer(self) -> Any: ...
    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]: ...


def collate_for(task: StreamTask) -> Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]:
    """The task's own ``collate(examples)`` where it has one (labelled sets of fine-tuning), else
    :func:`collate` with the tokenizer's padding id."""
    return getattr(task, "collate", None) or partial(collate, pad_token_id=task.tokenizer.pad_token_id)


class EpochExamples(torch.utils.data.Dataset):
    """The training examples of one epoch: static rows made into examples with per-example RNGs."""

    def __init__(self, task: StreamTask, rows: datasets.Dataset, seed: int, epoch: int) -> None:
        self.task, self.rows, self.seed, self.epoch = task, rows, seed, epoch

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        columns = self.rows[indices]
        keys = list(columns)
        rows = [dict(zip(keys, values)) for values in zip(*columns.values())]
        return [self.task.make_example(row, np.random.default_rng([self.seed, self.task.task_id, self.epoch, i]))
                for row, i in zip(rows, indices)]

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]


class EpochWindows(torch.utils.data.Dataset):
    """The training batches of one epoch, a window of ``BUCKET_BATCHES`` batches per item: the
    window's examples are made, sorted by length, cut into (this rank's share of) batches, shuffled
    and collated. Every window but the last holds exactly ``BUCKET_BATCHES`` batches."""

    def __init__(self, task: StreamTask, rows: datasets.Dataset, batch_size: int, seed: int, epoch: int,
                 rank: int, world_size: int) -> None:
        self.examples = EpochExamples(task, rows, seed, epoch)
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.key = [seed, task.task_id, epoch]
        self.order = np.random.default_rng(self.key).permutation(len(rows))
        self.window = batch_size * BUCKET_BATCHES

    def __len__(self) -> int:
        return -(-len(self.order) // self.window)

    def __getitem__(self, index: int) -> list[dict[str, torch.Tensor]]:
        examples = self.examples.__getitems__(self.order[index * self.window:(index + 1) * self.window].tolist())
        by_length = np.argsort([len(e["input_ids"]) for e in examples], kind="stable")
        batches = [by_length[i:i + self.batch_size].tolist() for i in range(0, len(by_length), self.batch_size)]
        batches = [batches[i] for i in np.random.default_rng([*self.key, index]).permutation(len(batches))]
        return [collate_for(self.examples.task)([examples[i] for i in batch])
                for batch in rank_share(batches, self.rank, self.world_size)]


def loader(dataset: torch.utils.data.Dataset, batches: list[list[int]], pad_token_id: int,
           workers: int) -> DataLoader:
    # A private generator: creating an iterator must not draw from the global RNG (dropout).
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, generator=torch.Generator(),
                      collate_fn=partial(collate, pad_token_id=pad_token_id))


def rank_share(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """Rank ``rank``'s contiguous share of each batch with at least ``world_size`` examples."""
    if world_size == 1:
        return batches
    return [np.array_split(batch, world_size)[rank].tolist() for batch in batches if len(batch) >= world_size]


class TaskStream:
    """Endless batches of one task; ``state()``/``load_state()`` make it resumable. ``batch_size``
    is the global batch: with ``world_size`` processes each yields its share of every batch."""

    def __init__(self, task: StreamTask, rows: datasets.Dataset, batch_size: int, seed: int, workers: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        if len(rows) == 0:
            raise ValueError(f"task {task.name} has no training examples")
        if batch_size < world_size:
            raise ValueError(f"batch size {batch_size} is smaller than the {world_size} processes")
        self.task, self.rows, self.batch_size, self.seed, self.workers = task, rows, batch_size, seed, workers
        self.rank, self.world_size = rank, world_size
        self.epoch, self.position, self.pin_memory = 0, 0, False
        self._batches: Iterator[dict[str, torch.Tensor]] | None = None

    def use_pinned_memory(self, pin: bool) -> None:
        """Yield batches in pinned (page-locked) host memory, which a CUDA device copies from without
        waiting (``DataLoader(pin_memory=True)``); takes effect when the stream (re)starts an epoch."""
        self.pin_memory = pin

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._batches = None

    def _start(self) -> Iterator[dict[str, torch.Tensor]]:
        windows = EpochWindows(self.task, self.rows, self.batch_size, self.seed, self.epoch, self.rank,
                               self.world_size)
        first, skip = divmod(self.position, BUCKET_BATCHES)
        remaining = torch.utils.data.Subset(windows, range(first, len(windows)))
        # A window per item, made in the workers if any; a private generator, so that creating an
        # iterator does not draw from the global RNG (dropout).
        windows_made = DataLoader(remaining, batch_size=None, num_workers=self.workers, generator=torch.Generator(),
                                  pin_memory=self.pin_memory)
        return islice((batch for window in windows_made for batch in window), skip, None)

    def __next__(self) -> dict[str, torch.Tensor]:
        if self._batches is None:
            self._batches = self._start()
        batch = next(self._batches, None)
        if batch is None:  # epoch finished: the next one is reshuffled and re-masked
            self.epoch, self.position = self.epoch + 1, 0
            self._batches = self._start()
            batch = next(self._batches)
        self.position += 1
        return batch


def eval_batches(task: StreamTask, rows: datasets.Dataset, batch_size: int, seed: int) -> DataLoader:
    """The held-out batches of a task, with examples fixed across evaluations (same masks)."""
    order = np.argsort(np.asarray(rows["length"]), kind="stable")
    batches = [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    return loader(EpochExamples(task, rows, seed, EVAL_EPOCH), batches, task.tokenizer.pad_token_id, 0)
