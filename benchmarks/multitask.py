"""Measure 3: multi-task overhead, the real-token throughput of joint training on all seven
tasks (``--schedule joint``, one task drawn per step) against knowledge masking alone.

Both sides run the same trainer, model size and batch size, alternating (alone, joint, ...
``Settings.rounds`` times), and each keeps its best run. The joint run's batches are returned
for measure 5, which reads from them how fast the trainer consumes each task's examples.
"""

from __future__ import annotations

from benchmarks.common import Recorded, Row, Workload, tokens_per_second
from pretasks import TASKS

ALONE = "knowledge_masking"


def measure(workload: Workload) -> tuple[Row, list[Recorded]]:
    """The overhead row, and the batches of the faster joint run."""
    settings = workload.settings
    joint_budgets = dict.fromkeys(sorted(TASKS), settings.steps_per_task)
    alone_budgets = {ALONE: settings.warmup_steps + settings.train_steps}
    best: dict[str, tuple[float, list[Recorded]]] = {}
    for _ in range(settings.rounds):
        for side, budgets in (("alone", alone_budgets), ("joint", joint_budgets)):
            log = workload.train(budgets)[1]
            rate = tokens_per_second(log, settings.warmup_steps)
            if side not in best or rate > best[side][0]:
                best[side] = (rate, log)
    note = f"{len(joint_budgets)} tasks x {settings.steps_per_task} steps, best of {settings.rounds}"
    return (Row("3. joint training on all 7 tasks, tokens/s vs knowledge masking alone", best["joint"][0],
                best["alone"][0], "tokens/s", 0.9, note=note), best["joint"][1])
