"""The figures of the compare report: the evidence plot, learning curves, accuracy-matrix heatmaps, and
the drop from best to final score per task.

Each function returns a matplotlib ``Figure`` built without pyplot (no global state, no GUI
backend: saving renders with Agg).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

MAX_STAGE_LABEL = 50


def _stage_label(number: int, stage: dict[str, int]) -> str:
    """``stage 2: a, b``, or ``stage 2: 5 tasks`` when the names would make the label long."""
    tasks = [task for task, steps in stage.items() if steps > 0]
    label = f"stage {number}: " + ", ".join(tasks)
    return label if len(label) <= MAX_STAGE_LABEL else f"stage {number}: {len(tasks)} tasks"


def heatmap_plot(matrix: list[list[float | None]], stages: list[dict[str, int]], tasks: list[str], metric: str,
                 title: str, limits: tuple[float, float]) -> Figure:
    """R[stage][task] as a heatmap with each value written in its cell ("-" where not scored);
    ``limits`` fixes the colour scale, so that the heatmaps of several curricula compare."""
    values = np.array([[math.nan if v is None else v for v in row] for row in matrix], dtype=float)
    figure = Figure(figsize=(2.2 + 1.6 * len(tasks), 1.6 + 0.55 * len(stages)))
    axes = figure.subplots()
    image = axes.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=limits[0], vmax=limits[1], aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if math.isnan(value):
                axes.text(j, i, "-", ha="center", va="center", color="gray")
                continue
            light = limits[1] == limits[0] or (value - limits[0]) / (limits[1] - limits[0]) > 0.6
            axes.text(j, i, f"{value:.3f}", ha="center", va="center", color="black" if light else "white")
    axes.set_xticks(range(len(tasks)), tasks, rotation=20, ha="right")
    axes.set_yticks(range(len(stages)), [_stage_label(i + 1, stage) for i, stage in enumerate(stages)])
    axes.set_xlabel("task scored")
    axes.set_ylabel("after stage (tasks trained in it)")
    axes.set_title(f"Accuracy matrix: held-out {metric}, {title}")
    figure.colorbar(image, ax=axes, label=f"held-out {metric}")
    return figure


def _curves_on(axes: Any, curves: dict[str, list[tuple[int, float]]], tasks: list[str], boundaries: list[int],
               title: str) -> None:
    """Each task's held-out score over the optimizer steps on ``axes``, a dashed line where a stage ends."""
    for task in tasks:
        points = curves.get(task, [])
        if points:
            axes.plot([step for step, _ in points], [value for _, value in points], marker="o", markersize=2,
                      label=task)
    for end in boundaries[:-1]:
        axes.axvline(end, color="gray", linestyle="--", linewidth=0.8)
    axes.set_xlim(0, 1.02 * max(boundaries[-1] if boundaries else 1, 1))
    axes.set_title(title, fontsize=9)
    axes.grid(alpha=0.3)


