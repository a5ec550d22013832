"""Measure 6b: peak resident memory of ``pretrain`` against the Trainer, each from a fresh subprocess.

* ``pretrain`` on knowledge masking against the ``run_mlm`` group_texts baseline
  (:mod:`benchmarks.hf_mlm`), same steps and sizes, both from annotations already cached.
* :func:`prepare` gives measure 4 the time of a first ``prepare`` of the corpus (and its peak).
  How memory grows with the corpus, on distinct documents, is :mod:`benchmarks.scale` (6a, 6c, 6d).

The peak is the largest sum of the proportional set sizes (PSS: resident memory, with each page
shared by n processes counted 1/n in each) of the process and all its descendants (spaCy worker
processes included), sampled from ``/proc`` every second. Plain RSS would count the pages that
forked workers share with their parent once per process. Reading a process's PSS makes the
kernel walk its page tables (about 14 ms for 1 GB), so sampling faster would take CPU from
the process measured on 2 cores (and so from measure 4, which times the first ``prepare``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import SEED, Row, Workload

ROOT = Path(__file__).resolve().parents[1]
TRAINING_STEPS = 10  # the peak is reached in the first steps
SAMPLE_SECONDS = 1.0


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                stack.extend(int(c) for c in children.read_text().split())
            except OSError:  # the task ended meanwhile
                continue
    return found


def _pss(pid: int) -> int:
    """Bytes of proportional set size of a process (0 once it has ended)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("Pss:")), 0)


def peak_memory(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run ``command`` (from the repository root); the peak PSS of its process tree in MiB, and
    the seconds it ran."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        while process.returncode is None:
            peak = max(peak, sum(_pss(pid) for pid in _descendants(process.pid)))
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=SAMPLE_SECONDS)
        if process.returncode:
            errors.seek(0)
            raise RuntimeError(f"{' '.join(command)} failed:\n{errors.read().decode()[-3000:]}")
    return peak / 2**20, time.perf_counter() - start


def _environment(cache_dir: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "ERNIE_CPT_CACHE": cache_dir, "TQDM_DISABLE": "1"}


def prepare(corpus: Path, cache_dir: str) -> tuple[float, float]:
    """``ernie-cpt prepare`` in a subprocess: its peak memory in MiB and its seconds."""
    return peak_memory([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(corpus),
                        "--output-dir", cache_dir], _environment(cache_dir))


def measure(workload: Workload, corpus: Path) -> list[Row]:
    """Row 6b (the annotations of ``corpus``, the workload's, are cached)."""
    settings = workload.settings
    steps = str(TRAINING_STEPS)
    env = _environment(workload.cache_dir)
    with tempfile.TemporaryDirectory(prefix="bench-run-") as run_dir:
        ours = peak_memory([sys.executable, "-m", "ernie_cpt", "pretrain", "--corpus", str(corpus), "--output-dir",
                         run_dir, "--overwrite", "--model-size", settings.model_size, "--batch-size",
                         str(settings.batch_size), "--max-seq-length", str(settings.seq_length), "--max-steps", steps,
                         "--eval-steps", "0", "--seed", str(SEED)], env)[0]
    baseline = peak_memory([sys.executable, "-m", "benchmarks.hf_mlm", "--corpus", str(corpus), "--cache-dir",
                         workload.cache_dir, "--style", "grouped", "--steps", steps,
                         *(["--quick"] if settings.quick else [])], env)[0]
    return [Row("6b. peak memory of pretrain vs run_mlm group_texts (Trainer)", ours, baseline, "MiB",
                higher_is_better=False, note=f"{workload.name}, {steps} steps of knowledge masking")]
