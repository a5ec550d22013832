"""Numerical safety: a step whose loss is NaN or inf is skipped (no update, a warning, a "skipped"
record); more than --max-nonfinite-steps of them stop the run with a UserError (exit code 2 from the
CLI) and its last good checkpoint intact; a run with skipped steps resumes bit-exactly.

The real loop runs on the stub model and streams of ``stub_training``: the batch a stream yields at
a chosen position carries a NaN or inf factor that the model multiplies its loss by. The stream's
position is part of the checkpoint, so a resumed run meets the same bad batches.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from stub_training import INF, NAN, StubStream, stub_trainer

from ernie_cpt.errors import UserError
from ernie_cpt.training.checkpoint import LATEST, checkpoints, read_checkpoint
from ernie_cpt.training.run_log import read_records
from ernie_cpt.training.trainer import train
from ernie_cpt.weighting import build_weighting
from ernie_cpt.weighting.dwa import DWAOptions
from schedules.stage import Stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EIGHT_STEPS = [Stage({"a": 8})]


def at(run_dir, step):
    """(weights, training state, trainer state) of the run's checkpoint of ``step``."""
    return read_checkpoint(run_dir / "checkpoints" / f"step-{step:08d}")


def run(run_dir, bad, **args):
    """Eight steps of task a, its batches at positions ``bad`` (step - 1) poisoned, a checkpoint every step."""
    return stub_trainer(run_dir, EIGHT_STEPS, streams={"a": StubStream("a", bad=bad)},
                        args={"save_steps": 1, "save_total_limit": 10, **args})


def test_a_nonfinite_step_is_skipped_and_logged(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        train(run(tmp_path, {2: NAN, 4: INF}))

    records = read_records(tmp_path, "train")
    assert [r["step"] for r in records if r.get("skipped")] == [3, 5]
    assert [r["step"] for r in records] == list(range(1, 9))
    assert all(torch.isfinite(torch.tensor(r["loss"])) != r.get("skipped", False) for r in records)
    assert "step 3 (a): loss {'a': nan}, gradient norm nan; step skipped (1 of at most 10)" in caplog.text
    assert "step 5 (a): loss {'a': inf}" in caplog.text and "step skipped (2 of at most 10)" in caplog.text
    for skipped in (3, 5):  # no parameter moved in a skipped step, one did in the next
        before, after, next_step = (at(tmp_path, s)[0] for s in (skipped - 1, skipped, skipped + 1))
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert not all(torch.equal(after[k], next_step[k]) for k in after)
    _, training_state, trainer_state = at(tmp_path, 8)
    assert trainer_state["nonfinite_steps"] == 2
    assert {int(s["step"]) for s in training_state["optimizer"]["state"].values()} == {6}  # 8 steps, 2 skipped
    assert trainer_state["streams"]["a"]["position"] == 8  # a skipped step's batches are used up


def test_too_many_nonfinite_steps_stop_with_the_last_good_checkpoint(tmp_path):
    with pytest.raises(UserError) as stopped:
        train(run(tmp_path, {2: NAN, 4: NAN}, save_steps=2, max_nonfinite_steps=1, learning_rate=1e-3))

    assert str(stopped.value) == (
        "the loss or gradient norm was NaN/inf in 2 steps (the last: step 5, a loss nan, gradient norm nan), more "
        "than --max-nonfinite-steps 1; the last good checkpoint is step-00000004, intact: lower --learning-rate "
        "(now 0.001) and start a new run, or --resume with a higher --max-nonfinite-steps")
    assert [p.name for p in checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]
    assert (tmp_path / "checkpoints" / LATEST).read_text() == "step-00000004\n"
    at(tmp_path, 4)
    assert [r["step"] for r in read_records(tmp_path, "train")][-1] == 5


def test_too_many_nonfinite_steps_before_any_checkpoint_say_so(tmp_path):
    with pytest.raises(UserError, match="the last good checkpoint is none \\(none was saved\\), intact"):
        train(run(tmp_path, {0: NAN}, save_steps=4, max_nonfinite_steps=0))
    assert checkpoints(tmp_path) == []


def test_a_run_with_skipped_steps_resumes_bit_exactly(tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    train(run(reference, {2: NAN, 5: NAN}, max_nonfinite_steps=2))
    shutil.copytree(reference, resumed)
    for path in checkpoints(resumed)[4:]:
        shutil.rmtree(path)

    train(run(resumed, {2: NAN, 5: NAN}, max_nonfinite_steps=2),
          (resumed / "checkpoints" / "step-00000004", at(resumed, 4)))

    def strip(run_dir):
        return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, "train")]

    assert str(strip(resumed)) == str(strip(reference))  # str: NaN != NaN
    assert [r["step"] for r in strip(resumed) if r.get("skipped")] == [3, 6]
    assert at(resumed, 8)[2]["nonfinite_steps"] == 2
    final = "checkpoints/step-00000008/model.safetensors"
    assert (resumed / final).read_bytes() == (reference / final).read_bytes()


def test_a_skipped_step_leaves_the_loss_weighting_as_it_was(tmp_path):
    """DWA records every step's losses in ``combine``: a skipped step's NaN would stay in its history."""
    weighting = build_weighting("dwa", ["a", "b"], DWAOptions(dwa_window=1))
    streams = {"a": StubStream("a"), "b": StubStream("b", bad={1: NAN})}

    train(stub_trainer(tmp_path, [Stage({"a": 4, "b": 4})], streams=streams, weighting=weighting, task_mixing="all",
                       args={"save_steps": 1, "save_total_limit": 10}))

    assert [r["step"] for r in read_records(tmp_path, "train") if r.get("skipped")] == [2]
    weights = read_records(tmp_path, "weights")
    assert [r["step"] for r in weights] == [1, 3, 4]  # none for the skipped step
    assert all(torch.isfinite(torch.tensor(list(r["weights"].values()))).all() for r in weights)
    history = {step: at(tmp_path, step)[1]["weighting"] for step in (1, 2, 3)}
    assert str(history[2]) == str(history[1]) != str(history[3])  # restored in step 2, moved on in step 3


def test_a_batch_with_nothing_to_score_costs_nothing_and_is_counted(tmp_path, caplog):
    """A batch without a target (every label -100): loss 0, not NaN; the step is not skipped (even with
    --max-nonfinite-steps 0) and the batch is counted in the train record."""
    streams = {"a": StubStream("a", empty_at=(1, 2))}

    with caplog.at_level(logging.WARNING):
        train(stub_trainer(tmp_path, EIGHT_STEPS, streams=streams, args={"max_nonfinite_steps": 0}))

    records = read_records(tmp_path, "train")
    assert not any(r.get("skipped") for r in records) and "NaN" not in caplog.text
    assert [(r["step"], r["loss"], r["grad_norm"], r.get("empty_batches")) for r in records[1:3]] == \
        [(2, 0.0, 0.0, {"a": 1}), (3, 0.0, 0.0, {"a": 1})]
    assert all("empty_batches" not in r for r in records[3:]) and records[3]["loss"] > 0
