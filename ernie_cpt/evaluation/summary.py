"""The numbers of a comparison, per run and per variant, and the sentence that answers its question.

A *variant* is one of the things compared (a curriculum, or an architecture); a *baseline* is a
reference every comparison shows beside them (``none``, ``mlm``, ``tfidf``). Each run (a variant
or baseline with one seed) becomes a flat row (:func:`run_row`); each number of a variant is
then a mean over seeds with its 95 % interval (:mod:`ernie_cpt.evaluation.significance`).

:func:`answer` names a winner only where the difference to every other variant, paired by seed,
has a 95 % interval that excludes 0. Otherwise it says that no variant can be told apart at this
many seeds, gives the largest difference seen with its interval, and the seeds a difference of
that size would need. A fine-tuning run that predicted one class for the whole test set
(``collapsed``) gives no downstream score: it is flagged, not ranked.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ernie_cpt.evaluation.significance import TIE, Estimate, estimate, paired_difference, seeds_needed

BASELINES = ("none", "mlm", "tfidf")
MINUS = "\u2212"


@dataclass(frozen=True)
class Measure:
    """A per-run number the summary shows: its row key, its heading, and which way is better."""

    key: str
    heading: str
    lower_is_better: bool = False


def run_row(result: dict[str, Any]) -> dict[str, Any]:
    """One run's numbers, flat (a summary.csv row): pre-training metrics (None for a baseline
    without them), per-task ones as ``final_<task>``, ``drop_<task>``, ``forgetting_<task>`` and
    ``fwt_<task>``, the downstream scores with ``downstream_collapsed``, and each probe's accuracy."""
    metrics = (result.get("metrics") or {}) if result.get("kind", "variant") == "variant" else {}
    downstream = result.get("downstream") or {}
    per_seed = (downstream.get("per_seed") or [{}])[0]
    transfer = result.get("forward_transfer") or {}
    probes = result.get("probes") or {}
    tasks = metrics.get("tasks", [])
    final = (metrics.get("accuracy_matrix") or [[]])[-1]
    return {
        "variant": result["variant"], "kind": result.get("kind", "variant"), "seed": result.get("seed"),
        "average_final": metrics.get("average_final"), "mean_drop": metrics.get("mean_drop"),
        "mean_forgetting": metrics.get("mean_forgetting"), "backward_transfer": metrics.get("backward_transfer"),
        "forward_transfer": _mean([v for v in transfer.values() if v is not None]),
        **{f"final_{task}": final[j] for j, task in enumerate(tasks)},
        **{f"drop_{task}": value for task, value in metrics.get("drop_from_best", {}).items()},
        **{f"forgetting_{task}": value for task, value in metrics.get("forgetting", {}).items()},
        **{f"fwt_{task}": value for task, value in transfer.items()},
        "downstream_accuracy": downstream.get("accuracy_mean"), "downstream_macro_f1": downstream.get("macro_f1_mean"),
        "downstream_collapsed": bool(per_seed.get("collapsed", False)) if downstream else None,
        "downstream_majority_accuracy": downstream.get("majority_accuracy"),
        "probe_mean": _mean([p["accuracy"] for p in probes.values()]),
        **{f"probe_{name}": probe["accuracy"] for name, probe in probes.items()},
        "pretrain_seconds": result.get("pretrain_seconds"), "resumed": bool(result.get("resumed")),
        "architecture": result.get("architecture"), "parameters": result.get("parameters"),
        "tokens_per_s": result.get("tokens_per_s"),
    }


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def by_seed(rows: list[dict[str, Any]], key: str) -> dict[int | None, float | None]:
    """seed -> the rows' ``key``; a downstream score of a collapsed run is None (not a score)."""
    return {row["seed"]: None if key.startswith("downstream_") and row.get("downstream_collapsed") else row.get(key)
            for row in rows}


def _values(rows: list[dict[str, Any]], key: str, seeds: list[int]) -> dict[int | None, float | None]:
    """By seed; a run without a seed (deterministic, such as TF-IDF) stands for every seed."""
    values = by_seed(rows, key)
    return {seed: values[None] for seed in seeds} if list(values) == [None] else values


def group(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each variant and baseline, in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["variant"], []).append(row)
    return groups


def summarise(rows: list[dict[str, Any]], keys: list[str]) -> dict[str, dict[str, Estimate | None]]:
    """variant -> key -> the mean over its seeds with a 95 % interval (None where no run has the key)."""
    return {name: {key: estimate([v for v in by_seed(runs, key).values() if v is not None]) for key in keys}
            for name, runs in group(rows).items()}


def collapsed(runs: list[dict[str, Any]]) -> int:
    return sum(1 for run in runs if run.get("downstream_collapsed"))


def _interval(value: Estimate) -> str:
    return f"[{value.low:.3f}, {value.high:.3f}]"


