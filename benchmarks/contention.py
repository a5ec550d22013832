"""Measure 7: training throughput when other processes compete for the CPUs, with the default settings.

A tiny knowledge-masking run trains in a child process (:mod:`benchmarks.contention_child`)
started as the command line starts (:func:`ernie_cpt.threads.configure_process` before torch
loads, then the default thread count), in three phases of the same run: alone, with one busy
process (a Python busy loop this benchmark starts), and with two. Each phase's tokens/s is read
over its batches (the first ``SETTLE`` after a change left out); the rows are the loaded phases
against the unloaded one. The third row compares the default settings, alone, with the best of
the settings one might choose instead (GNU OpenMP's own spin of 300,000,
``OMP_WAIT_POLICY=PASSIVE``, one thread), each in a child of its own: the defaults that degrade
gracefully must cost nothing on an idle machine.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from benchmarks.common import Recorded, Row, Workload

TASK = "knowledge_masking"
SETTLE = 2  # batches after a phase starts that are not timed
BUSY_LOOP = "while True: pass"
ROUNDS = 2  # unloaded runs of each setting for row 7c
ALTERNATIVES = {  # environment, --threads of the child
    "GOMP_SPINCOUNT=300000 (GNU OpenMP's default)": ({"GOMP_SPINCOUNT": "300000"}, 0),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "1 thread": ({}, 1),
}


def phase_rates(log: list[Recorded], boundaries: list[int]) -> list[float]:
    """Tokens/s of each phase: the batches from ``SETTLE`` after a boundary to the next boundary, timed
    from the request of the first to the request of the last, whose step is not counted."""
    rates = []
    for start, end in itertools.pairwise(boundaries):
        timed = log[start + SETTLE:end]
        rates.append(sum(b.tokens for b in timed[:-1]) / (timed[-1].asked - timed[0].asked))
    return rates


@contextlib.contextmanager
def busy_processes() -> Iterator[list[subprocess.Popen]]:
    """A list to start busy processes into; all of them are killed on leaving."""
    processes: list[subprocess.Popen] = []
    try:
        yield processes
    finally:
        for process in processes:
            process.kill()
            process.wait()


def run_child(corpus: Path, cache_dir: str, steps: int, warmup: int, phases: int, env: dict[str, str],
              threads: int = 0) -> dict:
    """Train in a child with ``env`` (the OpenMP variables of this process left out); phase k runs with
    k busy processes. Returns the child's result: the tokens/s of every phase and its torch threads."""
    command = [sys.executable, "-m", "benchmarks.contention_child", "--corpus", str(corpus), "--cache-dir", cache_dir,
               "--steps", str(steps), "--warmup", str(warmup), "--phases", str(phases), "--threads", str(threads)]
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    child = subprocess.Popen(command, env={**clean, **env}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[1])
    assert child.stdin is not None and child.stdout is not None  # PIPE
    try:
        with busy_processes() as busy:
            for phase in range(phases + 1):
                if child.stdout.readline().strip() != "phase":
                    raise RuntimeError(f"the contention child stopped before phase {phase}")
                if 0 < phase < phases:
                    busy.append(subprocess.Popen([sys.executable, "-c", BUSY_LOOP]))
                elif phase == phases:
                    for process in busy:
                        process.kill()
                child.stdin.write("go\n")
                child.stdin.flush()
        out = child.stdout.read()
    finally:
        child.wait()
    return json.loads(out.strip().splitlines()[-1])


def measure(workload: Workload, corpus: Path) -> list[Row]:
    """The three contention rows (the workload's cache holds the annotations and the tokenizer). The
    unloaded settings alternate, ``ROUNDS`` times each, and each keeps its best run: a burst of load
    from other processes hurts a run, not the ratio."""
    steps, warmup = (20, 3) if workload.settings.quick else (40, 4)
    default = run_child(corpus, workload.cache_dir, steps, warmup, phases=3, env={})
    alone, one, two = default["rates"]
    best_of: dict[str, float] = {"default": alone}
    for _ in range(ROUNDS):
        for name, (env, threads) in {"default": ({}, 0), **ALTERNATIVES}.items():
            rate = run_child(corpus, workload.cache_dir, steps, warmup, phases=1, env=env, threads=threads)["rates"][0]
            best_of[name] = max(best_of.get(name, 0.0), rate)
    others = {name: rate for name, rate in best_of.items() if name != "default"}
    best_name, best = max(others.items(), key=lambda item: item[1])
    where = (f"{workload.name}, tiny, batch {workload.settings.batch_size}, {steps} timed steps per phase, "
             f"{default['threads']} torch thread(s) by default, {os.cpu_count()} cores")
    alternatives = "; ".join(f"{name} {rate:,.0f}" for name, rate in others.items())
    return [
        Row("7a. training tokens/s with 1 busy process vs none (default settings)", one, alone, "tokens/s", 0.5,
            note=where),
        Row("7b. training tokens/s with 2 busy processes vs none (default settings)", two, alone, "tokens/s", 0.35,
            note=where),
        Row("7c. training tokens/s, default settings vs the best other setting, unloaded", best_of["default"], best,
            "tokens/s", 0.97, note=f"best of {ROUNDS + 1} runs for the default, {ROUNDS} for the others "
                                   f"({best_name} best); the others, tokens/s: {alternatives}"),
    ]
