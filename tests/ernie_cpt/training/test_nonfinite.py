"""Numerical safety: a step whose loss is NaN or inf is skipped (no update, a warning, a "skipped"
record); more than --max-nonfinite-steps of them stop the run with exit code 2 and its last good
checkpoint intact; a run with skipped steps resumes bit-exactly.

NaN/inf is injected into the loss of chosen batches: the batch a task stream yields at (epoch,
position) is marked, and the model's loss on a marked batch is multiplied by NaN or inf. The
stream's position is part of the checkpoint, so a resumed run meets the same bad batches.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from ernie_cpt.cli import main
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.checkpoint import LATEST, checkpoints, read_checkpoint
from ernie_cpt.training.run_log import read_records

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def poison(monkeypatch, bad: dict[tuple[str, int], float]) -> None:
    """Multiply the loss of task ``t``'s ``n``-th batch of epoch 0 by ``bad[(t, n)]`` (NaN or inf)."""
    next_batch, forward = TaskStream.__next__, Architecture.forward

    def marked_next(self):
        batch = next_batch(self)
        factor = bad.get((self.task.name, self.position)) if self.epoch == 0 else None
        return {**batch, "factor": torch.tensor(factor)} if factor is not None else batch

    def poisoned_forward(self, task, batch):
        out = forward(self, task, batch)
        return out._replace(loss=out.loss * batch["factor"]) if "factor" in batch else out

    monkeypatch.setattr(TaskStream, "__next__", marked_next)
    monkeypatch.setattr(Architecture, "forward", poisoned_forward)


def args(sample_dir: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]],
            "--output-dir", str(run_dir), "--model-size", "tiny", "--max-steps", "8", "--batch-size", "8",
            "--learning-rate", "1e-3", "--logging-steps", "1", "--eval-steps", "0", "--save-steps", "1",
            "--save-total-limit", "10", "--vocab-size", "3000", "--seed", "7", *extra]


def weights_at(run_dir: Path, step: int) -> dict[str, torch.Tensor]:
    return read_checkpoint(run_dir / "checkpoints" / f"step-{step:08d}")[0]


def test_a_nonfinite_step_is_skipped_and_logged(sample_dir, tmp_path, monkeypatch, caplog):
    poison(monkeypatch, {("knowledge_masking", 3): float("nan"), ("knowledge_masking", 5): float("inf")})
    run_dir = tmp_path / "run"

    with caplog.at_level(logging.WARNING):
        assert main(args(sample_dir, run_dir)) == 0

    records = read_records(run_dir, "train")
    assert [r["step"] for r in records if r.get("skipped")] == [3, 5]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert all(torch.isfinite(torch.tensor(r["loss"])) != r.get("skipped", False) for r in records)
    assert "step 3 (knowledge_masking): loss {'knowledge_masking': nan}" in caplog.text
    assert "step skipped (2 of at most 10)" in caplog.text
    for skipped in (3, 5):  # no parameter moved in a skipped step, one did in the next
        before, after, next_step = (weights_at(run_dir, s) for s in (skipped - 1, skipped, skipped + 1))
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert not all(torch.equal(after[k], next_step[k]) for k in after)
    _, training_state, trainer_state = read_checkpoint(run_dir / "checkpoints" / "step-00000008")
    assert trainer_state["nonfinite_steps"] == 2
    assert {int(s["step"]) for s in training_state["optimizer"]["state"].values()} == {6}  # 8 steps, 2 skipped


def test_too_many_nonfinite_steps_stop_with_the_last_good_checkpoint(sample_dir, tmp_path, monkeypatch, capsys):
    poison(monkeypatch, {("knowledge_masking", 3): float("nan"), ("knowledge_masking", 5): float("nan")})
    run_dir = tmp_path / "run"
    capsys.readouterr()

    assert main(args(sample_dir, run_dir, "--save-steps", "2", "--max-nonfinite-steps", "1")) == 2

    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ernie-cpt: error:")]
    assert errors == ["ernie-cpt: error: the loss or gradient norm was NaN/inf in 2 steps (the last: step 5, "
                      "knowledge_masking loss nan, gradient norm nan), more "
                      "than --max-nonfinite-steps 1; the last good checkpoint is step-00000004, intact: lower "
                      "--learning-rate (now 0.001) and start a new run, or --resume with a higher "
                      "--max-nonfinite-steps"]
    assert [p.name for p in checkpoints(run_dir)] == ["step-00000002", "step-00000004"]
    assert (run_dir / "checkpoints" / LATEST).read_text() == "step-00000004\n"
    read_checkpoint(run_dir / "checkpoints" / "step-00000004")
    assert [r["step"] for r in read_records(run_dir, "train")][-1] == 5


def test_a_run_with_skipped_steps_resumes_bit_exactly(sample_dir, tmp_path, monkeypatch):
    poison(monkeypatch, {("knowledge_masking", 3): float("nan"), ("knowledge_masking", 6): float("nan")})
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert main(args(sample_dir, reference, "--max-nonfinite-steps", "2")) == 0
    shutil.copytree(reference, resumed)
    for path in checkpoints(resumed)[4:]:
        shutil.rmtree(path)
    (resumed / "checkpoints" / LATEST).write_text("step-00000004\n")

    assert main([*args(sample_dir, resumed, "--max-nonfinite-steps", "2"), "--resume"]) == 0

    def strip(run_dir):
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, "train")]

    assert str(strip(resumed)) == str(strip(reference))  # str: NaN != NaN
    assert [r["step"] for r in strip(resumed) if r.get("skipped")] == [3, 6]


def test_a_skipped_step_leaves_the_loss_weighting_as_it_was(sample_dir, tmp_path, monkeypatch):
    poison(monkeypatch, {("capitalization", 2): float("nan")})
    run_dir = tmp_path / "run"

    assert main(args(sample_dir, run_dir, "--tasks", "knowledge_masking", "capitalization", "--task-mixing", "all",
                     "--loss-weighting", "dwa", "--dwa-window", "1")) == 0

    assert [r["step"] for r in read_records(run_dir, "train") if r.get("skipped")] == [2]
    weights = read_records(run_dir, "weights")
    assert [r["step"] for r in weights] == [1, 3, 4]  # 8 task steps each of 2 tasks: 4 optimizer steps
    assert all(torch.isfinite(torch.tensor(list(r["weights"].values()))).all() for r in weights)


def test_a_batch_with_nothing_to_score_costs_nothing_and_is_counted(sample_dir, tmp_path, monkeypatch, caplog):
    """A batch without a target token (every label -100): loss 0, not NaN; the step is not skipped (even
    with --max-nonfinite-steps 0) and the batch is counted in the train record."""
    next_batch = TaskStream.__next__

    def unscored(self):
        batch = next_batch(self)
        if self.epoch == 0 and self.position in (2, 3):
            batch = {**batch, "labels": torch.full_like(batch["labels"], -100)}
        return batch

    monkeypatch.setattr(TaskStream, "__next__", unscored)
    run_dir = tmp_path / "run"

    with caplog.at_level(logging.WARNING):
        assert main(args(sample_dir, run_dir, "--max-nonfinite-steps", "0")) == 0

    records = read_records(run_dir, "train")
    assert not any(r.get("skipped") for r in records) and "NaN" not in caplog.text
    assert [(r["step"], r["loss"], r.get("empty_batches")) for r in records[1:3]] == \
        [(2, 0.0, {"knowledge_masking": 1}), (3, 0.0, {"knowledge_masking": 1})]
    assert all("empty_batches" not in r for r in records[3:]) and records[3]["loss"] > 0
