"""The report of ``ernie-cpt compare``: which curriculum (or sharing architecture) forgets least
and which transfers best.

:func:`write_report` turns the results of every (curriculum, seed) run into a folder; comparing
architectures (``compared="architecture"``, one curriculum), every (architecture, seed) run, with
each architecture's parameter count and training tokens/s in the summary table, and the files
below named by architecture instead of curriculum:

* ``report.md``: the answer in one sentence, the summary table (mean ± std over seeds), what
  each metric means, the run setup, then per curriculum its accuracy matrix with a heatmap and
  its learning curves, and the forgetting chart;
* ``heatmap-<schedule>.png``, ``curves-<schedule>.png``, ``forgetting.png`` (matplotlib, Agg);
* ``summary.json`` (setup, per-curriculum mean/std, per-run rows), ``summary.csv`` (one row per
  curriculum and seed) and ``metrics/<schedule>-seed<k>.json`` (each run's metrics.json).

Accuracy matrices, learning curves and per-task forgetting are the mean over seeds (a cell a
seed did not score is left out of its mean); "±" is the sample standard deviation over seeds
(n - 1), as in ``ernie-cpt finetune``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ernie_cpt.evaluation.report_plots import curves_plot, forgetting_plot, heatmap_plot
from ernie_cpt.training.checkpoint import atomic_write_text

# Per-run numbers summarised over seeds, with their column heading in report.md.
SUMMARY = {
    "average_final": "average final {metric}",
    "mean_forgetting": "mean forgetting",
    "backward_transfer": "BWT",
    "downstream_accuracy": "downstream accuracy",
    "downstream_macro_f1": "downstream macro-F1",
}
# What compare compares -> the key of a result that names its group.
GROUP_KEY = {"curriculum": "schedule", "architecture": "architecture"}
COST_DEFINITIONS = """\
- **Parameters**: every parameter of the pre-trained model (encoder, experts or columns, gates, heads), in millions.
- **Tokens/s**: training tokens (padding excluded) per second, the median over the logging windows of \
`logs/train.jsonl` (mean over seeds).
"""
DEFINITIONS = """\
- **Accuracy matrix** R[i][j]: held-out {metric} of task j after stage i; "-" where it was not scored (not trained yet).
- **Average final {metric}**: the mean over tasks of the last row of R.
- **Forgetting** (Chaudhry et al. 2018): a task's best score after an earlier stage (counting from the stage that \
first trains it) minus its final score; the mean over the tasks that have one, 0 when none has (a single stage). \
Lower is better.
- **BWT**, backward transfer (Lopez-Paz & Ranzato 2017): the mean over tasks last trained before the final stage \
of (final score - score right after the task's last training stage); negative = later stages hurt earlier tasks.
{downstream}- **Wall time**: pre-training time of one run (mean over seeds; export and fine-tuning not included).
- **±**: sample standard deviation over seeds (n - 1); one seed shows the value alone."""


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def _std(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.stdev(present) if len(present) > 1 else None


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _mean_std(values: list[float | None]) -> str:
    mean, std = _mean(values), _std(values)
    return _number(mean) if std is None else f"{mean:.3f} ± {std:.3f}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded; the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    rule = [":" + "-" * (widths[0] - 1), *("-" * (w - 1) + ":" for w in widths[1:])]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                       for i, (cell, w) in enumerate(zip(line, widths))) + " |" for line in lines)


def run_row(result: dict[str, Any]) -> dict[str, Any]:
    """Every number of one run (a result.json of compare) as one flat row."""
    metrics, downstream = result["metrics"], result.get("downstream") or {}
    tasks = metrics["tasks"]
    return {
        "schedule": result["schedule"], "architecture": result.get("architecture"), "seed": result["seed"],
        "average_final": metrics["average_final"], "mean_forgetting": metrics["mean_forgetting"],
        "backward_transfer": metrics["backward_transfer"],
        **{f"final_{task}": metrics["accuracy_matrix"][-1][j] for j, task in enumerate(tasks)},
        **{f"forgetting_{task}": metrics["forgetting"][task] for task in tasks},
        "downstream_accuracy": downstream.get("accuracy_mean"), "downstream_macro_f1": downstream.get("macro_f1_mean"),
        "downstream_majority_accuracy": downstream.get("majority_accuracy"),
        "pretrain_seconds": result["pretrain_seconds"], "resumed": result["resumed"],
        "parameters": result.get("parameters"), "tokens_per_s": result.get("tokens_per_s"),
    }


def _groups(results: list[dict[str, Any]], key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault(result[key], []).append(result)
    return groups


def mean_matrix(matrices: list[list[list[float | None]]]) -> list[list[float | None]]:
    """The cell-wise mean of accuracy matrices of one shape, over the seeds that scored each cell."""
    return [[_mean([m[i][j] for m in matrices]) for j in range(len(matrices[0][i]))]
            for i in range(len(matrices[0]))]


def mean_curves(all_curves: list[dict[str, list[list[float]]]]) -> dict[str, list[tuple[int, float]]]:
    """Each task's curve averaged over seeds, step by step."""
    merged: dict[str, dict[int, list[float]]] = {}
    for curves in all_curves:
        for task, points in curves.items():
            for step, value in points:
                merged.setdefault(task, {}).setdefault(int(step), []).append(value)
    return {task: [(step, statistics.mean(values)) for step, values in sorted(by_step.items())]
            for task, by_step in merged.items()}


def summarise(results: list[dict[str, Any]], key: str = "schedule") -> list[dict[str, Any]]:
    """Per curriculum (per architecture with ``key="architecture"``), in the order of ``results``:
    its seeds, each SUMMARY number's mean and std over them, each task's mean forgetting, and the
    mean pre-training time, parameter count and tokens/s."""
    summaries = []
    for name, runs in _groups(results, key).items():
        rows = [run_row(run) for run in runs]
        tasks = runs[0]["metrics"]["tasks"]
        summaries.append({
            key: name, "seeds": [row["seed"] for row in rows],
            **{key: {"mean": _mean([row[key] for row in rows]), "std": _std([row[key] for row in rows])}
               for key in SUMMARY},
            "forgetting": {task: {"mean": _mean([row[f"forgetting_{task}"] for row in rows]),
                                  "std": _std([row[f"forgetting_{task}"] for row in rows])} for task in tasks},
            "pretrain_seconds": statistics.mean(row["pretrain_seconds"] for row in rows),
            "parameters": _mean([row["parameters"] for row in rows]),
            "tokens_per_s": _mean([row["tokens_per_s"] for row in rows]),
            "resumed": any(row["resumed"] for row in rows),
        })
    return summaries


def _name(summary: dict[str, Any]) -> str:
    return summary["architecture"] if "architecture" in summary else summary["schedule"]


def _best(summaries: list[dict[str, Any]], key: str, lowest: bool) -> tuple[str, float] | None:
    """The curricula (joined with "and" when tied) with the lowest/highest mean ``key``, and that value."""
    scored = [(_name(s), s[key]["mean"]) for s in summaries if s[key]["mean"] is not None]
    if not scored:
        return None
    best = (min if lowest else max)(value for _, value in scored)
    return " and ".join(name for name, value in scored if value == best), best


def answer(summaries: list[dict[str, Any]], metric: str, downstream: bool) -> str:
    """The report's first sentence: the curriculum that forgets least, and the one with the best
    downstream accuracy (the best average final score when there is no downstream set)."""
    least = _best(summaries, "mean_forgetting", lowest=True)
    first = (f"**Least forgetting: {least[0]}** (mean forgetting {least[1]:.3f})" if least
             else "No curriculum has a forgetting score")
    key, label = ("downstream_accuracy", "downstream accuracy") if downstream else \
        ("average_final", f"average final {metric}")
    top = _best(summaries, key, lowest=False)
    second = f"**best {label}: {top[0]}** ({top[1]:.3f})" if top else f"no curriculum has a {label}"
    return f"{first}; {second}."


def _summary_table(summaries: list[dict[str, Any]], rows: dict[str, list[dict[str, Any]]], metric: str,
                   downstream: bool, compared: str) -> str:
    keys = [key for key in SUMMARY if downstream or not key.startswith("downstream")]
    costs = compared == "architecture"
    header = [compared, *(SUMMARY[key].format(metric=metric) for key in keys),
              *(["parameters", "tokens/s"] if costs else []), "wall time"]
    body = [[_name(s), *(_mean_std([row[key] for row in rows[_name(s)]]) for key in keys),
             *([_millions(s["parameters"]), _count(s["tokens_per_s"])] if costs else []),
             _duration(s["pretrain_seconds"]) + (" *" if s["resumed"] else "")] for s in summaries]
    return _table(header, body)


def _millions(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}M"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _matrix_table(matrix: list[list[float | None]], stages: list[dict[str, int]], tasks: list[str]) -> str:
    rows = [[str(i + 1), ", ".join(f"{t} {n}" for t, n in stage.items() if n > 0) or "-",
             *(_number(value) for value in row)] for i, (row, stage) in enumerate(zip(matrix, stages))]
    return _table(["after stage", "trained (steps)", *tasks], rows)


def _save(figure: Figure, path: Path) -> None:
    figure.savefig(path, dpi=120, bbox_inches="tight")


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def write_report(results: list[dict[str, Any]], setup: dict[str, Any], report_dir: Path,
                 compared: str = "curriculum") -> Path:
    """Write the report of ``results`` (one compare result.json per curriculum and seed, in
    curriculum order; all of one metric and task list) to ``report_dir``; returns report.md's path.
    ``setup`` (name -> value, lists shown comma-separated) is listed under "Run setup". With
    ``compared="architecture"`` the runs are grouped by their ``architecture`` instead."""
    key = GROUP_KEY[compared]
    report_dir = Path(report_dir)
    (report_dir / "metrics").mkdir(parents=True, exist_ok=True)
    first = results[0]["metrics"]
    metric, tasks = first["metric"], first["tasks"]
    downstream = any(result.get("downstream") for result in results)
    groups, summaries = _groups(results, key), summarise(results, key)
    rows = {name: [run_row(run) for run in runs] for name, runs in groups.items()}
    n_seeds = max(len(runs) for runs in groups.values())
    averaged = f"mean over {n_seeds} seeds" if n_seeds > 1 else f"seed {first['seed']}"

    matrices = {s: mean_matrix([run["metrics"]["accuracy_matrix"] for run in runs]) for s, runs in groups.items()}
    scale = [v for matrix in matrices.values() for row in matrix for v in row if v is not None] or [0.0, 1.0]
    for name, runs in groups.items():
        stages = runs[0]["metrics"]["stages"]
        _save(heatmap_plot(matrices[name], stages, tasks, metric, f"{name} ({averaged})",
                           (min(scale), max(scale))), report_dir / f"heatmap-{name}.png")
        _save(curves_plot(mean_curves([run["metrics"]["curves"] for run in runs]), tasks,
                          runs[0]["metrics"]["stage_boundaries"], metric, f"{name} ({averaged})"),
              report_dir / f"curves-{name}.png")
    _save(forgetting_plot(summaries, tasks, metric, averaged, [_name(s) for s in summaries], compared),
          report_dir / "forgetting.png")

    majority = _mean([row["downstream_majority_accuracy"] for group in rows.values() for row in group])
    downstream_line = (f"- **Downstream accuracy / macro-F1**: the exported encoder fine-tuned on the downstream "
                       f"training set, scored on its test set (always predicting the majority class: accuracy "
                       f"{_number(majority)}).\n" if downstream else "")
    sections = [
        f"# {compared.capitalize()} comparison: forgetting and transfer", "",
        answer(summaries, metric, downstream), "",
        _summary_table(summaries, rows, metric, downstream, compared), "",
        *(["\\* resumed: the wall time of its last session only.", ""] if any(s["resumed"] for s in summaries)
          else []),
        DEFINITIONS.format(metric=metric, downstream=downstream_line)
        + ("\n" + COST_DEFINITIONS.rstrip("\n") if compared == "architecture" else ""), "",
        "## Run setup", "",
        *(f"- **{name}**: {', '.join(map(str, value)) if isinstance(value, list) else value}"
          for name, value in setup.items()), "",
        f"## Accuracy matrices ({metric}, {averaged})", "",
    ]
    for name, runs in groups.items():
        sections += [f"### {name}", "", _matrix_table(matrices[name], runs[0]["metrics"]["stages"], tasks), "",
                     f"![accuracy matrix of {name}](heatmap-{name}.png)", "",
                     f"![learning curves of {name}](curves-{name}.png)", ""]
    sections += ["## Forgetting per task", "", f"![forgetting per task and {compared}](forgetting.png)", ""]
    atomic_write_text(report_dir / "report.md", "\n".join(sections))

    atomic_write_text(report_dir / "summary.json", json.dumps(
        {"setup": setup, "curricula" if compared == "curriculum" else "architectures": summaries,
         "runs": [run_row(r) for r in results]}, indent=2) + "\n")
    atomic_write_text(report_dir / "summary.csv", _csv([run_row(r) for r in results]))
    for result in results:
        atomic_write_text(report_dir / "metrics" / f"{result[key]}-seed{result['seed']}.json",
                          json.dumps(result["metrics"], indent=2) + "\n")
    return report_dir / "report.md"
