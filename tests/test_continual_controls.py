"""The continual pre-training controls on a tiny model: ``--replay`` spends its fraction of every stage's
steps on the earlier tasks (counted in logs/train.jsonl), ``--lr-schedule per-stage`` re-warms the
learning rate at every stage boundary (read from the logged rates), and a run with both resumed from a
mid-stage checkpoint continues bit-exactly."""

from __future__ import annotations

import shutil
from collections import Counter

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.checkpoint import LATEST, checkpoints
from ernie_cpt.training.run_log import read_records

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

TASKS = ["knowledge_masking", "capitalization", "sentence_reordering"]
PEAK = 1e-3


def _args(sample_dir, run_dir, *extra):
    return ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]],
            "--output-dir", str(run_dir), "--tasks", *TASKS, "--model-size", "tiny", "--batch-size", "8",
            "--max-seq-length", "64", "--learning-rate", str(PEAK), "--logging-steps", "1", "--eval-steps", "0",
            "--vocab-size", "3000", "--seed", "3", "--schedule", "continual", "--steps-per-task", "40", *extra]


def test_replay_spends_its_fraction_of_each_stage_on_earlier_tasks(sample_dir, tmp_path):
    assert main(_args(sample_dir, tmp_path / "run", "--replay", "0.05")) == 0

    # Stage 2 (capitalization, 40 steps): round(0.05 * 40) = 2 steps replay knowledge_masking. Stage 3
    # (sentence_reordering, 40): 2 steps, one for each earlier task. Every stage keeps its 40 steps.
    steps = Counter((r["stage"], r["task"]) for r in read_records(tmp_path / "run", "train"))
    assert steps == {(0, "knowledge_masking"): 40, (1, "capitalization"): 38, (1, "knowledge_masking"): 2,
                     (2, "sentence_reordering"): 38, (2, "knowledge_masking"): 1, (2, "capitalization"): 1}


def test_per_stage_schedule_rewarms_at_every_stage_boundary(sample_dir, tmp_path):
    assert main(_args(sample_dir, tmp_path / "run", "--lr-schedule", "per-stage", "--warmup-ratio", "0.1")) == 0

    # Each record's "lr" is the rate of the next step (as the Hugging Face Trainer logs it). Three stages of 40
    # optimizer steps, each: warm-up over round(0.1 * 40) = 4 steps, then linear decay to 0 over the other 36.
    lr = {r["step"]: r["lr"] for r in read_records(tmp_path / "run", "train")}
    for end in (40, 80):  # the last step of a stage: the next one starts the new stage's warm-up at 0
        assert lr[end] == 0.0
        assert lr[end - 1] == pytest.approx(PEAK * 1 / 36)  # local step 39 of 40: (40 - 39) / 36
        assert [lr[end + k] for k in (1, 2, 3, 4, 5)] == pytest.approx([PEAK * 0.25, PEAK * 0.5, PEAK * 0.75, PEAK,
                                                                        PEAK * 35 / 36])
    assert lr[120] == 0.0 and max(lr.values()) == pytest.approx(PEAK)

    assert main(_args(sample_dir, tmp_path / "whole", "--warmup-ratio", "0.1")) == 0
    whole = {r["step"]: r["lr"] for r in read_records(tmp_path / "whole", "train")}
    assert whole[40] == pytest.approx(PEAK * (120 - 40) / (120 - 12))  # one decay over 120 steps, warm-up 12


def test_replay_and_per_stage_schedule_resume_bit_exactly(sample_dir, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    extra = ["--replay", "0.05", "--lr-schedule", "per-stage", "--save-steps", "9", "--save-total-limit", "20",
             "--eval-steps", "10"]
    assert main(_args(sample_dir, reference, *extra)) == 0
    shutil.copytree(reference, resumed)
    for path in checkpoints(resumed):  # as if killed just after the checkpoint at step 54, mid stage 2
        if int(path.name.split("-")[1]) > 54:
            shutil.rmtree(path)
    (resumed / "checkpoints" / LATEST).write_text(f"step-{54:08d}\n")

    assert main([*_args(sample_dir, resumed, *extra), "--resume"]) == 0

    for kind in ("train", "eval"):
        expected = [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(reference, kind)]
        assert [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(resumed, kind)] == expected
