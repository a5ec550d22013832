"""What every measure shares: the settings of a run, the result row, the prepared workload, and
the real trainer run on recorded batches.

The workload is one corpus annotated once (into the suite's temporary cache), split as
``pretrain`` splits it, with the tokenizer ``pretrain`` would train on it. Training measures run
:func:`ernie_cpt.training.trainer.train` itself; each task stream is wrapped so that the time every batch
was asked for and what it held are recorded, and throughput is read between those timestamps
once the first steps (warm-up) are over.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import datasets
import torch
from transformers import PreTrainedTokenizerBase

from ernie_cpt.builders import build_corpus, build_model, build_tasks, build_tokenizer, build_trainer
from ernie_cpt.config import PretrainConfig
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.encoder import ModelOptions
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.trainer import train
from ernie_cpt.weighting import weighting_from
from pretasks import PreTask
from schedules.stage import Stage

SEED = 42
AUSTEN = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "austen"


@dataclass(frozen=True)
class Settings:
    """Sizes of one run of the suite: ``quick`` (about 6 minutes) or full (21-35 minutes on 2 cores,
    a third of them annotating four copies of Austen for the memory measure and row 10's four
    annotations of Austen)."""

    quick: bool
    model_size: str = "mini"
    batch_size: int = 32
    seq_length: int = 128
    device: str = "cpu"  # "cuda": the training rows on a GPU with bf16 autocast (see for_device)
    dropout: float = 0.1  # --dropout and --attention-dropout of ours and of the Trainer baselines
    attention_dropout: float = 0.1

    @classmethod
    def for_device(cls, quick: bool, device: str) -> Settings:
        """The CPU settings, or on ``cuda`` the ``base`` model (BERT-base sizes) at batch 64 x 128."""
        return cls(quick) if device == "cpu" else cls(quick, model_size="base", batch_size=64, device=device)

    def model_options(self) -> ModelOptions:
        """The encoder of ours and of the baselines: the same size and the same dropout."""
        return ModelOptions(model_size=self.model_size, dropout=self.dropout, attention_dropout=self.attention_dropout)

    def config(self, corpus: Path | None = None, cache_dir: str | None = None) -> PretrainConfig:
        """The pretrain options of these settings, as ``ernie-cpt pretrain`` would be given them."""
        return PretrainConfig(corpus=[str(corpus)] if corpus else [], model_size=self.model_size,
                              dropout=self.dropout, attention_dropout=self.attention_dropout,
                              max_seq_length=self.seq_length, batch_size=self.batch_size, seed=SEED,
                              split_seed=SEED, device=self.device, cache_dir=cache_dir or AnnotationOptions().cache_dir)

    @property
    def train_steps(self) -> int:
        """Timed optimizer steps of each training measure, after the warm-up steps."""
        return 12 if self.quick else 20

    @property
    def warmup_steps(self) -> int:
        return 3 if self.quick else 4

    @property
    def rounds(self) -> int:
        """Repetitions of each training measure, alternating with its baseline; the best one counts."""
        return 1 if self.quick else 2

    @property
    def steps_per_task(self) -> int:
        """Steps of each task in the joint seven-task run."""
        return 6 if self.quick else 8


@dataclass
class Row:
    """One line of the table: ours against the baseline, and the target for their ratio."""

    measure: str
    ours: float
    baseline: float
    unit: str
    target: float | None = None  # on ours / baseline
    higher_is_better: bool = True
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio >= self.target if self.higher_is_better else self.ratio <= self.target


@dataclass
class Recorded:
    """A training batch as the trainer saw it: when it was asked for and fetched, and its shape."""

    task: str
    asked: float
    fetched: float
    lengths: list[int]  # non-padding tokens of each example
    targets: int  # scored positions (token tasks) or examples (sequence tasks)

    @property
    def tokens(self) -> int:
        return sum(self.lengths)


class RecordingStream:
    """A :class:`TaskStream` that appends a :class:`Recorded` for every batch it yields."""

    def __init__(self, stream: TaskStream, log: list[Recorded]) -> None:
        self.stream, self.log = stream, log

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __next__(self) -> dict[str, torch.Tensor]:
        synchronize()
        asked = time.perf_counter()
        batch = next(self.stream)
        labels = batch["labels"]
        targets = int((labels != -100).sum()) if labels.ndim == 2 else len(labels)
        self.log.append(Recorded(self.stream.task.name, asked, time.perf_counter(),
                                 batch["attention_mask"].sum(1).tolist(), targets))
        return batch


def synchronize() -> None:
    """Wait for the GPU's queued work, so that a timestamp marks the end of the step before it (a no-op
    when CUDA is not in use)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def gpu_peak_mib(device: str, start: bool = False) -> float | None:
    """The most memory tensors held on the CUDA ``device`` since the last ``start=True`` call
    (``torch.cuda.max_memory_allocated``, MiB), which resets it; None on the CPU."""
    if device == "cpu":
        return None
    if start:
        torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def steady_batches(log: list[Recorded], warmup: int) -> tuple[list[Recorded], float]:
    """The batches trained after ``warmup`` steps, and the seconds they took: from the request of
    the first one to the request of the batch after the last (the last recorded batch is not
    counted, as its step may end outside the record)."""
    timed = log[warmup:]
    return timed[:-1], timed[-1].asked - timed[0].asked