def _decide(values: dict[str, dict[int | None, float | None]], measure: Measure, axis: tuple[str, str]) -> str:
    """One sentence on ``measure`` over the variants of ``values`` (variant -> seed -> value)."""
    scored = {name: v for name, v in values.items() if any(x is not None for x in v.values())}
    label = measure.heading
    if len(scored) < 2:
        return f"Fewer than two {axis[1]} have a {label}, so none is compared."
    sign = -1 if measure.lower_is_better else 1
    means = {name: float(np.mean([x for x in v.values() if x is not None])) for name, v in scored.items()}
    best = max(means, key=lambda name: sign * means[name])
    others = [name for name in scored if name != best]
    differences = {name: d for name in others if (d := paired_difference(scored[best], scored[name])) is not None}
    ahead = [name for name, d in differences.items() if d.excludes_zero() and sign * d.mean > 0]
    n_seeds = max(len([x for x in v.values() if x is not None]) for v in scored.values())
    if len(ahead) == len(others):
        closest = min(others, key=lambda name: abs(differences[name].mean))
        d = differences[closest]
        return (f"**{label[0].upper()}{label[1:]}: {best}** is {'lowest' if measure.lower_is_better else 'highest'} "
                f"({means[best]:.3f}; {abs(d.mean):.3f} "
                f"{'below' if d.mean < 0 else 'above'} {closest}, the closest, 95 % CI of the paired difference "
                f"{_interval(d)} over {d.n} seeds).")
    tied = [best, *(name for name in others if name not in ahead)]
    pairs = [(a, b, d) for a, b in itertools.combinations(tied, 2) if (d := paired_difference(scored[a], scored[b]))]
    if not pairs:
        return f"On {label}, no two {axis[1]} share a seed, so none is compared."
    a, b, d = max(pairs, key=lambda p: abs(p[2].mean))
    if d.mean < 0:
        a, b = b, a
    which = (f"no {axis[0]} is distinguishable" if len(tied) == len(scored) else
             f"{_join(tied)} lead and cannot be told apart ({_join(ahead)} {'is' if len(ahead) == 1 else 'are'} "
             f"behind)")
    if d.low is None:
        return (f"**On {label}, {which} with one seed**: the largest difference, {a} {MINUS} {b}, is "
                f"{abs(d.mean):.3f}; run more seeds (--seeds 3 or more) for an interval.")
    needed = seeds_needed(abs(d.mean), d.std)
    need = ("no difference was seen" if abs(d.mean) < TIE else
            f"resolving a difference of that size would take about {needed} seeds (80 % power, paired t-test)"
            if needed else "no practical number of seeds would resolve a difference that small")
    return (f"**On {label}, {which} at {n_seeds} seeds**: the largest difference, {a} {MINUS} {b} = {abs(d.mean):.3f}, "
            f"has a 95 % CI of {_interval(_oriented(d))} (paired by seed); {need}.")


def _oriented(d: Estimate) -> Estimate:
    if d.mean >= 0 or d.low is None or d.high is None:
        return d
    return Estimate(-d.mean, -d.high, -d.low, d.n, d.std)


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _against_baselines(rows: list[dict[str, Any]], variants: list[str], measure: Measure) -> str:
    """The best variant on ``measure`` against each baseline that has it, paired by seed."""
    groups = group(rows)
    seeds = sorted({row["seed"] for row in rows if row["seed"] is not None})
    means = {name: e for name in variants
             if (e := estimate([v for v in by_seed(groups[name], measure.key).values() if v is not None])) is not None}
    scored = list(means)
    present = [name for name in BASELINES if name in groups and any(
        v is not None for v in _values(groups[name], measure.key, seeds).values())]
    if not scored or not present:
        return ""
    best = max(scored, key=lambda name: means[name].mean)
    parts = []
    for baseline in present:
        d = paired_difference(by_seed(groups[best], measure.key), _values(groups[baseline], measure.key, seeds))
        if d is None:
            continue
        verdict = ("" if d.low is None else " (distinguishable)" if d.excludes_zero() else " (not distinguishable)")
        interval = "" if d.low is None else f" {_interval(d)}"
        parts.append(f"{best} {MINUS} {baseline} = {d.mean:+.3f}{interval}{verdict}")
    return f"Against the baselines on {measure.heading}: {'; '.join(parts)}." if parts else ""


def answer(rows: list[dict[str, Any]], forgetting: Measure, transfer: Measure,
           axis: tuple[str, str] = ("curriculum", "curricula")) -> str:
    """The report's answer from per-run rows (:func:`run_row`; rows of kind ``baseline`` are set
    beside the variants, not ranked): one sentence on ``forgetting``, one on ``transfer``, and the
    best variant on ``transfer`` against each baseline. ``axis`` names a variant (singular, plural)."""
    variants = [name for name, runs in group(rows).items() if runs[0].get("kind", "variant") == "variant"]
    groups = group(rows)
    sentences = [_decide({name: by_seed(groups[name], m.key) for name in variants}, m, axis)
                 for m in (forgetting, transfer)]
    lost = [name for name in variants if transfer.key.startswith("downstream_") and collapsed(groups[name])
            == len(groups[name])]
    if lost:
        sentences.append(f"{_join(lost)} collapsed to one class in every fine-tuning run (flagged in the table, not "
                         f"ranked).")
    baselines = _against_baselines(rows, variants, transfer)
    return " ".join([*sentences, *([baselines] if baselines else [])])
