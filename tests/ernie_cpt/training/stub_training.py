"""A stub model and stub task streams that drive the real training loop in milliseconds.

``StubModel`` has the part of the ``Architecture`` interface the trainer uses: ``heads`` (real
classification heads, ``ernie_cpt.modeling.heads.Head``), ``forward(task, batch) -> TaskOutput``,
``shared_layer_weights()``, ``shared_parameters()``, ``routing()`` and ``aux_loss()`` (a penalty with
``penalty`` > 0). Its encoder is a mean of
token embeddings through one dense layer with dropout, so dropout, weight decay and clipping act as
they do on a real model. ``StubStream`` has the part of ``TaskStream`` it uses: ``epoch``, ``next``,
``state()``/``load_state()`` and ``rows``. Example ``i`` of a stream is made from (seed, task, i),
so a stream resumes exactly from its position, and a batch of 8 is the two batches of 4 it
replaces. Chosen batches carry a NaN or inf loss factor (the model multiplies its loss by it), have
nothing to score, or send this process SIGTERM when drawn.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ernie_cpt.modeling.architectures import TaskOutput
from ernie_cpt.modeling.heads import Head
from ernie_cpt.training.optimization import build_lr_scheduler, build_optimizer
from ernie_cpt.training.options import TrainingOptions
from ernie_cpt.training.run_log import RunLog
from ernie_cpt.training.trainer import Trainer
from ernie_cpt.weighting import LossWeighting
from pretasks.base import IGNORE_INDEX
from schedules.stage import Stage

VOCAB, WIDTH = 40, 6


class PooledHead(Head):
    """Two classes from the pooled state; items labelled -100 are not scored."""

    def __init__(self, hidden: int) -> None:
        super().__init__(2)
        self.classifier = nn.Linear(hidden, 2)

    def forward(self, sequence_output: torch.Tensor | None, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        scored = batch["labels"] != IGNORE_INDEX
        return self.classifier(pooled_output)[scored], batch["labels"][scored]


class StubModel(nn.Module):
    """Tasks on a tiny shared encoder, each with its own head; ``routing()`` gives each task's training
    forward passes since the last call (a stand-in for an architecture's mean routing weights)."""

    def __init__(self, tasks: list[str], hidden: int = 8, dropout: float = 0.1, seed: int = 0,
                 penalty: float = 0.0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.embeddings = nn.Embedding(VOCAB, hidden)
            self.layer = nn.Linear(hidden, hidden)
            self.heads = nn.ModuleDict({task: PooledHead(hidden) for task in tasks})
        self.dropout = nn.Dropout(dropout)
        self.passes: dict[str, int] = {}
        self.penalty = penalty
        if penalty:  # a parameter that only the penalty reaches, as another task's column
            self.tie = nn.Parameter(torch.arange(1.0, 4.0))

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (self.embeddings(batch["input_ids"]) * mask).sum(1) / mask.sum(1)
        pooled = torch.tanh(self.layer(self.dropout(pooled)))
        out = self.heads[task].task_output(None, pooled, batch)
        if "loss_factor" in batch:
            out = dataclasses.replace(out, loss=out.loss * batch["loss_factor"])
        if self.training:
            self.passes[task] = self.passes.get(task, 0) + 1
        return out

    def shared_layer_weights(self) -> list[nn.Parameter]:
        return [self.layer.weight]

    def shared_parameters(self) -> list[nn.Parameter]:
        return [self.embeddings.weight, self.layer.weight, self.layer.bias]

    def aux_loss(self) -> torch.Tensor | None:
        """``penalty`` * (||layer.weight||^2 + ||tie||^2), None without a penalty."""
        if not self.penalty:
            return None
        return self.penalty * (self.layer.weight.pow(2).sum() + self.tie.pow(2).sum())

    def routing(self) -> dict[str, dict[str, float]]:
        passes, self.passes = self.passes, {}
        return {task: {"forward_passes": float(n)} for task, n in passes.items()}


class StubStream:
    """Endless batches of ``batch_size`` examples of ``task``: token ids, a padding mask, and the label
    "is the first token's id odd". Batch ``p`` (0-based, the stream's position before drawing it)
    carries the loss factor ``bad[p]`` when ``p`` is in ``bad``, has nothing to score when it is in
    ``empty_at``, and sends this process SIGTERM when it is in ``sigterm_at``."""

    def __init__(self, task: str, batch_size: int = 4, seed: int = 0, size: int = 40,
                 bad: dict[int, float] | None = None, empty_at: tuple[int, ...] = (),
                 sigterm_at: tuple[int, ...] = ()) -> None:
        self.task, self.batch_size, self.seed = task, batch_size, seed
        self.rows = range(size)  # as many training examples (what the "size" sampler weighs)
        self.bad, self.empty_at, self.sigterm_at = bad or {}, empty_at, sigterm_at
        self.position = 0

    @property
    def epoch(self) -> int:
        """Whole passes over the ``size`` examples drawn so far (what the trainer's rising-loss note reads)."""
        return self.position * self.batch_size // len(self.rows)

    def state(self) -> dict[str, int]:
        return {"epoch": 0, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.position = int(state["position"])

    def example(self, index: int) -> tuple[list[int], int]:
        rng = np.random.default_rng([self.seed, zlib.crc32(self.task.encode()), index])
        ids = rng.integers(1, VOCAB, size=int(rng.integers(2, WIDTH + 1))).tolist()
        return ids, ids[0] % 2

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        examples = [self.example(position * self.batch_size + i) for i in range(self.batch_size)]
        batch = {"input_ids": torch.tensor([ids + [0] * (WIDTH - len(ids)) for ids, _ in examples]),
                 "attention_mask": torch.tensor([[1] * len(ids) + [0] * (WIDTH - len(ids)) for ids, _ in examples]),
                 "labels": torch.tensor([label for _, label in examples])}
        if position in self.empty_at:
            batch["labels"] = torch.full_like(batch["labels"], IGNORE_INDEX)
        if position in self.bad:
            batch["loss_factor"] = torch.tensor(self.bad[position])
        return batch

    def __next__(self) -> dict[str, torch.Tensor]:
        batch = self.batch(self.position)
        if self.position in self.sigterm_at:
            os.kill(os.getpid(), signal.SIGTERM)
        self.position += 1
        return batch


NAN, INF = math.nan, math.inf


def stub_trainer(run_dir: Path, schedule: list[Stage], *, model: StubModel | None = None,
                 streams: dict[str, StubStream] | None = None, weighting: LossWeighting | None = None,
                 args: dict[str, Any] | None = None, **fields: Any) -> Trainer:
    """A :class:`Trainer` over ``schedule``'s tasks with a new :class:`StubModel` and a :class:`StubStream`
    per task unless given; ``args`` overrides ``TrainingOptions`` (CPU, no TensorBoard, a record every
    step, no checkpoint but at the end), ``fields`` set the other ``Trainer`` fields."""
    tasks = sorted({task for stage in schedule for task in stage.steps})
    model = model if model is not None else StubModel(tasks)
    streams = streams if streams is not None else {task: StubStream(task) for task in tasks}
    options = TrainingOptions(**{"learning_rate": 0.05, "logging_steps": 1, "save_steps": 10**6, "device": "cpu",
                                 "report_to": "none", **(args or {})})
    mixing = fields.get("task_mixing", "sample")
    optimizer = build_optimizer(model, list(weighting.parameters()) if weighting is not None else [], options,
                                torch.device("cpu"))
    return Trainer(model, streams, schedule, optimizer, build_lr_scheduler(optimizer, schedule, options, mixing),
                   RunLog(run_dir, tensorboard=False), run_dir, options, weighting=weighting, **fields)
