"""Training steps make every tensor on the training device: checked on the CPU, with a second device.

The step runs under ``torch.device("meta")``, so a tensor made without naming its device lands
on ``meta`` while the model and the batches are on the CPU; any use of it beside a real tensor
fails ("Tensor on device meta is not on the expected device cpu"), and so does reading it on the
host (``.item()``). On a GPU such a tensor is a CPU tensor in a CUDA step: an error, or a copy
that waits for the GPU. The batches are collated on the host as they are on a GPU machine (the
streams run under ``torch.device("cpu")``).

What this cannot see (reviewed in ``ernie_cpt/training/device.py`` and the README's GPU path): a
CPU index tensor used on a device tensor, and the deliberate reads of losses and gradient norms
with ``.item()`` (each a synchronisation, for the log and the non-finite check).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch

from ernie_cpt.modeling.architectures import Architecture, ArchitectureOptions
from ernie_cpt.modeling.builder import build_model
from ernie_cpt.modeling.encoder import ModelOptions
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.device import enable_tf32, memory_record, pick_device, to_device
from ernie_cpt.training.options import TrainingOptions
from ernie_cpt.training.trainer import build_trainer, train
from ernie_cpt.weighting import build_weighting
from pretasks import TASKS, get_task
from schedules import ScheduleOptions
from schedules.stage import Stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEQ = 64


class CollatedOnTheHost:
    """A task stream whose batches are made as on a GPU machine: on the CPU, whatever the default device."""

    def __init__(self, stream: TaskStream) -> None:
        self.stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def __next__(self) -> dict[str, torch.Tensor]:
        with torch.device("cpu"):
            return next(self.stream)


@pytest.fixture(scope="module")
def examples(sample_annotations, sample_tokenizer):
    """Every registered task with its training examples from the sample."""
    tasks = {name: get_task(name)(sample_tokenizer, get_task(name).options_class(), SEQ) for name in TASKS}
    return tasks, {name: task.build_examples(sample_annotations) for name, task in tasks.items()}


def _train_on_meta_default(examples, architecture: str, weighting: str | None, tokenizer) -> None:
    """Two steps per task of every task (``--task-mixing all`` with ``weighting``, else one task per
    step), model and batches on the CPU, every tensor made without a device on ``meta``."""
    tasks, rows = examples
    streams = {name: CollatedOnTheHost(TaskStream(task, rows[name], 8, 0)) for name, task in tasks.items()}
    model = build_model(tasks, {name: task.task_id for name, task in tasks.items()}, ModelOptions(model_size="tiny"),
                        ArchitectureOptions(architecture=architecture), len(tokenizer), SEQ, len(TASKS))
    mixing = "sample" if weighting is None else "all"
    stage = Stage(dict.fromkeys(tasks, 2))
    combiner = None if weighting is None else build_weighting(weighting, list(tasks))
    options = TrainingOptions(max_steps=stage.optimizer_steps(mixing), batch_size=8, seed=0, save_steps=10**9,
                              logging_steps=1, device="cpu")
    with tempfile.TemporaryDirectory() as run_dir, torch.device("meta"):
        train(build_trainer(model, streams, [stage], Path(run_dir), training=options, weighting=combiner,
                            mixing=ScheduleOptions(schedule="joint", task_mixing=mixing)))


@pytest.mark.parametrize(("architecture", "weighting"), [
    ("hard", None), ("mmoe", "pcgrad"), ("ple", "cagrad"), ("cgc", "mgda"), ("cross_stitch", "nash_mtl"),
    ("hard", "gradnorm"), ("hard", "dwa"), ("hard", "famo"), ("mmoe", "uncertainty"), ("hard", "dtp"),
    ("sluice", None), ("soft_sharing", "gradnorm"),
])
def test_a_training_step_makes_no_tensor_off_the_training_device(examples, sample_tokenizer, architecture, weighting):
    _train_on_meta_default(examples, architecture, weighting, sample_tokenizer)


def test_a_tensor_made_without_its_device_in_the_step_is_caught(examples, sample_tokenizer, monkeypatch):
    forward = Architecture.forward

    def forward_with_a_host_constant(self, task, batch):
        out = forward(self, task, batch)
        return dataclasses.replace(out, loss=out.loss * torch.ones(()))  # the kind of bug the test is for

    monkeypatch.setattr(Architecture, "forward", forward_with_a_host_constant)
    with pytest.raises(RuntimeError, match="meta"):
        _train_on_meta_default(examples, "hard", None, sample_tokenizer)


def test_the_cpu_keeps_fp32_matmuls_and_batches_as_they_are():
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    try:
        pick_device("cpu")
        assert matmul.fp32_precision == before
        enable_tf32(torch.device("cuda"))  # only a flag: no GPU is touched
        assert matmul.fp32_precision == "tf32"
    finally:
        matmul.fp32_precision = before
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long)}
    assert to_device(batch, torch.device("cpu"))["input_ids"] is batch["input_ids"]
    assert memory_record(torch.device("cpu")) == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs a CUDA device")
def test_on_cuda_batches_come_pinned_and_land_on_the_gpu(examples):
    tasks, rows = examples
    stream = TaskStream(tasks["knowledge_masking"], rows["knowledge_masking"], 8, 0)
    stream.use_pinned_memory(True)
    batch = next(stream)
    assert all(value.is_pinned() for value in batch.values())
    assert {value.device.type for value in to_device(batch, torch.device("cuda")).values()} == {"cuda"}
    assert memory_record(torch.device("cuda"))["max_memory_allocated_mib"] > 0
