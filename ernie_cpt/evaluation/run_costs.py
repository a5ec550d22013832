"""What a pre-training run cost: its parameters and its training throughput, for ``compare``."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from safetensors import safe_open

from ernie_cpt.training.checkpoint import checkpoints
from ernie_cpt.training.run_log import read_records


def parameter_count(run_dir: Path) -> int | None:
    """The number of parameters (every tensor of ``model.safetensors``: encoder, experts or columns,
    gates, heads) in the run's last checkpoint; None without one."""
    saved = checkpoints(run_dir)
    if not saved or not (saved[-1] / "model.safetensors").is_file():
        return None
    with safe_open(str(saved[-1] / "model.safetensors"), framework="pt") as weights:
        names = list(weights.keys())
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in names)


def training_tokens_per_s(run_dir: Path) -> float | None:
    """Training tokens (padding excluded) per second: the median over the logging windows of
    ``logs/train.jsonl`` (skipped steps left out), robust to a window slowed by an evaluation or
    start-up; None when the run logged none."""
    rates = [r["tokens_per_s"] for r in read_records(run_dir, "train") if not r.get("skipped")]
    return statistics.median(rates) if rates else None
