"""Measure 1: training throughput of the real trainer on knowledge masking against the
Hugging Face ``run_mlm`` recipe (baselines in :mod:`benchmarks.hf_mlm`).

Throughput is real (non-padding) tokens per second over the steps after the warm-up, same
model size, tokenizer, text, batch size and sequence length on both sides. The three runs
alternate (ours, a, b, ours, a, b, ... ``Settings.rounds`` times) and each side keeps its best
run, so a burst of load from other processes on a shared machine hurts one run, not the ratio. On
CUDA the note gives the peak GPU memory of each side (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

from benchmarks.common import Recorded, Row, Workload, gpu_peak_mib, tokens_per_second
from benchmarks.hf_mlm import STYLES, train_baseline

TASK = "knowledge_masking"


def measure(workload: Workload) -> tuple[list[Row], list[Recorded]]:
    """The two throughput rows, and the batches of our faster run (for the FLOP count)."""
    settings = workload.settings
    steps = settings.warmup_steps + settings.train_steps
    best: dict[str, tuple[float, list[Recorded]]] = {}
    peaks: dict[str, float | None] = {}  # GPU memory, MiB
    for _ in range(settings.rounds):
        runs = {}
        for side in ("ours", *STYLES):
            gpu_peak_mib(settings.device, start=True)
            runs[side] = (workload.train({TASK: steps})[1] if side == "ours"
                          else train_baseline(workload, side, steps))
            peaks[side] = gpu_peak_mib(settings.device)
        for side, log in runs.items():
            rate = tokens_per_second(log, settings.warmup_steps)
            if side not in best or rate > best[side][0]:
                best[side] = (rate, log)
    ours, log = best["ours"]
    where = (f"{workload.name}, vocabulary {len(workload.tokenizer):,}, {settings.model_size}, "
             f"batch {settings.batch_size} x {settings.seq_length}, "
             f"best of {settings.rounds} run(s) of {settings.train_steps} timed steps")
    if peaks["ours"] is not None:
        where += "; peak GPU memory " + ", ".join(f"{side} {peak:,.0f} MiB" for side, peak in peaks.items())
    rows = [
        Row("1a. training tokens/s vs run_mlm group_texts (Trainer)", ours, best["grouped"][0], "tokens/s", 2.0,
            note=where, details={"peak_gpu_memory_mib": peaks} if peaks["ours"] is not None else {}),
        Row("1b. training tokens/s vs run_mlm line_by_line, padded", ours, best["line_by_line"][0], "tokens/s", 3.5,
            note=where),
    ]
    return rows, log