def curves_grid(curves: dict[str, dict[str, list[tuple[int, float]]]], tasks: list[str],
                boundaries: dict[str, list[int]], metric: str, averaged: str) -> Figure:
    """One small panel per variant (``curves``: variant -> task -> (step, score) points, averaged
    over seeds), sharing the y axis; dashed lines mark the ends of stages."""
    columns = min(4, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure = Figure(figsize=(3.4 * columns, 2.6 * rows + 0.6), layout="constrained")
    panels = np.atleast_1d(figure.subplots(rows, columns, sharey=True, squeeze=False)).ravel()
    for axes, (name, variant_curves) in zip(panels, curves.items()):
        _curves_on(axes, variant_curves, tasks, boundaries[name], name)
    for axes in panels[len(curves):]:
        axes.set_visible(False)
    for axes in panels[::columns]:
        axes.set_ylabel(f"held-out {metric}")
    figure.supxlabel("optimizer step (dashed: end of a stage)", fontsize=9)
    figure.suptitle(f"Learning curves ({averaged})", fontsize=10)
    handles, labels = panels[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", fontsize=8)
    return figure


def _dots_and_intervals(axes: Any, groups: list[tuple[str, list[tuple[float, bool]], Any]], ylabel: str) -> None:
    """Per group (name, per-seed (value, flagged) pairs, its Estimate or None): the seeds as dots
    (flagged ones as hollow crosses, left out of the mean), the mean as a bar with its 95 % interval."""
    for x, (_, seeds, summary) in enumerate(groups):
        offsets = np.linspace(-0.15, 0.15, len(seeds)) if len(seeds) > 1 else [0.0]
        for offset, (value, flagged) in zip(offsets, seeds):
            axes.plot(x + offset, value, "x" if flagged else "o", color="gray" if flagged else "C0", alpha=0.8,
                      markersize=6 if flagged else 4)
        if summary is not None:
            lower = None if summary.low is None else [[summary.mean - summary.low], [summary.high - summary.mean]]
            axes.errorbar(x, summary.mean, yerr=lower, fmt="_", color="black", markersize=18, capsize=6,
                          elinewidth=1.5)
    axes.set_xticks(range(len(groups)), [name for name, _, _ in groups], rotation=20, ha="right", fontsize=8)
    axes.set_ylabel(ylabel)
    ends = [v for _, seeds, s in groups for v in [*(value for value, _ in seeds),
                                                  *([] if s is None or s.low is None else [s.low, s.high])]]
    if ends:  # scores are fractions: an interval past 0 or 1 (few seeds, wide spread) is cut at the frame
        pad = 0.05 * (max(ends) - min(ends) or 1.0)
        axes.set_ylim(max(min(ends) - pad, -0.02), min(max(ends) + pad, 1.02))
    axes.grid(axis="y", alpha=0.3)


def evidence_plot(transfer: list[tuple[str, list[tuple[float, bool]], Any]], transfer_label: str,
                  final: list[tuple[str, list[tuple[float, bool]], Any]], final_label: str,
                  references: dict[str, float], title: str) -> Figure:
    """The evidence beside the answer: left, the transfer score of every variant and baseline;
    right, each variant's average final score. Seeds are dots, the black bar is the mean with its
    95 % interval; a crossed seed collapsed (one class predicted) and is not in the mean.
    ``references`` (label -> value) are drawn as horizontal lines on the left (TF-IDF, majority class)."""
    figure = Figure(figsize=(4.0 + 0.7 * (len(transfer) + len(final)), 4.2), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[max(len(transfer), 1), max(len(final), 1)])
    _dots_and_intervals(left, transfer, transfer_label)
    for k, (label, value) in enumerate(references.items()):
        left.axhline(value, color=f"C{k + 1}", linestyle="--" if k == 0 else ":", linewidth=1, label=label)
    if references:
        low, high = left.get_ylim()
        left.set_ylim(min(low, min(references.values()) - 0.02), max(high, max(references.values()) + 0.02))
        left.legend(fontsize=7, loc="best")
    left.set_title(transfer_label, fontsize=9)
    _dots_and_intervals(right, final, final_label)
    right.set_title(final_label, fontsize=9)
    figure.suptitle(title, fontsize=10)
    return figure


def drop_plot(names: list[str], tasks: list[str], cells: dict[str, dict[str, Any]], metric: str,
              averaged: str) -> Figure:
    """Grouped bars: per task (and the mean over tasks) one bar per variant, its drop from best to
    final score with the 95 % interval over seeds as an error bar ("n/a" where not defined)."""
    groups = [*tasks, "mean over tasks"]
    width = 0.8 / len(names)
    figure = Figure(figsize=(2.5 + 1.4 * len(groups) * max(1, len(names) / 3), 4.5), layout="constrained")
    axes = figure.subplots()
    for k, name in enumerate(names):
        estimates = [cells[name].get(group) for group in groups]
        heights = [math.nan if e is None else e.mean for e in estimates]
        errors = [[0.0 if e is None or e.low is None else e.mean - e.low for e in estimates],
                  [0.0 if e is None or e.high is None else e.high - e.mean for e in estimates]]
        positions = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
        bars = axes.bar(positions, heights, width, yerr=errors if any(map(any, errors)) else None, capsize=3,
                        label=name)
        axes.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.3f}" for h in heights], fontsize=7, padding=2)
        for position, height in zip(positions, heights):
            if math.isnan(height):
                axes.text(position, 0, "n/a", ha="center", va="bottom", fontsize=7, color="gray")
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(groups)), groups, rotation=15, ha="right")
    axes.set_ylabel(f"drop from best to final {metric}")
    axes.set_title(f"Drop from best to final score per task ({averaged}; lower is better)")
    axes.legend(fontsize=8)
    return figure
