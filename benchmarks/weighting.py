"""Measure 7: what each gradient-level weighting (and FAMO) costs, in training tokens/s against
``equal`` weighting on the same run.

Three tasks (knowledge masking, capitalization, sentence reordering) train in every optimizer
step (``--task-mixing all``) with the real trainer. A gradient-level method runs one backward
pass per task and combines the per-task gradients (K x the parameters in memory); FAMO adds one
forward pass without gradients. ``equal`` runs first and last and the faster of the two is the
baseline, so a burst of load during the suite hurts one run, not every ratio. No target: the
rows say what a method costs, not whether it is worth it.
"""

from __future__ import annotations

from benchmarks.common import Recorded, Row, Workload

TASKS = ("knowledge_masking", "capitalization", "sentence_reordering")
METHODS = ("pcgrad", "cagrad", "mgda", "nash_mtl", "famo")


def step_tokens_per_second(log: list[Recorded], tasks: int, warmup: int) -> float:
    """Real tokens per second over the steps after ``warmup``, each step being ``tasks`` batches: from
    the request of the first timed step's first batch to that of the last step (not counted)."""
    starts = list(range(warmup * tasks, len(log) - tasks + 1, tasks))
    timed = [batch for start in starts[:-1] for batch in log[start:start + tasks]]
    return sum(batch.tokens for batch in timed) / (log[starts[-1]].asked - log[starts[0]].asked)


def measure(workload: Workload) -> list[Row]:
    settings = workload.settings
    warmup, steps = settings.warmup_steps, max(4, settings.train_steps // 2)
    budgets = dict.fromkeys(TASKS, warmup + steps + 1)

    def rate(weighting: str) -> float:
        return step_tokens_per_second(workload.train(budgets, weighting)[1], len(TASKS), warmup)

    first = rate("equal")
    ours = {method: rate(method) for method in METHODS}
    baseline = max(first, rate("equal"))
    note = f"{len(TASKS)} tasks in every step, {steps} timed steps after {warmup}; equal is the best of 2 runs"
    return [Row(f"9{letter}. {method} weighting, training tokens/s vs equal weighting", ours[method], baseline,
                "tokens/s", note=note if letter == "a" else "") for letter, method in zip("abcde", METHODS)]
