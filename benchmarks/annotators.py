"""Measure 4d: annotation words/s of ``--annotator fast`` against ``--annotator full``, per process.

Each side is an ``ernie-cpt prepare --num-proc 1`` subprocess into an empty cache, on the same
corpus; its words/s is the one ``prepare`` logs (pipeline loaded to cache entry written). The sides
alternate, ``Settings.rounds`` times, and each keeps its fastest run. One spaCy process each: the
figure is the per-process throughput of the cost model (README, Scale).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from benchmarks.anon_memory import peak_anonymous
from benchmarks.common import Row, Settings
from benchmarks.memory import ROOT
from benchmarks.scale import words_per_second


def annotation_rate(corpus: Path, annotator: str) -> float:
    """words/s of one ``prepare --annotator ANNOTATOR --num-proc 1`` of ``corpus`` into a new cache."""
    with tempfile.TemporaryDirectory(prefix="bench-annotator-") as cache_dir:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "HF_DATASETS_CACHE": f"{cache_dir}/datasets"}
        run = peak_anonymous([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(corpus), "--output-dir",
                              cache_dir, "--annotator", annotator, "--num-proc", "1"], env, cwd=ROOT)
    return words_per_second(run.stderr)


def measure(name: str, corpus: Path, settings: Settings) -> Row:
    """Row 4d: fast against full, best of ``settings.rounds`` each."""
    best: dict[str, float] = {}
    for _ in range(settings.rounds):
        for annotator in ("fast", "full"):
            best[annotator] = max(best.get(annotator, 0.0), annotation_rate(corpus, annotator))
    return Row("4d. annotation words/s per process: --annotator fast vs full", best["fast"], best["full"], "words/s",
               1.5, note=f"{name}; prepare --num-proc 1 into an empty cache, best of {settings.rounds}")
