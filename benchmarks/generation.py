"""Measure 5: generation headroom, per task: the examples/s that the task's training stream
(per-epoch example generation from the static examples of cached annotations, then collation
into padded batches) produces, against the examples/s the trainer consumes.

The stream is timed alone, from a fresh stream (its first epoch starts inside the timing). The
trainer's rate is read from the joint run of measure 3: the seconds a step of the task took
without the time spent fetching its batch, so it is the rate the model would consume were the
data free. The static examples (tokenization and alignment) are built once per run and cached;
their build time is reported in the details.
"""

from __future__ import annotations

import string
import time

from benchmarks.common import Recorded, Row, Workload


def generated_per_second(workload: Workload, task: str, batches: int) -> float:
    stream = workload.stream(task)
    start = time.perf_counter()
    examples = sum(len(next(stream)["input_ids"]) for _ in range(batches))
    return examples / (time.perf_counter() - start)


def consumed_per_second(log: list[Recorded], task: str, warmup: int) -> float:
    """Examples per second of model work on ``task``'s batches in a recorded run."""
    steps = [(this, after) for this, after in zip(log[warmup:], log[warmup + 1:]) if this.task == task]
    return sum(len(this.lengths) for this, _ in steps) / sum(after.asked - this.fetched for this, after in steps)


def measure(workload: Workload, joint_log: list[Recorded]) -> list[Row]:
    settings = workload.settings
    batches = 10 if settings.quick else 30
    rows = []
    for letter, task in zip(string.ascii_lowercase, sorted({b.task for b in joint_log})):
        rows.append(Row(f"5{letter}. generation headroom: {task}", generated_per_second(workload, task, batches),
                        consumed_per_second(joint_log, task, settings.warmup_steps), "examples/s", 10.0,
                        note=f"static examples built once in {workload.build_seconds[task]:.1f} s",
                        details={"static_build_seconds": workload.build_seconds[task]}))
    return rows
