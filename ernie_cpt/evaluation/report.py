"""The report of ``ernie-cpt compare``: which variant forgets least and which transfers best.

:func:`write_report` turns the results of every (variant or baseline, seed) run into a folder:

* ``report.md`` and ``report.html`` (the same, one standalone page with the figures embedded):
  the answer, the summary table (means with 95 % intervals over seeds, the baselines beside the
  variants), the evidence plot and the learning curves on the first screen; then what each
  number means, the run setup, the requested tasks that were not trained and why (the corpus
  could not support them), the per-task numbers and every accuracy matrix;
* ``evidence.png``, ``curves.png``, ``drop.png``, ``heatmap-<variant>.png`` (matplotlib, Agg);
* ``summary.json`` (setup, per-variant estimates, tasks not trained, per-run rows), ``summary.csv`` (one row per run)
  and ``metrics/<variant>-seed<k>.json`` (each run's metrics.json).

The variants are curricula by default; ``axis`` names them otherwise (e.g. architectures).
Intervals and the answer come from :mod:`ernie_cpt.evaluation.summary`.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from ernie_cpt.evaluation.report_html import markdown_to_html
from ernie_cpt.evaluation.report_plots import curves_grid, drop_plot, evidence_plot, heatmap_plot
from ernie_cpt.evaluation.significance import Estimate, estimate
from ernie_cpt.evaluation.summary import Measure, answer, by_seed, collapsed, group, run_row, summarise
from ernie_cpt.full_disk import writing
from ernie_cpt.training.checkpoint import atomic_write_text

log = logging.getLogger(__name__)

DASH = "\u2013"  # "not defined" in a table cell
COST_DEFINITIONS = """\
- **Parameters**: every parameter of the pre-trained model (encoder, experts or columns, gates, heads), in millions.
- **Tokens/s**: training tokens (padding excluded) per second, the median over the logging windows of \
`logs/train.jsonl` (mean over seeds).
- The single-task references of FWT and the baselines run with `--architecture` (hard sharing unless set)."""
DEFINITIONS = """\
- **Drop from best to final** {metric}: per task, its best held-out score at any evaluation point (every \
`--eval-steps` and every stage end) after its training began, minus its final score; the mean over tasks. \
Defined for every {axis}, joint training included. Lower is better. The answer ranks forgetting by it.
- **Forgetting at stage ends** (Chaudhry et al. 2018): a task's best score at the end of an earlier stage \
(from the stage that first trains it) minus its final score. "{dash}": no task is scored at the end of an earlier \
stage after its training began (a single stage, as in joint training).
- **BWT**, backward transfer (Lopez-Paz & Ranzato 2017): the mean over the tasks trained before the last stage \
and not in it of (final score - score at the end of the task's last training stage). "{dash}": no such task (every \
task trains in the last stage), where it is not defined.
- **FWT**, forward transfer: a task's score at the end of the stage that first trains it, minus its score in a \
run that trains it alone from the same initialisation, seed and held-out set for as many steps (the \
single-task reference runs); the mean over tasks. Positive: what was trained before helped. (Lopez-Paz & \
Ranzato 2017 compare with an untrained model; a new task head makes that chance level, so the single-task run \
is the reference here.)
- **Average final {metric}**: the mean over tasks of the scores at the end of the last stage.
{downstream}{probes}- **Baselines**: `none`, the initialised encoder (or the `--init-from` checkpoint) with no \
pre-training; `mlm`, the masked-LM task alone (the run setup's "mlm baseline"; knowledge masking in \
ERNIE 2.0) for as many steps as each {axis} takes in all; `tfidf`, TF-IDF + \
logistic regression (scikit-learn) on the downstream set. Same model size, tokenizer, seeds and protocol.
- **Intervals**: "mean [low, high]" is the mean over seeds and its 95 % Student-t interval; the answer \
compares {axes} paired by seed (same seed: same initialisation and data order) and names a winner only where \
the paired difference's interval excludes 0. The held-out split is the same for every seed (`--split-seed`).
- **Wall time**: pre-training time of one run (mean over seeds; export and fine-tuning not included)."""


def _number(value: float | None) -> str:
    return DASH if value is None else f"{value:.3f}"


def _cell(value: Estimate | None) -> str:
    if value is None:
        return DASH
    return _number(value.mean) if value.low is None else f"{value.mean:.3f} [{value.low:.3f}, {value.high:.3f}]"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, columns padded; the first left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    rule = [":" + "-" * (widths[0] - 1), *("-" * (w - 1) + ":" for w in widths[1:])]
    lines = [header, rule, *rows]
    return "\n".join("| " + " | ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                       for i, (cell, w) in enumerate(zip(line, widths))) + " |" for line in lines)


def mean_matrix(matrices: list[list[list[float | None]]]) -> list[list[float | None]]:
    """The cell-wise mean of accuracy matrices of one shape, over the seeds that scored each cell."""
    def mean(values: list[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.mean(present) if present else None
    return [[mean([m[i][j] for m in matrices]) for j in range(len(matrices[0][i]))] for i in range(len(matrices[0]))]


def mean_curves(all_curves: list[dict[str, list[list[float]]]]) -> dict[str, list[tuple[int, float]]]:
    """Each task's curve averaged over seeds, step by step."""
    merged: dict[str, dict[int, list[float]]] = {}
    for curves in all_curves:
        for task, points in curves.items():
            for step, value in points:
                merged.setdefault(task, {}).setdefault(int(step), []).append(value)
    return {task: [(step, statistics.mean(values)) for step, values in sorted(by_step.items())]
            for task, by_step in merged.items()}


def measures(metric: str, downstream: bool, probes: bool) -> list[Measure]:
    """The summary's columns, in order; only those the runs have."""
    return [
        Measure("average_final", f"average final {metric}"),
        Measure("mean_drop", f"drop from best to final {metric}", lower_is_better=True),
        Measure("mean_forgetting", "forgetting at stage ends¹", lower_is_better=True),
        Measure("backward_transfer", "BWT²"),
        Measure("forward_transfer", "FWT"),
        *([Measure("downstream_accuracy", "downstream accuracy"),
           Measure("downstream_macro_f1", "downstream macro-F1")] if downstream else []),
        *([Measure("probe_mean", "probe accuracy")] if probes else []),
    ]


def _summary_table(groups: dict[str, list[dict[str, Any]]], estimates: dict[str, dict[str, Estimate | None]],
                   columns: list[Measure], axis: str) -> str:
    """One row per variant and baseline; comparing architectures, their parameters and tokens/s too."""
    costs = axis == "architecture"
    body = []
    for name, runs in groups.items():
        cells = []
        for m in columns:
            cell = _cell(estimates[name][m.key])
            flagged = collapsed(runs) if m.key.startswith("downstream_") else 0
            cells.append(f"collapsed ({flagged}/{len(runs)})" if flagged == len(runs) else
                         f"{cell} ({flagged}/{len(runs)} collapsed)" if flagged else cell)
        seconds = [run["pretrain_seconds"] for run in runs if run["pretrain_seconds"] is not None]
        resumed = " *" if any(r["resumed"] for r in runs) else ""
        wall = _duration(statistics.mean(seconds)) + resumed if seconds else DASH
        cost = [_millions(runs[0]["parameters"]), _rate([r["tokens_per_s"] for r in runs])] if costs else []
        body.append([name if runs[0]["kind"] == "variant" else f"{name} (baseline)", *cells, *cost, wall])
    return _table([axis, *(m.heading for m in columns), *(["parameters", "tokens/s"] if costs else []), "wall time"],
                  body)


def _millions(value: float | None) -> str:
    return DASH if value is None else f"{value / 1e6:.2f}M"


def _rate(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.mean(known):,.0f}" if known else DASH


def _per_task_table(groups: dict[str, list[dict[str, Any]]], prefix: str, tasks: list[str]) -> str:
    rows = [[name, *(_cell(estimate([v for v in by_seed(runs, f"{prefix}_{t}").values() if v is not None]))
                     for t in tasks)] for name, runs in groups.items()]
    return _table(["", *tasks], rows)


def _matrix_table(matrix: list[list[float | None]], stages: list[dict[str, int]], tasks: list[str]) -> str:
    rows = [[str(i + 1), ", ".join(f"{t} {n}" for t, n in stage.items() if n > 0) or "-",
             *(_number(value) for value in row)] for i, (row, stage) in enumerate(zip(matrix, stages))]
    return _table(["after stage", "trained (steps)", *tasks], rows)


def _save(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG at ``path``: whole, or not at all."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with writing(f"{path.name} in {path.parent}", path.parent):
            figure.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if row.get(k) is None else row[k] for k in fields} for row in rows)
    return out.getvalue()


def skipped_tasks(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each requested task some pre-training run did not train: the runs (``variant-seedK``) that
    skipped it and why (the first run's reason)."""
    skipped: dict[str, dict[str, Any]] = {}
    for result in results:
        for task, reason in (result.get("metrics") or {}).get("skipped_tasks", {}).items():
            entry = skipped.setdefault(task, {"runs": [], "reason": reason})
            entry["runs"].append(f"{result['variant']}-seed{result['seed']}")
    return skipped


def _skipped_section(results: list[dict[str, Any]]) -> list[str]:
    skipped = skipped_tasks(results)
    if not skipped:
        return []
    lines = ["## Tasks not trained", "", "Requested, but the corpus could not train them; the scores above leave them "
             "out.", ""]
    for task, entry in skipped.items():
        requested = sum(1 for result in results if task in (result.get("metrics") or {}).get("tasks", [])
                        or task in (result.get("metrics") or {}).get("skipped_tasks", {}))
        runs = f"every run ({requested})" if len(entry["runs"]) == requested else ", ".join(entry["runs"])
        lines.append(f"- **{task}**, skipped by {runs}: {entry['reason']}")
    return [*lines, ""]


def _seeds(runs: list[dict[str, Any]], key: str) -> list[tuple[float, bool]]:
    flag = key.startswith("downstream_")
    return [(run[key], flag and bool(run.get("downstream_collapsed"))) for run in runs if run.get(key) is not None]


def _figures(results: list[dict[str, Any]], groups: dict[str, list[dict[str, Any]]],
             estimates: dict[str, dict[str, Estimate | None]], transfer: Measure, metric: str, tasks: list[str],
             averaged: str, report_dir: Path) -> None:
    variants = [name for name, runs in groups.items() if runs[0]["kind"] == "variant"]
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        if result.get("metrics") and result["variant"] in variants:
            by_variant.setdefault(result["variant"], []).append(result)
    references = {}
    if "tfidf" in groups and groups["tfidf"][0].get(transfer.key) is not None:
        references["TF-IDF + logistic regression"] = groups["tfidf"][0][transfer.key]
    if transfer.key == "downstream_accuracy":
        majority = [r["downstream_majority_accuracy"] for r in groups[variants[0]] if r["downstream_majority_accuracy"]]
        if majority:
            references["majority class"] = majority[0]
    shown = [name for name in groups if name != "tfidf"]
    label = {n: n if n in variants else f"{n}\n(baseline)" for n in shown}
    _save(evidence_plot([(label[n], _seeds(groups[n], transfer.key), estimates[n][transfer.key]) for n in shown],
                        transfer.heading, [(n, _seeds(groups[n], "average_final"), estimates[n]["average_final"])
                                           for n in variants], f"average final {metric}", references,
                        f"Evidence ({averaged}): seeds as dots, mean and 95 % CI as bars"),
          report_dir / "evidence.png")
    _save(curves_grid({n: mean_curves([r["metrics"]["curves"] for r in runs]) for n, runs in by_variant.items()},
                      tasks, {n: runs[0]["metrics"]["stage_boundaries"] for n, runs in by_variant.items()}, metric,
                      averaged), report_dir / "curves.png")
    cells = {n: {**{t: estimate([v for v in by_seed(groups[n], f"drop_{t}").values() if v is not None])
                    for t in tasks}, "mean over tasks": estimates[n]["mean_drop"]} for n in variants}
    _save(drop_plot(variants, tasks, cells, metric, averaged), report_dir / "drop.png")
    matrices = {n: mean_matrix([r["metrics"]["accuracy_matrix"] for r in runs]) for n, runs in by_variant.items()}
    scale = [v for matrix in matrices.values() for row in matrix for v in row if v is not None] or [0.0, 1.0]
    for name, runs in by_variant.items():
        _save(heatmap_plot(matrices[name], runs[0]["metrics"]["stages"], tasks, metric, f"{name} ({averaged})",
                           (min(scale), max(scale))), report_dir / f"heatmap-{name}.png")


def write_report(results: list[dict[str, Any]], setup: dict[str, Any], report_dir: Path,
                 axis: tuple[str, str] = ("curriculum", "curricula")) -> Path:
    """Write the report of ``results`` (one compare result.json per variant or baseline and seed;
    variants first, all of one metric and task list) to ``report_dir``; returns report.md's path.
    ``setup`` (name -> value, lists shown comma-separated) is listed under "Run setup"."""
    report_dir = Path(report_dir)
    (report_dir / "metrics").mkdir(parents=True, exist_ok=True)
    first = next(r["metrics"] for r in results if r.get("metrics"))
    metric, tasks = first["metric"], first["tasks"]
    rows = [run_row(result) for result in results]
    groups = group(rows)
    downstream = any(row["downstream_accuracy"] is not None for row in rows)
    probes = any(row["probe_mean"] is not None for row in rows)
    columns = measures(metric, downstream, probes)
    estimates = summarise(rows, [m.key for m in columns] + [f"drop_{t}" for t in tasks])
    n_seeds = max(len(runs) for runs in groups.values())
    averaged = f"mean over {n_seeds} seeds" if n_seeds > 1 else f"seed {rows[0]['seed']}"
    transfer_key = "downstream_accuracy" if downstream else "probe_mean" if probes else "average_final"
    transfer = next(m for m in columns if m.key == transfer_key)
    _figures(results, groups, estimates, transfer, metric, tasks, averaged, report_dir)

    majority = next((r["downstream_majority_accuracy"] for r in rows if r["downstream_majority_accuracy"]), None)
    downstream_line = (f"- **Downstream accuracy / macro-F1**: the exported encoder fine-tuned on the downstream "
                       f"training set, scored on its test set (always predicting the majority class: accuracy "
                       f"{_number(majority)}). A run that predicts one class for the whole test set is *collapsed*: "
                       f"flagged, and left out of the mean and the ranking.\n" if downstream else "")
    probe_line = ("- **Probe accuracy**: the mean accuracy of linear probes (logistic regression) on frozen encoder "
                  "features, on tasks built from the held-out documents' spaCy annotations (see the per-probe table)."
                  "\n" if probes else "")
    variants = [name for name, runs in groups.items() if runs[0]["kind"] == "variant"]
    sections = [
        f"# Comparison of {axis[1]}: forgetting and transfer", "",
        answer(rows, columns[1], transfer, axis), "",
        _summary_table(groups, estimates, columns, axis[0]), "",
        f"¹ ² {DASH}: not defined for that {axis[0]} (see below).",
        *(["\\* resumed: the wall time of its last session only."] if any(r["resumed"] for r in rows) else []), "",
        "![Evidence: per-seed scores, means and 95 % intervals](evidence.png)", "",
        "![Learning curves](curves.png)", "",
        "## What the numbers mean", "",
        DEFINITIONS.format(dash=DASH, metric=metric, axis=axis[0], axes=axis[1], downstream=downstream_line,
                           probes=probe_line) + ("\n" + COST_DEFINITIONS if axis[0] == "architecture" else ""),
        "", "## Run setup", "",
        *(f"- **{name}**: {', '.join(map(str, value)) if isinstance(value, list) else value}"
          for name, value in setup.items()), "",
        *_skipped_section(results),
        f"## Per task ({averaged}, 95 % intervals)", "",
        f"Drop from best to final {metric}:", "", _per_task_table({n: groups[n] for n in variants}, "drop", tasks), "",
        "![Drop from best to final per task](drop.png)", "",
        "Forgetting at stage ends (Chaudhry et al. 2018):", "",
        _per_task_table({n: groups[n] for n in variants}, "forgetting", tasks), "",
        "Forward transfer (score when first trained, minus the single-task reference):", "",
        _per_task_table({n: groups[n] for n in variants}, "fwt", tasks), "",
    ]
    if probes:
        names = sorted({key.removeprefix("probe_") for row in rows for key in row
                        if key.startswith("probe_") and key != "probe_mean"})
        sections += ["Linear probes on frozen features (accuracy):", "",
                     _per_task_table({n: runs for n, runs in groups.items() if runs[0]["probe_mean"] is not None},
                                     "probe", names), ""]
    sections += [f"## Accuracy matrices ({metric}, {averaged})", ""]
    for name in variants:
        runs = [r for r in results if r["variant"] == name and r.get("metrics")]
        matrix = mean_matrix([r["metrics"]["accuracy_matrix"] for r in runs])
        sections += [f"### {name}", "", _matrix_table(matrix, runs[0]["metrics"]["stages"], tasks), "",
                     f"![accuracy matrix of {name}](heatmap-{name}.png)", ""]
    markdown = "\n".join(sections)
    atomic_write_text(report_dir / "report.md", markdown)
    atomic_write_text(report_dir / "report.html", markdown_to_html(markdown, report_dir, f"Comparison of {axis[1]}"))

    summary = {name: {key: None if value is None else dataclasses.asdict(value) for key, value in values.items()}
               for name, values in estimates.items()}
    atomic_write_text(report_dir / "summary.json", json.dumps(
        {"setup": setup, "variants": variants, "summary": summary, "skipped_tasks": skipped_tasks(results),
         "runs": rows}, indent=2) + "\n")
    atomic_write_text(report_dir / "summary.csv", _csv(rows))
    for result in results:
        if result.get("metrics"):
            atomic_write_text(report_dir / "metrics" / f"{result['variant']}-seed{result['seed']}.json",
                              json.dumps(result["metrics"], indent=2) + "\n")
    _remove_stale(report_dir, results, variants)
    return report_dir / "report.md"


def _remove_stale(report_dir: Path, results: list[dict[str, Any]], variants: list[str]) -> None:
    """Remove the per-run and per-variant files of an earlier report in ``report_dir`` (another --seeds or
    --schedules) that this one does not have, so that the folder holds this comparison only; say so."""
    kept = {report_dir / "metrics" / f"{r['variant']}-seed{r['seed']}.json" for r in results if r.get("metrics")}
    kept |= {report_dir / f"heatmap-{name}.png" for name in variants}
    stale = sorted(p for p in [*report_dir.glob("metrics/*.json"), *report_dir.glob("heatmap-*.png")]
                   if p not in kept)
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d file%s of an earlier report from %s, whose runs this comparison does not have: %s",
                 len(stale), "s" * (len(stale) != 1), report_dir, ", ".join(str(p.relative_to(report_dir))
                                                                           for p in stale))
