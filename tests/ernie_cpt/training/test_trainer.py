"""The training loop, driven with a stub model and stub streams (``stub_training``): stages and their
evaluations, task mixing, gradient accumulation, checkpoints and resumption, the log's cadence, and
SIGTERM. The non-finite steps are in ``test_nonfinite.py``; the real model and data in the end-to-end
tests (``tests/test_kill_resume.py``, ``tests/test_end_to_end.py``)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from stub_training import StubModel, StubStream, stub_trainer

from ernie_cpt import interrupt
from ernie_cpt.training.checkpoint import checkpoints, read_checkpoint, stage_end
from ernie_cpt.training.run_log import read_records
from ernie_cpt.training.train_state import TrainState
from ernie_cpt.training.trainer import train
from ernie_cpt.weighting import build_weighting
from ernie_cpt.weighting.dwa import DWAOptions
from schedules.sampling import get_sampler
from schedules.stage import Stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def records(run_dir: Path, kind: str = "train") -> list[dict]:
    """The run's records without the throughput, which differs between runs."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, kind)]


def held_out(*tasks: str) -> dict[str, list[dict[str, torch.Tensor]]]:
    return {task: [StubStream(task, seed=99).batch(i) for i in range(2)] for task in tasks}


def test_stages_run_in_order_and_each_stage_end_is_scored_and_kept(tmp_path):
    schedule = [Stage({"a": 2}), Stage({"a": 0, "b": 0}), Stage({"a": 1, "b": 2})]  # the middle one has no steps
    trainer = stub_trainer(tmp_path, schedule, eval_batches=held_out("a", "b"), args={"save_total_limit": 1})

    final = train(trainer)

    assert [(r["step"], r["stage"]) for r in records(tmp_path)] == [(1, 0), (2, 0), (3, 2), (4, 2), (5, 2)]
    evals = records(tmp_path, "eval")
    assert [(r["step"], r["stage"], r["task"], r["stage_end"]) for r in evals] == \
        [(2, 0, "a", True), (5, 2, "a", True), (5, 2, "b", True)]  # b, untrained at the first stage end, unscored
    assert final == {r["task"]: {k: v for k, v in r.items() if k not in ("step", "stage", "task", "stage_end",
                                                                         "trained")} for r in evals[1:]}
    # every stage end is kept besides the last checkpoint (--save-total-limit 1), marked with its stage from 1
    assert {c.name: stage_end(c) for c in checkpoints(tmp_path)} == {"step-00000002": 1, "step-00000005": 3}
    assert {task: stream.position for task, stream in trainer.streams.items()} == {"a": 3, "b": 2}


@pytest.mark.parametrize("untrained", [False, True])
def test_evaluation_every_eval_steps_scores_the_tasks_trained_so_far(tmp_path, untrained):
    trainer = stub_trainer(tmp_path, [Stage({"a": 3}), Stage({"b": 3})], eval_batches=held_out("a", "b"),
                           eval_steps=2, eval_untrained_tasks=untrained)

    train(trainer)

    scored = [(r["step"], r["task"], r["trained"], r["stage_end"]) for r in records(tmp_path, "eval")]
    expected = [(2, "a", True, False), (3, "a", True, True), (4, "a", True, False), (4, "b", True, False),
                (6, "a", True, True), (6, "b", True, True)]
    if untrained:
        expected[:2] = [(2, "a", True, False), (2, "b", False, False), (3, "a", True, True), (3, "b", False, True)]
    assert scored == expected


@pytest.mark.parametrize("policy", ["remaining", "uniform", "size"])
def test_sample_mixing_trains_the_task_the_sampler_draws_and_meets_every_budget(tmp_path, policy):
    schedule = [Stage({"a": 4, "b": 2, "c": 1}), Stage({"a": 1, "c": 3})]
    streams = {task: StubStream(task, size=size) for task, size in (("a", 10), ("b", 400), ("c", 40))}
    sampler = get_sampler(policy)
    trainer = stub_trainer(tmp_path, schedule, streams=streams, sampler=sampler, sampling_temperature=1.0,
                           args={"seed": 3})

    train(trainer)

    trained = [r["task"] for r in records(tmp_path)]
    drawn, step = [], 0  # what the sampler draws with a generator per (seed, stage, step): what resumption needs
    for index, stage in enumerate(schedule):
        left = dict(stage.steps)
        while sum(left.values()):
            task = sampler(left, {"a": 10, "b": 400, "c": 40}, 1.0, np.random.default_rng([3, index, step]))
            left[task], step = left[task] - 1, step + 1
            drawn.append(task)
    assert trained == drawn
    assert Counter(trained[:7]) == {"a": 4, "b": 2, "c": 1} and Counter(trained[7:]) == {"a": 1, "c": 3}
    assert {task: stream.position for task, stream in streams.items()} == {"a": 5, "b": 2, "c": 4}


