"""Continual-learning metrics of a run: the accuracy matrix, forgetting, backward transfer, curves.

R[i][j] is the score of task j at the end of stage i (the ``stage_end`` evaluations of
``logs/eval.jsonl``), NaN where task j was not scored then. From it:

* forgetting_j at stage ends (Chaudhry et al. 2018, "Riemannian Walk for Incremental Learning:
  Understanding Forgetting and Intransigence", ECCV): the best score task j had at the end of an
  earlier stage minus its final score. Only stages from the one that first trains j count: a
  score before any training (``--eval-untrained-tasks``) is the chance level of a random head,
  not something learnt that could be forgotten. Negative when the final score beats every earlier
  one; undefined (None) for a task first trained in the last stage, so for every task of a
  one-stage curriculum such as joint training.
* the drop from best to final: task j's best score at any evaluation point (every
  ``--eval-steps`` and every stage end) after its training began, minus its final score. It is
  defined for every curriculum, joint training included, and never negative.
* backward transfer (Lopez-Paz & Ranzato 2017, "Gradient Episodic Memory for Continual
  Learning", NeurIPS): the mean over the tasks last trained before the final stage of the final
  score minus the score at the end of the task's last training stage. Negative means later
  stages hurt earlier tasks. None where no task qualifies (every task trains in the last stage).
* the score when first trained: R at the end of the stage that first trains j, and j's steps by
  then; compare sets it against a run that trains j alone for as many steps (forward transfer).
* the average final score: the mean of R's last row.

Scores are "higher is better" metrics (accuracy, F1): forgetting is a drop in them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ernie_cpt.errors import UserError, unknown_name
from ernie_cpt.training.checkpoint import atomic_write_text, latest_name
from ernie_cpt.training.options import SCORE_METRICS
from ernie_cpt.training.run_log import read_records
from schedules.stage import Stage


def accuracy_matrix(records: list[dict[str, Any]], stages: list[dict[str, int]], tasks: list[str],
                    metric: str = "accuracy") -> np.ndarray:
    """R[i][j]: ``metric`` of ``tasks[j]`` in the evaluation at the end of stage i; NaN where the
    task was not scored then (not trained yet, no held-out set, or a metric the task lacks, such
    as F1 for knowledge masking). Records without ``stage_end`` are ignored; of two records for
    one cell (there are none unless the log was edited) the later one wins."""
    matrix = np.full((len(stages), len(tasks)), np.nan)
    column = {task: j for j, task in enumerate(tasks)}
    for record in records:
        if not record.get("stage_end") or record["task"] not in column:
            continue
        if not 0 <= record["stage"] < len(stages):
            raise UserError(f"an evaluation at step {record['step']} is of stage {record['stage'] + 1} but the "
                            f"run has {len(stages)} stages; eval.jsonl and run_config.json are of different runs")
        value = record.get(metric)
        matrix[record["stage"], column[record["task"]]] = np.nan if value is None else value
    return matrix


def _trained_stages(stages: list[dict[str, int]], task: str) -> list[int]:
    return [i for i, stage in enumerate(stages) if stage.get(task, 0) > 0]


def last_trained_stage(stages: list[dict[str, int]], tasks: list[str]) -> dict[str, int]:
    """The index of the last stage with steps > 0 for each task (tasks no stage trains are left out)."""
    return {task: trained[-1] for task in tasks if (trained := _trained_stages(stages, task))}


def forgetting(matrix: np.ndarray, stages: list[dict[str, int]], tasks: list[str]) -> dict[str, float | None]:
    """Chaudhry et al. 2018: f_j = max over stages i < last of R[i][j] - R[last][j], over the
    stages from the first that trains j where j was scored. None when there is no such earlier
    score (j first trained in the last stage, a single stage, never trained) or no final score."""
    result: dict[str, float | None] = {}
    last = len(stages) - 1
    for j, task in enumerate(tasks):
        trained = _trained_stages(stages, task)
        earlier = matrix[trained[0]:last, j] if trained and last > 0 else np.array([])
        earlier = earlier[~np.isnan(earlier)]
        final = matrix[last, j] if last >= 0 else np.nan
        result[task] = None if earlier.size == 0 or np.isnan(final) else float(earlier.max() - final)
    return result


def mean_of(per_task: dict[str, float | None]) -> float | None:
    """The mean over the tasks that have a value; None when none has one (for forgetting at stage
    ends: a curriculum that trains every task in its last stage, such as joint training)."""
    values = [value for value in per_task.values() if value is not None]
    return float(np.mean(values)) if values else None


def backward_transfer(matrix: np.ndarray, stages: list[dict[str, int]], tasks: list[str]) -> float | None:
    """Lopez-Paz & Ranzato 2017: the mean over tasks j last trained in a stage l_j before the final
    one of R[last][j] - R[l_j][j] (tasks with either score missing are left out). Tasks trained in
    the final stage are excluded, as the original sum runs over tasks 1..T-1 (task T is learnt
    last, so it has no later training to be affected by). None when no task qualifies (a single
    stage, or every task trained in the final stage): it is not defined there, and 0 would read as
    a result."""
    last = len(stages) - 1
    column = {task: j for j, task in enumerate(tasks)}
    differences = [matrix[last, column[task]] - matrix[stage, column[task]]
                   for task, stage in last_trained_stage(stages, tasks).items() if stage < last]
    differences = [d for d in differences if not np.isnan(d)]
    return float(np.mean(differences)) if differences else None


def drop_from_best(task_curves: dict[str, list[tuple[int, float]]], stages: list[dict[str, int]],
                   boundaries: list[int]) -> dict[str, float | None]:
    """Per task: its best score at the evaluation points after its training began (steps past the
    end of the stage before the first that trains it) minus its score at the last evaluation point
    (the end of the last stage). ``task_curves`` maps a task to its (step, score) points sorted by
    step, ``boundaries`` the optimizer step at which each stage ends. None for a task never
    trained or without a score at the end."""
    result: dict[str, float | None] = {}
    for task, points in task_curves.items():
        trained = _trained_stages(stages, task)
        start = (boundaries[trained[0] - 1] if trained[0] else 0) if trained else None
        after = [value for step, value in points if start is not None and step > start]
        final = points[-1] if points else None
        ended = final is not None and boundaries and final[0] == boundaries[-1]
        result[task] = float(max(after) - final[1]) if after and ended and final is not None else None
    return result


def first_trained(matrix: np.ndarray, stages: list[dict[str, int]], tasks: list[str]) -> dict[str, dict[str, Any]]:
    """Per task trained by some stage: ``stage``, the index of the first stage that trains it, ``steps``,
    its steps in that stage (all its steps so far), and ``score``, R at the end of that stage (None
    where not scored)."""
    result = {}
    for j, task in enumerate(tasks):
        trained = _trained_stages(stages, task)
        if trained:
            value = matrix[trained[0], j]
            result[task] = {"stage": trained[0], "steps": stages[trained[0]][task],
                            "score": None if np.isnan(value) else float(value)}
    return result


def average_final(matrix: np.ndarray) -> float:
    """The mean of R's last row over the tasks scored there; NaN when it has none."""
    final = matrix[-1][~np.isnan(matrix[-1])] if len(matrix) else np.array([])
    return float(final.mean()) if final.size else math.nan


