"""Each pre-task alone, a few dozen steps on a tiny model: its loss falls or its held-out
accuracy beats the majority class. The trainer runs every task without task-specific code."""

from __future__ import annotations

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.run_log import read_records
from pretasks import TASKS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("task", sorted(TASKS))
def test_task_trains_alone(task, sample_dir, tmp_path):
    run_dir = tmp_path / task
    assert main(["pretrain", "--corpus", str(sample_dir), "--tasks", task, "--output-dir", str(run_dir),
                 "--model-size", "tiny", "--max-steps", "60", "--batch-size", "16", "--learning-rate", "1e-3",
                 "--logging-steps", "1", "--eval-steps", "0", "--seed", "5"]) == 0
    losses = [r["loss"] for r in read_records(run_dir, "train")]
    assert len(losses) == 60 and {r["task"] for r in read_records(run_dir, "train")} == {task}
    final = read_records(run_dir, "eval")[-1]
    assert final["task"] == task and final["scored"] > 0
    loss_fell = sum(losses[-15:]) / 15 < sum(losses[:15]) / 15 - 0.05
    beats_majority = (final["accuracy"] > final["majority_accuracy"]
                      or final.get("f1", 0) > final.get("majority_f1", 1))
    assert loss_fell or beats_majority, (losses[:15], losses[-15:], final)
