"""Forgetting, backward transfer and average score on hand-made accuracy matrices with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ernie_cpt.errors import UserError
from ernie_cpt.evaluation.forgetting import (
    accuracy_matrix,
    average_final,
    backward_transfer,
    continual_metrics,
    curves,
    drop_from_best,
    first_trained,
    forgetting,
    forward_transfer,
    last_trained_stage,
    mean_of,
    stage_boundaries,
)

nan = math.nan
TASKS = ["a", "b", "c"]
CONTINUAL = [{"a": 10}, {"b": 10}, {"c": 10}]


def test_continual_three_tasks_by_hand():
    # a improves while b trains (0.6 -> 0.8), then drops to 0.5: forgetting counts from its best
    # score (0.8), backward transfer from its score when its training ended (0.6).
    matrix = np.array([[0.6, nan, nan],
                       [0.8, 0.9, nan],
                       [0.5, 0.7, 0.95]])
    per_task = forgetting(matrix, CONTINUAL, TASKS)
    assert per_task["a"] == pytest.approx(0.3) and per_task["b"] == pytest.approx(0.2) and per_task["c"] is None
    assert mean_of(per_task) == pytest.approx(0.25)
    assert last_trained_stage(CONTINUAL, TASKS) == {"a": 0, "b": 1, "c": 2}
    # (0.5 - 0.6 + 0.7 - 0.9) / 2; c is trained in the final stage, so it is left out
    assert backward_transfer(matrix, CONTINUAL, TASKS) == pytest.approx(-0.15)
    assert average_final(matrix) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_a_task_trained_only_in_the_last_stage_has_no_forgetting_and_no_bwt():
    # b was scored before its training (--eval-untrained-tasks): 0.4 is a random head's score, not
    # something learnt, so it is not "forgotten" (0.4 - 0.9 would give -0.5).
    stages = [{"a": 5}, {"b": 5}]
    matrix = np.array([[0.7, 0.4],
                       [0.6, 0.9]])
    per_task = forgetting(matrix, stages, ["a", "b"])
    assert per_task["b"] is None and per_task["a"] == pytest.approx(0.1)
    assert backward_transfer(matrix, stages, ["a", "b"]) == pytest.approx(-0.1)


def test_a_single_stage_has_neither_stage_end_forgetting_nor_bwt():
    stages = [{"a": 10, "b": 10}]
    matrix = np.array([[0.7, 0.8]])
    per_task = forgetting(matrix, stages, ["a", "b"])
    assert per_task == {"a": None, "b": None}
    assert mean_of(per_task) is None
    assert backward_transfer(matrix, stages, ["a", "b"]) is None
    assert average_final(matrix) == pytest.approx(0.75)


def test_sequential_every_task_in_the_final_stage_has_no_backward_transfer():
    stages = [{"a": 4}, {"a": 3, "b": 5}, {"a": 3, "b": 5, "c": 10}]
    matrix = np.array([[0.5, nan, nan],
                       [0.9, 0.6, nan],
                       [0.8, 0.7, 0.4]])
    assert last_trained_stage(stages, TASKS) == {"a": 2, "b": 2, "c": 2}
    assert backward_transfer(matrix, stages, TASKS) is None
    per_task = forgetting(matrix, stages, TASKS)
    assert per_task["a"] == pytest.approx(0.1) and per_task["b"] == pytest.approx(-0.1) and per_task["c"] is None
    assert mean_of(per_task) == pytest.approx(0.0)


def test_a_task_trained_in_several_stages_transfers_back_from_its_last_one():
    # a is trained in stages 0 and 1: l_a = 1, so BWT uses 0.7 (not 0.5, its first stage's score).
    stages = [{"a": 3}, {"a": 3, "b": 3}, {"b": 4}]
    matrix = np.array([[0.5, nan],
                       [0.7, 0.6],
                       [0.65, 0.8]])
    assert last_trained_stage(stages, ["a", "b"]) == {"a": 1, "b": 2}
    assert backward_transfer(matrix, stages, ["a", "b"]) == pytest.approx(-0.05)
    per_task = forgetting(matrix, stages, ["a", "b"])
    # b ends at its best: negative forgetting
    assert per_task["a"] == pytest.approx(0.05) and per_task["b"] == pytest.approx(-0.2)
    assert mean_of(per_task) == pytest.approx(-0.075)


def test_missing_scores_are_ignored():
    # a was not scored after stage 1; b has no final score; a task no stage trains has no value.
    matrix = np.array([[0.6, nan, nan, nan],
                       [nan, 0.9, nan, nan],
                       [0.4, nan, 0.7, nan]])
    tasks = [*TASKS, "never"]
    per_task = forgetting(matrix, CONTINUAL, tasks)
    assert per_task["a"] == pytest.approx(0.2)
    assert per_task["b"] is None and per_task["c"] is None and per_task["never"] is None
    assert mean_of(per_task) == pytest.approx(0.2)
    assert last_trained_stage(CONTINUAL, tasks) == {"a": 0, "b": 1, "c": 2}
    assert backward_transfer(matrix, CONTINUAL, tasks) == pytest.approx(-0.2)  # b is left out
    assert average_final(matrix) == pytest.approx(0.55)
    assert math.isnan(average_final(np.array([[nan, nan]])))


def test_joint_training_whose_score_falls_after_its_peak_has_a_positive_drop():
    # One stage (joint) of 30 steps, evaluated every 10: a peaks at 0.8 at step 20 and ends at 0.6; b ends at
    # its best. Stage-end forgetting is undefined for both (one stage); the drop from best to final is not.
    stages = [{"a": 15, "b": 15}]
    task_curves = {"a": [(10, 0.5), (20, 0.8), (30, 0.6)], "b": [(10, 0.3), (20, 0.4), (30, 0.45)]}
    drops = drop_from_best(task_curves, stages, [30])
    assert drops["a"] == pytest.approx(0.2) and drops["b"] == 0.0
    assert mean_of(drops) == pytest.approx(0.1)
    assert forgetting(np.array([[0.6, 0.45]]), stages, ["a", "b"]) == {"a": None, "b": None}


def test_the_drop_counts_only_evaluations_after_a_task_s_training_began():
    # continual (a 10) -> (b 10), evaluated every 5 with --eval-untrained-tasks: b's 0.9 at step 10 is an
    # untrained head's score (before stage 2 starts), so b's best is 0.7 (step 15); a's best 0.6 (step 5).
    stages = [{"a": 10}, {"b": 10}]
    task_curves = {"a": [(5, 0.6), (10, 0.55), (15, 0.5), (20, 0.4)],
                   "b": [(5, 0.9), (10, 0.9), (15, 0.7), (20, 0.65)], "never": [(20, 0.5)]}
    assert drop_from_best(task_curves, stages, [10, 20]) == pytest.approx({"a": 0.2, "b": 0.05, "never": None})
    # a score missing at the end (the run stopped early) gives no drop
    assert drop_from_best({"a": [(5, 0.6), (10, 0.55)]}, stages, [10, 20]) == {"a": None}


def test_first_trained_is_the_end_of_the_stage_that_first_trains_a_task():
    stages = [{"a": 4}, {"a": 3, "b": 5}, {"a": 3, "b": 5, "c": 10}]
    matrix = np.array([[0.5, nan, nan], [0.9, 0.6, nan], [0.8, 0.7, nan]])
    assert first_trained(matrix, stages, TASKS) == {"a": {"stage": 0, "steps": 4, "score": 0.5},
                                                    "b": {"stage": 1, "steps": 5, "score": 0.6},
                                                    "c": {"stage": 2, "steps": 10, "score": None}}


def test_forward_transfer_is_the_first_trained_score_minus_the_task_alone_at_as_many_steps():
    # sequential: b first trained in stage 2 with 5 steps, scored 0.6 then; alone it scored 0.5 after 5 steps
    # (its reference's curve has the cut at 5 and the full budget at 10). c's reference has no score at 10.
    run = {"first_trained": {"a": {"stage": 0, "steps": 4, "score": 0.5}, "b": {"stage": 1, "steps": 5, "score": 0.6},
                             "c": {"stage": 2, "steps": 10, "score": 0.7}}}
    references = {"a": {"curves": {"a": [[4, 0.45], [10, 0.7]]}}, "b": {"curves": {"b": [[5, 0.5], [10, 0.65]]}},
                  "c": {"curves": {"c": [[8, 0.6]]}}}
    assert forward_transfer(run, references) == pytest.approx({"a": 0.05, "b": 0.1, "c": None})
    assert forward_transfer(run, {}) == {"a": None, "b": None, "c": None}


def _eval(step, stage, task, accuracy, stage_end=True, **extra):
    return {"step": step, "stage": stage, "task": task, "stage_end": stage_end, "trained": True,
            "loss": 1.0, "accuracy": accuracy, **extra}


def test_accuracy_matrix_keeps_only_stage_end_evaluations():
    records = [_eval(5, 0, "a", 0.1, stage_end=False), _eval(10, 0, "a", 0.6), _eval(10, 0, "other", 0.3),
               _eval(15, 1, "a", 0.2, stage_end=False), _eval(15, 1, "b", 0.3, stage_end=False),
               _eval(20, 1, "a", 0.8), _eval(20, 1, "b", 0.9)]
    matrix = accuracy_matrix(records, [{"a": 10}, {"b": 10}], ["a", "b"])
    np.testing.assert_array_equal(matrix, [[0.6, nan], [0.8, 0.9]])


def test_accuracy_matrix_of_a_metric_a_task_lacks_is_nan():
    records = [_eval(10, 0, "a", 0.6, f1=0.5), _eval(10, 0, "b", 0.7)]  # b: masked LM, no F1
    np.testing.assert_array_equal(accuracy_matrix(records, [{"a": 5, "b": 5}], ["a", "b"], "f1"), [[0.5, nan]])


def test_accuracy_matrix_of_a_stage_the_run_does_not_have_is_a_user_error():
    with pytest.raises(UserError, match="stage 3 but the run has 2 stages"):
        accuracy_matrix([_eval(30, 2, "a", 0.5)], [{"a": 10}, {"b": 10}], ["a", "b"])


def test_curves_are_sorted_with_one_point_per_step():
    records = [_eval(20, 1, "a", 0.8), _eval(5, 0, "a", 0.1, stage_end=False), _eval(10, 0, "a", 0.6),
               _eval(20, 1, "a", 0.85), _eval(20, 1, "b", 0.9), _eval(25, 1, "x", 0.3)]
    assert curves(records, ["a", "b", "c"], "accuracy") == {
        "a": [(5, 0.1), (10, 0.6), (20, 0.85)], "b": [(20, 0.9)], "c": []}


def test_stage_boundaries_follow_the_task_mixing():
    stages = [{"a": 3}, {"a": 2, "b": 5}, {"b": 0, "c": 4}]
    assert stage_boundaries(stages, "sample") == [3, 10, 14]
    assert stage_boundaries(stages, "all") == [3, 8, 12]


def _write_run(run_dir: Path, records: list[dict]) -> None:
    (run_dir / "logs").mkdir(parents=True)
    config = {"schedule": "continual", "task_mixing": "sample", "seed": 7, "tasks": ["a", "b"],
              "stages": [{"a": 4}, {"b": 4}], "eval_steps": 2}
    (run_dir / "run_config.json").write_text(json.dumps(config), encoding="utf-8")
    (run_dir / "logs" / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_continual_metrics_writes_json_and_csv(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir, [_eval(2, 0, "a", 0.5, stage_end=False), _eval(4, 0, "a", 0.75),
                         _eval(6, 1, "a", 0.5, stage_end=False), _eval(6, 1, "b", 0.25, stage_end=False),
                         _eval(8, 1, "a", 0.625), _eval(8, 1, "b", 1.0)])
    metrics = continual_metrics(run_dir)
    expected = {
        "schedule": "continual", "task_mixing": "sample", "seed": 7, "tasks": ["a", "b"],
        "stages": [{"a": 4}, {"b": 4}], "metric": "accuracy",
        "accuracy_matrix": [[0.75, None], [0.625, 1.0]],
        "forgetting": {"a": 0.125, "b": None}, "mean_forgetting": 0.125,
        "drop_from_best": {"a": 0.125, "b": 0.0}, "mean_drop": 0.0625, "backward_transfer": -0.125,
        "first_trained": {"a": {"stage": 0, "steps": 4, "score": 0.75}, "b": {"stage": 1, "steps": 4, "score": 1.0}},
        "average_final": 0.8125,
        "curves": {"a": [[2, 0.5], [4, 0.75], [6, 0.5], [8, 0.625]], "b": [[6, 0.25], [8, 1.0]]},
        "stage_boundaries": [4, 8], "skipped_tasks": {},
    }
    assert metrics == expected
    assert json.loads((run_dir / "metrics.json").read_text(encoding="utf-8")) == expected
    assert (run_dir / "accuracy_matrix.csv").read_text(encoding="utf-8") == "stage,a,b\n1,0.75,\n2,0.625,1.0\n"
    assert (run_dir / "curves.csv").read_text(encoding="utf-8") == (
        "step,task,accuracy\n2,a,0.5\n4,a,0.75\n6,a,0.5\n8,a,0.625\n6,b,0.25\n8,b,1.0\n")


def test_a_missing_run_dir_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not an ernie-cpt run directory"):
        continual_metrics(tmp_path / "nowhere")


def test_an_unfinished_run_is_a_user_error(tmp_path):
    _write_run(tmp_path / "run", [_eval(4, 0, "a", 0.75)])
    with pytest.raises(UserError, match="no evaluation at the end of the last stage"):
        continual_metrics(tmp_path / "run")


def test_a_finished_run_without_a_last_evaluation_is_not_told_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir, [_eval(4, 0, "a", 0.75)])
    checkpoint = run_dir / "checkpoints" / "step-00000008"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(json.dumps({"step": 8, "stage": 2}), encoding="utf-8")
    (run_dir / "checkpoints" / "latest").write_text("step-00000008\n", encoding="utf-8")
    with pytest.raises(UserError, match="finished without a held-out evaluation") as error:
        continual_metrics(run_dir)
    assert "--resume" not in str(error.value)  # resuming a finished run cannot evaluate it


def test_a_run_whose_last_stage_has_no_step_is_not_told_to_resume(tmp_path):
    run_dir = tmp_path / "run"
    _write_run(run_dir, [_eval(4, 0, "a", 0.75)])
    config = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    (run_dir / "run_config.json").write_text(json.dumps({**config, "stages": [{"a": 4}, {}]}), encoding="utf-8")
    with pytest.raises(UserError, match="has no step, so it was never evaluated") as error:
        continual_metrics(run_dir)
    assert "--resume" not in str(error.value)


def test_an_unknown_metric_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="unknown metric 'loss'"):
        continual_metrics(tmp_path, metric="loss")
