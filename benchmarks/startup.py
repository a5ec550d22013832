"""Measure 7: start-up of the command line, against starting Python itself.

``ernie-cpt --help`` and ``ernie-cpt plan`` load only the option dataclasses (no torch,
transformers, datasets or spaCy, which take 5-8 s together on 2 cores). Both are timed as
subprocesses, wall time, beside ``python -c pass`` in the same interpreter; each side is run
``RUNS`` times, alternating, and its fastest run counts. The target, 20x (about half a second),
leaves room for the option modules, numpy and the task modules; with the libraries loaded
``--help`` took 6-8 s (about 250x).
"""

from __future__ import annotations

import subprocess
import sys
import time

from benchmarks.common import Row

RUNS = 5
PLAN = ["plan", "--schedule", "sequential", "--tasks", "knowledge_masking", "capitalization", "sentence_reordering",
        "--steps-per-task", "1000"]


def _seconds(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure() -> list[Row]:
    python, helps, plans = [], [], []
    for _ in range(RUNS):
        python.append(_seconds(["-c", "pass"]))
        helps.append(_seconds(["-m", "ernie_cpt", "--help"]))
        plans.append(_seconds(["-m", "ernie_cpt", *PLAN]))
    note = f"fastest of {RUNS} runs each, alternating"
    return [Row("8a. start-up: ernie-cpt --help vs python -c pass", min(helps), min(python), "s", 20.0,
                higher_is_better=False, note=note),
            Row("8b. start-up: ernie-cpt plan (3 tasks) vs python -c pass", min(plans), min(python), "s", 20.0,
                higher_is_better=False, note=note)]
