"""Measures 6a, 6c, 6d and 4c: how ``prepare`` and ``pretrain`` scale with the corpus.

The corpora are distinct documents (:mod:`benchmarks.scale_corpus`: Austen chapters, Jargon File
entries, Python's docstrings and help topics, manual pages) of 1x, 4x and 16x a base size (1 MB
in the full run, 64 KB with ``--quick``); a smaller one is a prefix of each source of a larger one,
so the mix of text is the same. Each ``prepare`` runs as a subprocess into an empty cache (and an
empty `datasets` cache).

* 6a: peak PSS of ``prepare`` (as row 6b measures memory) on 4x against 1x, target <= 1.3x.
* 6c: peak anonymous memory (RssAnon summed over the process tree, :mod:`benchmarks.anon_memory`)
  of ``prepare`` on 16x against 1x, target <= 1.2x.
* 4c: the words/s of those two ``prepare`` runs as ``prepare`` logs them (from the pipeline loaded
  to the cache entry written), 16x against 1x, target >= 0.9x (no step worse than linear).
* 6d: peak anonymous memory of a seven-task ``pretrain`` (tiny model, 14 steps, evaluation at the
  end) on 16x against 1x, from the annotations 6c cached, target <= 1.2x.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from pathlib import Path

from benchmarks import scale_corpus
from benchmarks.anon_memory import peak_anonymous
from benchmarks.common import SEED, Row, Settings
from benchmarks.memory import ROOT, peak_memory
from pretasks import ERNIE_TASKS

CORPUS_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ernie-cpt-bench"
THROUGHPUT = re.compile(r"Annotated ([\d,]+) words in ([\d.]+) s")
PRETRAIN_STEPS = 14


def base_megabytes(settings: Settings) -> float:
    return 0.064 if settings.quick else 1.0


def corpus(megabytes: float) -> tuple[Path, dict]:
    """The scale corpus of ``megabytes`` (built once, then kept in ~/.cache/ernie-cpt-bench) and its statistics."""
    path = CORPUS_CACHE / f"scale-{megabytes:g}mb-v{scale_corpus.VERSION}.jsonl"
    return path, scale_corpus.cached(path, megabytes)


def _environment(cache_dir: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "ERNIE_CPT_CACHE": cache_dir, "TQDM_DISABLE": "1",
            "HF_DATASETS_CACHE": str(Path(cache_dir) / "datasets")}


def words_per_second(log: str) -> float:
    """The annotation words/s that ``prepare`` logged (``Annotated N words in S s``)."""
    found = THROUGHPUT.search(log)
    if not found:
        raise RuntimeError(f"prepare logged no annotation throughput:\n{log[-2000:]}")
    return int(found[1].replace(",", "")) / float(found[2])


def prepare(path: Path, cache_dir: str) -> tuple[float, float]:
    """``ernie-cpt prepare`` of ``path`` into the empty ``cache_dir``: peak anonymous MiB, words/s."""
    peak = peak_anonymous([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(path), "--output-dir",
                           cache_dir], _environment(cache_dir), cwd=ROOT)
    return peak.peak_mib, words_per_second(peak.stderr)


def pretrain(path: Path, cache_dir: str, run_dir: str) -> float:
    """A seven-task ``pretrain`` of ``path`` (annotations in ``cache_dir``): peak anonymous MiB."""
    command = [sys.executable, "-m", "ernie_cpt", "pretrain", "--corpus", str(path), "--cache-dir", cache_dir,
               "--output-dir", run_dir, "--overwrite", "--model-size", "tiny", "--max-steps", str(PRETRAIN_STEPS),
               "--tasks", *ERNIE_TASKS, "--seed", str(SEED), "--report-to", "none"]
    return peak_anonymous(command, _environment(cache_dir), cwd=ROOT).peak_mib


def measure(settings: Settings, base: float | None = None) -> list[Row]:
    """Rows 6a, 6c, 4c and 6d; ``base`` overrides the 1x size in MB."""
    base = base or base_megabytes(settings)
    (small, small_stats), (four, four_stats), (large, large_stats) = (corpus(base * n) for n in (1, 4, 16))
    distinct = "distinct documents" if large_stats["distinct"] else "documents repeated with shuffled paragraphs"
    sizes = {name: f"{stats['bytes'] / 1e6:.2g} MB, {stats['words']:,} words, {stats['documents']:,} documents"
             for name, stats in (("1x", small_stats), ("4x", four_stats), ("16x", large_stats))}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        caches = {name: str(Path(folder) / name) for name in ("1x", "4x", "16x", "pss")}
        pss_small = peak_memory([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(small), "--output-dir",
                                 caches["pss"]], _environment(caches["pss"]))[0]
        pss_four = peak_memory([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(four), "--output-dir",
                                caches["4x"]], _environment(caches["4x"]))[0]
        anon = {name: prepare(path, caches[name]) for name, path in (("1x", small), ("16x", large))}
        trained = {name: pretrain(path, caches[name], str(Path(folder) / f"run-{name}"))
                   for name, path in (("1x", small), ("16x", large))}
    return [
        Row("6a. peak memory of prepare: corpus x4 vs corpus (distinct documents)", pss_four, pss_small, "MiB", 1.3,
            higher_is_better=False, note=f"{distinct}: {sizes['4x']} vs {sizes['1x']}; PSS of each subprocess tree "
                                         f"(spaCy workers included), empty caches"),
        Row("6c. peak anonymous memory of prepare: corpus x16 vs corpus", anon["16x"][0], anon["1x"][0], "MiB", 1.2,
            higher_is_better=False, note=f"{distinct}: {sizes['16x']} vs {sizes['1x']}; RssAnon summed over the "
                                         f"process tree, empty caches"),
        Row("4c. prepare words/s: corpus x16 vs corpus", anon["16x"][1], anon["1x"][1], "words/s", 0.9,
            note="the runs of 6c, as prepare logs them (pipeline loaded to cache entry written)"),
        Row("6d. peak anonymous memory of a 7-task pretrain: corpus x16 vs corpus", trained["16x"], trained["1x"],
            "MiB", 1.2, higher_is_better=False,
            note=f"tiny model, {PRETRAIN_STEPS} steps, the held-out sets evaluated at the end; annotations cached"),
    ]
