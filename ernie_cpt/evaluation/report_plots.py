"""The figures of the compare report: accuracy-matrix heatmaps, learning curves, a forgetting chart.

Each function returns a matplotlib ``Figure`` built without pyplot (no global state, no GUI
backend: saving renders with Agg).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.figure import Figure

MAX_STAGE_LABEL = 50
MAX_NAMED_STAGES = 8  # above it, the learning curves number the stages without the word "stage"


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


def curves_plot(curves: dict[str, list[tuple[int, float]]], tasks: list[str], boundaries: list[int], metric: str,
                title: str) -> Figure:
    """Each task's held-out score over the optimizer steps, with a dashed line where a stage ends."""
    figure = Figure(figsize=(8, 4.5))
    axes = figure.subplots()
    for task in tasks:
        points = curves.get(task, [])
        if points:
            axes.plot([step for step, _ in points], [value for _, value in points], marker="o", markersize=3,
                      label=task)
    for number, end in enumerate(boundaries[:-1], start=1):
        axes.axvline(end, color="gray", linestyle="--", linewidth=1,
                     label="end of a stage" if number == 1 else None)
    starts = [0, *boundaries[:-1]]
    for number, (start, end) in enumerate(zip(starts, boundaries), start=1):
        label = f"stage {number}" if len(boundaries) <= MAX_NAMED_STAGES else str(number)
        axes.text((start + end) / 2, 1.01, label, transform=axes.get_xaxis_transform(), ha="center",
                  va="bottom", fontsize=8, color="gray")
    axes.set_xlim(0, 1.02 * max(boundaries[-1] if boundaries else 1, 1))
    axes.set_xlabel("optimizer step")
    axes.set_ylabel(f"held-out {metric}")
    axes.set_title(f"Learning curves, {title}", pad=16)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def forgetting_plot(summaries: list[dict[str, Any]], tasks: list[str], metric: str, averaged: str,
                    names: list[str], compared: str = "curriculum") -> Figure:
    """Grouped bars: per task (and the mean over tasks) one bar per summary (a curriculum, or what
    ``compared`` names), labelled by ``names``, its forgetting with the std over seeds as an error
    bar; "n/a" where a task has no forgetting score (no score after an earlier stage: trained only
    in the last stage, or a single stage)."""
    groups = [*tasks, "mean over tasks"]
    width = 0.8 / len(summaries)
    figure = Figure(figsize=(2.5 + 1.4 * len(groups) * max(1, len(summaries) / 3), 4.5))
    axes = figure.subplots()
    for k, (summary, name) in enumerate(zip(summaries, names)):
        cells = [summary["forgetting"][task] for task in tasks] + [summary["mean_forgetting"]]
        heights = [math.nan if cell["mean"] is None else cell["mean"] for cell in cells]
        errors = [0.0 if cell["std"] is None else cell["std"] for cell in cells]
        positions = np.arange(len(groups)) - 0.4 + width * (k + 0.5)
        bars = axes.bar(positions, heights, width, yerr=errors if any(errors) else None, capsize=3,
                        label=name)
        axes.bar_label(bars, labels=["" if math.isnan(h) else f"{h:.3f}" for h in heights], fontsize=7, padding=2)
        for position, height in zip(positions, heights):
            if math.isnan(height):
                axes.text(position, 0, "n/a", ha="center", va="bottom", fontsize=7, color="gray")
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(groups)), groups, rotation=15, ha="right")
    axes.set_xlabel("task (n/a: no score after an earlier stage to forget)")
    axes.set_ylabel(f"forgetting (best earlier - final {metric})")
    axes.set_title(f"Forgetting per task and {compared} ({averaged}; lower is better)")
    axes.legend(title=compared, fontsize=8)
    return figure
