"""Measures 6a, 6c-6f and 4c: how ``prepare``, ``pretrain`` and ``inspect-task`` scale with the corpus.

The corpora are distinct documents (:mod:`benchmarks.scale_corpus`) of 1x, 4x and 16x a base size
(1 MB in the full run, 64 KB with ``--quick``); a smaller one is a prefix of each source of a larger
one, so the mix of text is the same. ``python -m benchmarks.scale --recipe reference`` measures
instead a 16x corpus built otherwise (other text, other sizes of document, eight gzipped JSONL
shards) against the same 1x. Each ``prepare`` runs as a subprocess into an empty cache (and an
empty `datasets` cache).

* 6a: peak PSS of ``prepare`` (as row 6b measures memory) on 4x against 1x, target <= 1.3x.
* 6c: peak anonymous memory (RssAnon summed over the process tree, :mod:`benchmarks.anon_memory`)
  of ``prepare`` on 16x against 1x, target <= 1.2x.
* 4c: the words/s of those two ``prepare`` runs as ``prepare`` logs them (from the pipeline loaded
  to the cache entry written), 16x against 1x, target >= 0.9x (no step worse than linear).
* 6d: peak anonymous memory of a seven-task ``pretrain`` (tiny model, 14 steps, evaluation at the
  end) on 16x against 1x, from the annotations 6c cached, target <= 1.2x. Its vocabulary is the
  default, 20·sqrt(words) up to 30,522, so the model grows with the corpus up to about 2.3 M words.
* 6e: the same at one vocabulary, the 1x run's (``--vocab-size``): the data path without the model's
  growth, target <= 1.2x.
* 6f: peak anonymous memory of ``inspect-task -n 0``, the largest over the seven tasks, each from a
  cache holding only the annotations (examples and tokenizer made anew), 16x against 1x, target <= 1.2x.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
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
SHARDS = 8  # files of a corpus of another recipe than "mixed"


def base_megabytes(settings: Settings) -> float:
    return 0.064 if settings.quick else 1.0


def corpus(megabytes: float, recipe: str = "mixed") -> tuple[Path, dict]:
    """The scale corpus of ``megabytes`` (built once, then kept in ~/.cache/ernie-cpt-bench) and its statistics:
    one JSONL file for the ``mixed`` recipe, a folder of SHARDS gzipped JSONL files for another."""
    if recipe == "mixed":
        path = CORPUS_CACHE / f"scale-{megabytes:g}mb-v{scale_corpus.VERSION}.jsonl"
        return path, scale_corpus.cached(path, megabytes)
    path = CORPUS_CACHE / f"scale-{recipe}-{megabytes:g}mb-v{scale_corpus.VERSION}"
    return path, scale_corpus.cached(path, megabytes, recipe=recipe, shards=SHARDS)


def _environment(cache_dir: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "ERNIE_CPT_CACHE": cache_dir, "TQDM_DISABLE": "1",
            "HF_DATASETS_CACHE": str(Path(cache_dir) / "datasets")}


def words_per_second(log: str) -> float:
    """The annotation words/s that ``prepare`` logged (``Annotated N words in S s``)."""
    found = THROUGHPUT.search(log)
    if not found:
        raise RuntimeError(f"prepare logged no annotation throughput:\n{log[-2000:]}")
    return int(found[1].replace(",", "")) / float(found[2])


def _ernie_cpt(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "ernie_cpt", *arguments]


def prepare(path: Path, cache_dir: str) -> tuple[float, float]:
    """``ernie-cpt prepare`` of ``path`` into the empty ``cache_dir``: peak anonymous MiB, words/s."""
    peak = peak_anonymous(_ernie_cpt("prepare", "--corpus", str(path), "--output-dir", cache_dir),
                          _environment(cache_dir), cwd=ROOT)
    return peak.peak_mib, words_per_second(peak.stderr)


def pretrain(path: Path | list[Path], cache_dir: str, run_dir: str, vocab_size: int | None = None) -> float:
    """A seven-task ``pretrain`` of ``path`` (or of several read together; annotations in ``cache_dir``): peak
    anonymous MiB."""
    paths = [str(p) for p in (path if isinstance(path, list) else [path])]
    command = _ernie_cpt("pretrain", "--corpus", *paths, "--cache-dir", cache_dir, "--output-dir", run_dir,
                         "--overwrite", "--model-size", "tiny", "--max-steps", str(PRETRAIN_STEPS), "--tasks",
                         *ERNIE_TASKS, "--seed", str(SEED), "--report-to", "none",
                         *(["--vocab-size", str(vocab_size)] if vocab_size else []))
    return peak_anonymous(command, _environment(cache_dir), cwd=ROOT).peak_mib


def vocabulary(run_dir: str) -> int:
    """The vocabulary size of a pretrain run (its encoder_config.json)."""
    return json.loads((Path(run_dir) / "encoder_config.json").read_text())["vocab_size"]


def inspect(path: Path, cache_dir: str) -> tuple[float, str]:
    """The largest peak anonymous MiB of ``inspect-task TASK -n 0`` over the seven tasks, and its task; each
    run finds only the annotations in ``cache_dir`` (the examples and tokenizers of earlier runs removed). A task
    the corpus cannot give examples for (``ernie-cpt: error:``, as on a corpus of one document) is left out."""
    peaks = {}
    for task in ERNIE_TASKS:
        for derived in ("examples", "tokenizers"):
            shutil.rmtree(Path(cache_dir) / derived, ignore_errors=True)
        command = _ernie_cpt("inspect-task", task, "--corpus", str(path), "--cache-dir", cache_dir, "-n", "0")
        try:
            peaks[task] = peak_anonymous(command, _environment(cache_dir), cwd=ROOT).peak_mib
        except RuntimeError as e:
            if "ernie-cpt: error:" not in str(e):
                raise
    task = max(peaks, key=peaks.__getitem__)
    return peaks[task], task


def _size(stats: dict) -> str:
    return f"{stats['bytes'] / 1e6:.2g} MB, {stats['words']:,} words, {stats['documents']:,} documents"


def measure(settings: Settings, base: float | None = None, recipe: str = "mixed") -> list[Row]:
    """Rows 6a (with the mixed recipe only), 6c, 4c, 6d, 6e and 6f; ``base`` overrides the 1x size in MB, ``recipe``
    the sources of the 16x corpus."""
    base = base or base_megabytes(settings)
    (small, small_stats), (large, large_stats) = corpus(base), corpus(base * 16, recipe)
    built = f"{recipe} recipe, {SHARDS} .jsonl.gz shards" if recipe != "mixed" else "mixed recipe"
    distinct = "distinct documents" if large_stats["distinct"] else "documents repeated with shuffled paragraphs"
    sizes = f"{distinct}: {_size(large_stats)} ({built}) vs {_size(small_stats)} (mixed recipe)"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        caches = {name: str(Path(folder) / name) for name in ("1x", "4x", "16x", "pss")}
        runs = {name: str(Path(folder) / f"run-{name}") for name in ("1x", "16x", "16x-vocab")}
        if recipe == "mixed":
            four, four_stats = corpus(base * 4)
            pss_small = peak_memory(_ernie_cpt("prepare", "--corpus", str(small), "--output-dir", caches["pss"]),
                                    _environment(caches["pss"]))[0]
            pss_four = peak_memory(_ernie_cpt("prepare", "--corpus", str(four), "--output-dir", caches["4x"]),
                                   _environment(caches["4x"]))[0]
            rows.append(Row("6a. peak memory of prepare: corpus x4 vs corpus (distinct documents)", pss_four, pss_small,
                            "MiB", 1.3, higher_is_better=False,
                            note=f"{_size(four_stats)} vs {_size(small_stats)}; PSS of each subprocess tree (spaCy "
                                 f"workers included), empty caches"))
        anon = {name: prepare(path, caches[name]) for name, path in (("1x", small), ("16x", large))}
        trained = {name: pretrain(path, caches[name], runs[name]) for name, path in (("1x", small), ("16x", large))}
        vocab = {name: vocabulary(runs[name]) for name in ("1x", "16x")}
        same_vocab = pretrain(large, caches["16x"], runs["16x-vocab"], vocab["1x"])
        inspected = {name: inspect(path, caches[name]) for name, path in (("1x", small), ("16x", large))}
    steps = f"tiny model, {PRETRAIN_STEPS} steps, the held-out sets evaluated at the end; annotations cached"
    return [
        *rows,
        Row("6c. peak anonymous memory of prepare: corpus x16 vs corpus", anon["16x"][0], anon["1x"][0], "MiB", 1.2,
            higher_is_better=False, note=f"{sizes}; RssAnon summed over the process tree, empty caches"),
        Row("4c. prepare words/s: corpus x16 vs corpus", anon["16x"][1], anon["1x"][1], "words/s", 0.9,
            note="the runs of 6c, as prepare logs them (pipeline loaded to cache entry written)"),
        Row("6d. peak anonymous memory of a 7-task pretrain: corpus x16 vs corpus", trained["16x"], trained["1x"],
            "MiB", 1.2, higher_is_better=False,
            note=f"{steps}; default vocabularies, {vocab['16x']:,} vs {vocab['1x']:,} (the model grows with them)"),
        Row("6e. peak anonymous memory of a 7-task pretrain, one vocabulary: corpus x16 vs corpus", same_vocab,
            trained["1x"], "MiB", 1.2, higher_is_better=False,
            note=f"as 6d, both with the vocabulary of 1x ({vocab['1x']:,}; --vocab-size): the data path alone"),
        Row("6f. peak anonymous memory of inspect-task: corpus x16 vs corpus", inspected["16x"][0], inspected["1x"][0],
            "MiB", 1.2, higher_is_better=False,
            note=f"the largest over the seven tasks ({inspected['16x'][1]} at 16x, {inspected['1x'][1]} at 1x), -n 0, "
                 f"each from the annotations alone"),
    ]


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import machine, table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a 64 KB base corpus instead of 1 MB")
    parser.add_argument("--base", type=float, help="the 1x corpus in MB (default: 1, or 0.064 with --quick)")
    parser.add_argument("--recipe", default="mixed", choices=sorted(scale_corpus.RECIPES),
                        help="the sources of the 16x corpus (default: mixed, those of 1x)")
    args = parser.parse_args(argv)
    rows = measure(Settings(quick=args.quick), args.base, args.recipe)
    print(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(["python -m benchmarks.scale",
                      *(argv if argv is not None else sys.argv[1:])]), **machine()}))
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
