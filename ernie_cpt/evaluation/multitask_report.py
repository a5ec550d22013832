"""The report of multi-task fine-tuning: per set and variant, each metric's mean ± std over the seeds.

Variants: ``single_task`` (the set alone, from the given model), ``multi_task`` (all sets together,
MT-DNN's first stage) and ``multi_task_then_single_task`` (its second stage). The std is the
sample standard deviation (n - 1); with one seed there is none (``null`` in JSON, nothing in
Markdown) rather than a made-up 0.
"""

from __future__ import annotations

import statistics
from typing import Any

# per kind: the metrics shown (the first is the headline) and the trivial baseline of each
METRICS = {
    "classification": (["accuracy", "macro_f1"], {"accuracy": "majority_accuracy", "macro_f1": "majority_macro_f1"}),
    "pair_classification": (["accuracy", "macro_f1"],
                            {"accuracy": "majority_accuracy", "macro_f1": "majority_macro_f1"}),
    "regression": (["pearson", "spearman", "mse"], {"mse": "mean_predictor_mse"}),
    "ranking": (["mrr", "accuracy"], {"mrr": "random_mrr", "accuracy": "random_accuracy"}),
}
VARIANTS = {"single_task": "single-task", "multi_task": "multi-task",
            "multi_task_then_single_task": "multi-task, then single-task"}


def summarise(per_seed: list[dict[str, float]]) -> dict[str, Any]:
    """``{"per_seed": [...], "mean": {metric: value}, "std": {metric: sample std or None}}``."""
    metrics = [key for key in per_seed[0] if key != "seed"]
    return {"per_seed": per_seed,
            "mean": {m: statistics.mean(r[m] for r in per_seed) for m in metrics},
            "std": {m: statistics.stdev(r[m] for r in per_seed) if len(per_seed) > 1 else None for m in metrics}}


def _cell(summary: dict[str, Any] | None, metric: str) -> str:
    if summary is None:
        return "-"
    std = summary["std"][metric]
    return f"{summary['mean'][metric]:.4f}" + ("" if std is None else f" ± {std:.4f}")


def markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table: a row per (set, metric), a column per variant and the trivial baseline."""
    variants = [v for v in VARIANTS if any(v in s["variants"] for s in report["sets"].values())]
    seeds = report["seeds"]
    lines = [f"Model: `{report['model']}` ({report['architecture']}); seeds {', '.join(map(str, seeds))} "
             f"(mean{' ± sample std' if len(seeds) > 1 else ', one seed: no std'}).", "",
             "| set | kind | metric | " + " | ".join(VARIANTS[v] for v in variants) + " | trivial baseline |",
             "| --- | --- | --- | " + " | ".join("---:" for _ in variants) + " | ---: |"]
    for name, result in report["sets"].items():
        shown, baselines = METRICS[result["kind"]]
        for metric in shown:
            baseline = result["baseline"].get(baselines.get(metric, ""), None)
            lines.append(f"| {name} | {result['kind']} | {metric} | "
                         + " | ".join(_cell(result["variants"].get(v), metric) for v in variants)
                         + f" | {'-' if baseline is None else f'{baseline:.4f}'} |")
    budget = "; ".join(f"{name}: {b['multi_task']} + {b['single_task_stage']} steps (single-task: {b['single_task']})"
                       for name, b in report["steps"].items())
    settings = report.get("settings", {})
    trained = ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in settings.items()
                        if key in ("learning_rate", "epochs", "single_task_epochs", "batch_size", "max_seq_length",
                                   "multitask_mixing", "loss_weighting", "then_single_task"))
    return "\n".join([*lines, "", f"Steps per set (multi-task + second stage): {budget}.",
                      *([f"Settings: {trained}."] if trained else [])])