def tokens_per_second(log: list[Recorded], warmup: int) -> float:
    batches, seconds = steady_batches(log, warmup)
    return sum(b.tokens for b in batches) / seconds


@dataclass
class Workload:
    """An annotated corpus split for training, with its tokenizer, in a private cache."""

    name: str
    cache_dir: str
    documents: datasets.Dataset
    train_documents: datasets.Dataset
    tokenizer: PreTrainedTokenizerBase
    settings: Settings
    build_seconds: dict[str, float] = field(default_factory=dict)
    _rows: dict[str, datasets.Dataset] = field(default_factory=dict)

    @classmethod
    def load(cls, name: str, corpus: Path, cache_dir: str, settings: Settings) -> Workload:
        config = settings.config(corpus, cache_dir)
        split = build_corpus(config)
        return cls(name, cache_dir, split.documents, split.train, build_tokenizer(config, split.train), settings)

    @property
    def config(self) -> PretrainConfig:
        return self.settings.config(cache_dir=self.cache_dir)

    def task(self, name: str) -> PreTask:
        return build_tasks(self.config, self.tokenizer, [name])[name]

    def rows(self, name: str) -> datasets.Dataset:
        """The static training examples of a task, built once (the build time is kept)."""
        if name not in self._rows:
            start = time.perf_counter()
            self._rows[name] = self.task(name).build_examples(self.train_documents)
            self.build_seconds[name] = time.perf_counter() - start
        return self._rows[name]

    def stream(self, name: str) -> TaskStream:
        return TaskStream(self.task(name), self.rows(name), self.settings.batch_size, SEED)

    def model(self, tasks: list[str]) -> Architecture:
        """A new encoder of the settings' size with each task's head, as ``pretrain`` builds it, but
        with the masked-LM bias at zeros, as the Trainer baselines start theirs (speed only)."""
        torch.manual_seed(SEED)
        return build_model(self.config, build_tasks(self.config, self.tokenizer, tasks), len(self.tokenizer))

    def train(self, budgets: dict[str, int], weighting: str | None = None,
              record: Callable[[TaskStream, list[Recorded]], RecordingStream] = RecordingStream,
              ) -> tuple[Architecture, list[Recorded]]:
        """Run the real trainer for one stage with these per-task step budgets: one task per step, as
        ``--schedule joint`` does, or with ``weighting`` every task in every step (``--task-mixing
        all --loss-weighting WEIGHTING``); returns the model and every batch it trained on (each
        task's stream wrapped by ``record``)."""
        log: list[Recorded] = []
        streams = {name: record(self.stream(name), log) for name in budgets}
        model = self.model(list(budgets))
        mixing = "sample" if weighting is None else "all"
        stage = Stage(dict(budgets))
        config = dataclasses.replace(self.config, max_steps=stage.optimizer_steps(mixing), save_steps=10**9,
                                     logging_steps=10**9, save_total_limit=1, amp=True,  # bf16 autocast on CUDA
                                     schedule="joint", task_mixing=mixing, loss_weighting=weighting or "equal")
        combiner = None if weighting is None else weighting_from(config.option_groups(), list(budgets))
        with tempfile.TemporaryDirectory(prefix="bench-run-") as run_dir:
            proxies = cast("dict[str, TaskStream]", streams)  # a RecordingStream passes every call on to its stream
            train(build_trainer(model, proxies, [stage], Path(run_dir), training=config, weighting=combiner,
                                mixing=config))
        return model, log