def forward_transfer(metrics: dict[str, Any], references: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """Per task of a run's ``metrics`` (continual_metrics): its score at the end of the stage that
    first trains it minus the score of its single-task reference run (``references``: task -> that
    run's metrics) after as many steps of the task. None where either score is missing (no
    reference, or the reference was not scored at that step). Forward transfer in the sense of
    Lopez-Paz & Ranzato 2017 (the effect of what was learnt before on a new task), measured
    against a model trained on the task alone rather than an untrained one, whose new head would
    only give chance."""
    result: dict[str, float | None] = {}
    for task, first in metrics.get("first_trained", {}).items():
        reference = references.get(task)
        points = dict((int(step), value) for step, value in (reference or {}).get("curves", {}).get(task, []))
        alone = points.get(first["steps"])
        result[task] = None if first["score"] is None or alone is None else float(first["score"] - alone)
    return result


def curves(records: list[dict[str, Any]], tasks: list[str], metric: str) -> dict[str, list[tuple[int, float]]]:
    """Each task's (step, ``metric``) over every evaluation, at stage ends or every
    ``--eval-steps``, sorted by step: one point per step (a later record of the same step wins)."""
    points: dict[str, dict[int, float]] = {task: {} for task in tasks}
    for record in records:
        if record["task"] in points and record.get(metric) is not None:
            points[record["task"]][record["step"]] = float(record[metric])
    return {task: sorted(by_step.items()) for task, by_step in points.items()}


def stage_boundaries(stages: list[dict[str, int]], task_mixing: str) -> list[int]:
    """The global optimizer step at which each stage ends: stage by stage, the sum of its tasks'
    steps under ``--task-mixing sample``, the largest under ``all`` (see ``Stage.optimizer_steps``)."""
    ends = np.cumsum([Stage(steps).optimizer_steps(task_mixing) for steps in stages])
    return [int(end) for end in ends]


def _number(value: float) -> float | None:
    """A float for JSON: NaN becomes null."""
    return None if math.isnan(value) else float(value)


def _csv(rows: list[list[Any]]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def _read_run(run_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """run_config.json and the records of logs/eval.jsonl, or a UserError saying what is missing."""
    config_file = run_dir / "run_config.json"
    if not config_file.exists():
        raise UserError(f"{run_dir} is not an ernie-cpt run directory (no run_config.json); "
                        f"pass the --output-dir of a pretrain run")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if "stages" not in config:
        raise UserError(f"{config_file} has no 'stages' (written by an older ernie-cpt); re-run pretrain")
    records = read_records(run_dir, "eval")
    last = len(config["stages"]) - 1
    if not any(r.get("stage_end") and r["stage"] == last for r in records):
        if not config["stages"][-1]:  # recorded by an ernie-cpt that let a budget leave stages without a step
            raise UserError(f"the last stage of the run in {run_dir} has no step, so it was never evaluated; run it "
                            f"again with a budget that fills its curriculum (see ernie-cpt plan) in a new "
                            f"--output-dir")
        if _finished(run_dir, len(config["stages"])):
            raise UserError(f"the run in {run_dir} finished without a held-out evaluation at the end of its last "
                            f"stage (--eval-fraction {config.get('eval_fraction')}: no task gave examples on the "
                            f"held-out documents); run it again with a larger --eval-fraction in a new --output-dir")
        raise UserError(f"{run_dir}/logs/eval.jsonl has no evaluation at the end of the last stage "
                        f"({last + 1}): the run has not finished; finish it with pretrain --resume")
    return config, records


def _finished(run_dir: Path, stages: int) -> bool:
    """Whether the latest checkpoint of the run in ``run_dir`` was written after its last stage."""
    name = latest_name(run_dir)
    if name is None:
        return False
    try:
        state = json.loads((run_dir / "checkpoints" / name / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return state.get("stage", 0) >= stages


def continual_metrics(run_dir: Path, metric: str = "accuracy") -> dict[str, Any]:
    """Compute every metric above for the run in ``run_dir`` from its run_config.json and
    logs/eval.jsonl, and write them to ``run_dir``:

    * ``metrics.json``: schedule, task_mixing, seed, tasks, stages, metric, accuracy_matrix
      (rows = stages, null where not scored), forgetting (at stage ends, per task, null where
      undefined), mean_forgetting, drop_from_best (per task), mean_drop, backward_transfer (null
      where undefined), first_trained, average_final, curves ({task: [[step, value], ...]}),
      stage_boundaries and skipped_tasks (requested tasks the corpus could not train -> why);
    * ``accuracy_matrix.csv``: ``stage,<task>,...``, one row per stage (numbered from 1), empty
      cells where not scored;
    * ``curves.csv``: ``step,task,<metric>``, task by task, step by step.

    Returns the content of ``metrics.json``. ``metric`` is ``accuracy`` or ``f1``.
    """
    if metric not in SCORE_METRICS:
        raise unknown_name("metric", metric, SCORE_METRICS)
    run_dir = Path(run_dir)
    config, records = _read_run(run_dir)
    stages, tasks = config["stages"], config["tasks"]
    matrix = accuracy_matrix(records, stages, tasks, metric)
    per_task = forgetting(matrix, stages, tasks)
    task_curves = curves(records, tasks, metric)
    boundaries = stage_boundaries(stages, config["task_mixing"])
    drops = drop_from_best(task_curves, stages, boundaries)
    metrics = {
        "schedule": config["schedule"],
        "task_mixing": config["task_mixing"],
        "seed": config["seed"],
        "tasks": tasks,
        "stages": stages,
        "metric": metric,
        "accuracy_matrix": [[_number(value) for value in row] for row in matrix],
        "forgetting": per_task,
        "mean_forgetting": mean_of(per_task),
        "drop_from_best": drops,
        "mean_drop": mean_of(drops),
        "backward_transfer": backward_transfer(matrix, stages, tasks),
        "first_trained": first_trained(matrix, stages, tasks),
        "average_final": _number(average_final(matrix)),
        "curves": {task: [[step, value] for step, value in points] for task, points in task_curves.items()},
        "stage_boundaries": boundaries,
        "skipped_tasks": config.get("skipped_tasks", {}),
    }
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2) + "\n")
    matrix_rows = [[i + 1, *("" if value is None else value for value in row)]
                   for i, row in enumerate(metrics["accuracy_matrix"])]
    atomic_write_text(run_dir / "accuracy_matrix.csv", _csv([["stage", *tasks], *matrix_rows]))
    curve_rows = [[step, task, value] for task, points in task_curves.items() for step, value in points]
    atomic_write_text(run_dir / "curves.csv", _csv([["step", "task", metric], *curve_rows]))
    return metrics