@pytest.mark.parametrize("weighting", [None, "uncertainty"])
def test_all_mixing_trains_every_task_with_steps_left_in_every_step(tmp_path, weighting):
    combine = build_weighting(weighting, ["a", "b"]) if weighting else None
    trainer = stub_trainer(tmp_path, [Stage({"a": 3, "b": 1})], task_mixing="all", weighting=combine)

    train(trainer)

    logged = records(tmp_path)
    assert [(r["step"], r["task"], sorted(r["losses"])) for r in logged] == \
        [(1, "a+b", ["a", "b"]), (2, "a", ["a"]), (3, "a", ["a"])]
    assert all(r["loss"] == sum(r["losses"].values()) for r in logged)
    assert {task: stream.position for task, stream in trainer.streams.items()} == {"a": 3, "b": 1}
    weights = records(tmp_path, "weights")
    if weighting is None:
        assert weights == []
    else:  # uncertainty's weights exp(-s) start at 1 (s = log sigma^2 = 0); AdamW trains s with the model
        assert [sorted(r["weights"]) for r in weights] == [["a", "b"], ["a"], ["a"]]
        assert weights[0]["weights"] == {"a": 1.0, "b": 1.0} and weights[1]["weights"]["a"] != 1.0


def test_a_weighting_needs_every_task_in_the_step(tmp_path):
    with pytest.raises(ValueError, match="task_mixing 'all'"):
        stub_trainer(tmp_path, [Stage({"a": 1, "b": 1})], task_mixing="sample",
                     weighting=build_weighting("dwa", ["a", "b"]))


def test_accumulated_micro_batches_give_the_update_of_their_union(tmp_path):
    """Two micro-batches of 4 examples against one batch of the same 8 (no dropout, whose masks differ with
    the batch's shape): the same losses and updates, up to the order of float sums."""
    runs = {}
    for name, batch_size, accumulated in (("one", 8, 1), ("two", 4, 2)):
        trainer = stub_trainer(tmp_path / name, [Stage({"a": 3})], model=StubModel(["a"], dropout=0.0),
                               streams={"a": StubStream("a", batch_size=batch_size)},
                               args={"grad_accum_steps": accumulated, "max_grad_norm": 0.1})
        train(trainer)
        runs[name] = trainer

    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    for key in ("loss", "grad_norm", "lr"):
        assert [r[key] for r in two] == pytest.approx([r[key] for r in one], rel=1e-5)
    assert one[0]["grad_norm"] > 0.1  # clipped: the clipping acts on the accumulated gradient
    for (name, p1), (_, p2) in zip(runs["one"].model.named_parameters(), runs["two"].model.named_parameters()):
        assert torch.allclose(p1, p2, atol=1e-6), name
    assert runs["one"].streams["a"].position == 3 and runs["two"].streams["a"].position == 6


@pytest.mark.parametrize("weighting", [None, "dwa"])
def test_a_run_resumed_from_a_checkpoint_continues_as_the_uninterrupted_run(tmp_path, weighting):
    """Dropout on, tasks drawn by the sampler (or all with DWA, which keeps a loss history): resumed from
    step 4 with a new model and new streams, the run logs and saves what the uninterrupted one did."""
    schedule = [Stage({"a": 3, "b": 2}), Stage({"b": 2, "c": 2})]
    mixing = "sample" if weighting is None else "all"

    def trainer(run_dir):
        combine = build_weighting(weighting, ["a", "b", "c"], DWAOptions(dwa_window=1)) if weighting else None
        return stub_trainer(run_dir, schedule, task_mixing=mixing, weighting=combine,
                            args={"save_steps": 2, "save_total_limit": 10}, eval_batches=held_out("a", "b", "c"))

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    train(trainer(reference))
    shutil.copytree(reference, resumed)
    for path in checkpoints(resumed):
        if path.name > "step-00000004":
            shutil.rmtree(path)

    train(trainer(resumed), (resumed / "checkpoints" / "step-00000004",
                             read_checkpoint(resumed / "checkpoints" / "step-00000004")))

    for kind in ("train", "eval", "weights", "routing"):
        assert records(resumed, kind) == records(reference, kind), kind
    assert [c.name for c in checkpoints(resumed)] == [c.name for c in checkpoints(reference)]
    for theirs, ours in zip(checkpoints(reference), checkpoints(resumed)):
        assert (ours / "trainer_state.json").read_text() == (theirs / "trainer_state.json").read_text()
        assert (ours / "model.safetensors").read_bytes() == (theirs / "model.safetensors").read_bytes()


