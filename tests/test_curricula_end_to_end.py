"""Every curriculum really trains: 3 tasks on a tiny model, the steps each stage gives each task
are those of the plan, every stage is scored; a run resumed from a mid-stage checkpoint
continues bit-exactly (stage, step in stage, sampler, loss weighting and optimizer state)."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.checkpoint import LATEST, checkpoints
from ernie_cpt.training.run_log import read_records
from schedules import ScheduleOptions, build_schedule

pytestmark = pytest.mark.slow

TASKS = ["knowledge_masking", "capitalization", "sentence_reordering"]


def _args(sample_dir, run_dir, *extra):
    return ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]],
            "--output-dir", str(run_dir), "--tasks", *TASKS, "--model-size", "tiny", "--batch-size", "8",
            "--learning-rate", "1e-3", "--logging-steps", "1", "--eval-steps", "0", "--vocab-size", "3000",
            "--seed", "3", *extra]


@pytest.mark.parametrize("schedule", ["continual", "joint", "sequential", "pairwise"])
def test_each_curriculum_trains_the_planned_steps(schedule, sample_dir, tmp_path):
    run_dir = tmp_path / schedule
    assert main(_args(sample_dir, run_dir, "--schedule", schedule, "--steps-per-task", "12")) == 0
    stages = build_schedule(ScheduleOptions(schedule=schedule, steps_per_task=12), TASKS, 0)
    trained = Counter((r["stage"], r["task"]) for r in read_records(run_dir, "train"))
    assert trained == Counter({(i, task): n for i, stage in enumerate(stages) for task, n in stage.steps.items()})
    # Every stage ends with a score of every task trained so far (all three have held-out sets).
    scored = {(r["stage"], r["task"]) for r in read_records(run_dir, "eval") if r["stage_end"]}
    assert scored == {(i, task) for i in range(len(stages)) for earlier in stages[:i + 1] for task in earlier.steps
                      if earlier.steps[task] > 0}


def _interrupt_at(run_dir, step):
    """Make ``run_dir`` look like a run killed just after its checkpoint at ``step``."""
    for path in checkpoints(run_dir):
        if int(path.name.split("-")[1]) > step:
            shutil.rmtree(path)
    (run_dir / "checkpoints" / LATEST).write_text(f"step-{step:08d}\n")


@pytest.mark.parametrize("mixing", [
    ["--task-mixing", "all", "--loss-weighting", "gradnorm"],
    ["--task-mixing", "all", "--loss-weighting", "dwa", "--dwa-window", "2"],
    ["--task-sampling", "size", "--reset-optimizer"],
    ["--task-mixing", "all", "--loss-weighting", "pcgrad"],  # a random projection order per step
    ["--task-mixing", "all", "--loss-weighting", "nash_mtl"],  # warm-started from the previous weights
    ["--task-mixing", "all", "--loss-weighting", "famo"],  # logits and their Adam state
], ids=["all-gradnorm", "all-dwa", "sample-size-reset", "all-pcgrad", "all-nash_mtl", "all-famo"])
def test_resume_mid_stage_continues_bit_exactly(mixing, sample_dir, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    args = ["--schedule", "sequential", "--steps-per-task", "12", "--save-steps", "7", "--save-total-limit", "10",
            *mixing]
    assert main(_args(sample_dir, reference, *args)) == 0
    shutil.copytree(reference, resumed)
    _interrupt_at(resumed, 7)  # stage 2 of 3, part-way through it
    assert read_records(resumed, "train")[6]["stage"] == 1
    assert main([*_args(sample_dir, resumed, *args), "--resume"]) == 0
    for kind in ("train", "eval", "weights"):
        expected = [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(reference, kind)]
        assert [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(resumed, kind)] == expected


def test_shared_task_id_puts_every_task_on_id_0(sample_dir, tmp_path):
    import json

    own, shared = tmp_path / "own", tmp_path / "shared"
    assert main(_args(sample_dir, own, "--steps-per-task", "2")) == 0
    assert main(_args(sample_dir, shared, "--steps-per-task", "2", "--shared-task-id")) == 0
    ids = {"knowledge_masking": 0, "capitalization": 1, "sentence_reordering": 3}
    for run in (own, shared):  # the run's task ids (and its random streams) are the same; the rows differ
        assert json.loads((run / "tasks.json").read_text()) == {"task_ids": ids, "task_embedding_size": 7}
    assert json.loads((own / "architecture.json").read_text())["task_ids"] == ids
    assert json.loads((shared / "architecture.json").read_text())["task_ids"] == dict.fromkeys(TASKS, 0)
    # The task embedding is what differs: the first knowledge_masking steps are identical.
    assert read_records(own, "train")[0]["loss"] == read_records(shared, "train")[0]["loss"]
    assert read_records(own, "train")[1:] != read_records(shared, "train")[1:]


def test_same_command_and_seed_give_identical_metrics(sample_dir, tmp_path):
    import json

    for name in ("first", "second"):
        assert main(_args(sample_dir, tmp_path / name, "--schedule", "continual", "--steps-per-task", "6")) == 0
    first, second = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("first", "second"))
    assert first == second and first["accuracy_matrix"][0][0] is not None
    assert read_records(tmp_path / "first", "eval") == read_records(tmp_path / "second", "eval")