def test_the_train_state_round_trips_and_the_checkpoint_keeps_its_format(tmp_path):
    state = TrainState(step=7, stage=1, done={"a": 2}, nonfinite_steps=1, empty_batches={"b": 1})
    again = TrainState()
    again.load_state_dict(json.loads(json.dumps(state.state_dict())))
    assert again.state_dict() == state.state_dict()
    older = TrainState()  # a checkpoint from before non-finite steps and empty batches were counted
    older.load_state_dict({"step": 5, "stage": 0, "done": {"a": 5}, "streams": {"a": {"epoch": 0, "position": 5}}})
    assert (older.step, older.stage, older.done, older.nonfinite_steps, older.empty_batches) == (5, 0, {"a": 5}, 0, {})

    train(stub_trainer(tmp_path, [Stage({"a": 2}), Stage({"b": 1})], args={"save_steps": 1}))
    saved = json.loads((tmp_path / "checkpoints" / "step-00000002" / "trainer_state.json").read_text())
    assert saved == {"step": 2, "stage": 1, "done": {}, "nonfinite_steps": 0, "empty_batches": {},
                     "streams": {"a": {"epoch": 0, "position": 2}, "b": {"epoch": 0, "position": 0}}, "stage_end": 1}
    assert "stage_end" not in read_checkpoint(tmp_path / "checkpoints" / "step-00000001")[2]


@pytest.mark.parametrize("reset", [False, True])
def test_reset_optimizer_clears_adams_moments_at_every_stage_end(tmp_path, reset):
    train(stub_trainer(tmp_path, [Stage({"a": 2}), Stage({"a": 2})], reset_optimizer=reset,
                       args={"save_steps": 1, "save_total_limit": 10}))

    def moments(step):
        return read_checkpoint(tmp_path / "checkpoints" / f"step-{step:08d}")[1]["optimizer"]["state"]

    assert {int(s["step"]) for s in moments(1).values()} == {1}
    assert (moments(2) == {}) == reset  # saved after the stage ended
    assert {int(s["step"]) for s in moments(3).values()} == {1 if reset else 3}


def test_train_records_every_logging_steps_and_routing_at_records_and_checkpoints(tmp_path):
    train(stub_trainer(tmp_path, [Stage({"a": 7})], args={"logging_steps": 3, "save_steps": 4}))

    logged = records(tmp_path)
    assert [r["step"] for r in logged] == [3, 6, 7]  # and the last step
    assert all(r["lr"] > 0 and r["grad_norm"] > 0 and r["task"] == "a" for r in logged[:2])
    assert logged[-1]["lr"] == 0.0  # linear decay to 0 at the end
    routing = [(r["step"], r["weights"]["forward_passes"]) for r in records(tmp_path, "routing")]
    assert routing == [(3, 3.0), (4, 1.0), (6, 2.0), (7, 1.0)]  # the passes since the last record
    assert [c.name for c in checkpoints(tmp_path)] == ["step-00000004", "step-00000007"]


def test_sigterm_stops_at_the_end_of_its_step_with_a_checkpoint_and_resumes_bit_exactly(tmp_path):
    reference, stopped = tmp_path / "reference", tmp_path / "stopped"
    schedule = [Stage({"a": 6})]
    train(stub_trainer(reference, schedule, args={"logging_steps": 2}))

    with pytest.raises(interrupt.Interrupted) as caught:  # a real SIGTERM to this process, in step 3's next()
        train(stub_trainer(stopped, schedule, streams={"a": StubStream("a", sigterm_at=(2,))},
                           args={"logging_steps": 2}))

    assert (caught.value.step, caught.value.saved) == (3, "step-00000003")
    assert [c.name for c in checkpoints(stopped)] == ["step-00000003"]
    assert [r["step"] for r in records(stopped)] == [2]
    # the routing means since the last record go with the checkpoint, as at every checkpoint
    assert [(r["step"], r["weights"]["forward_passes"]) for r in records(stopped, "routing")] == [(2, 2.0), (3, 1.0)]
    checkpoint = stopped / "checkpoints" / "step-00000003"
    train(stub_trainer(stopped, schedule, args={"logging_steps": 2}), (checkpoint, read_checkpoint(checkpoint)))
    assert records(stopped) == records(reference)
    final = "checkpoints/step-00000006/model.safetensors"
    assert (stopped / final).read_bytes() == (reference / final).read_bytes()
