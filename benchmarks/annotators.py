"""Measure 4d: annotation words/s of ``--annotator fast`` against ``--annotator full``, per process; and
what ``fast`` changes in the annotations and in each task's examples.

Each side of 4d is an ``ernie-cpt prepare --num-proc 1`` subprocess into an empty cache, on the same
corpus; its words/s is the one ``prepare`` logs (pipeline loaded to cache entry written). The sides
alternate, ``Settings.rounds`` times, and each keeps its fastest run. One spaCy process each: the
figure is the per-process throughput of the cost model (docs/results/scale.md).

``python -m benchmarks.annotators CORPUS [--rounds N]`` also prints where each pipeline spends its time
(:func:`component_seconds`: the seconds of each spaCy component over the first PROFILE_PARAGRAPHS
paragraphs of CORPUS, best of N), then annotates CORPUS both ways and prints, per annotator, the
sentences, entities and noun chunks found, and per task the examples built (on every document, as
``inspect-task`` builds them, with the same tokenizer: it is trained on the text, which both share)
and the label distribution of a seeded sample of 2,000 of them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.anon_memory import peak_anonymous
from benchmarks.common import SEED, Row, Settings
from benchmarks.memory import ROOT
from benchmarks.scale import words_per_second

ANNOTATORS = ("fast", "full")
SHOWN_LABELS = 4  # the most frequent labels of a task shown in the table
PROFILE_PARAGRAPHS = 2000


def annotation_rate(corpus: Path, annotator: str) -> float:
    """words/s of one ``prepare --annotator ANNOTATOR --num-proc 1`` of ``corpus`` into a new cache."""
    with tempfile.TemporaryDirectory(prefix="bench-annotator-") as cache_dir:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "HF_DATASETS_CACHE": f"{cache_dir}/datasets"}
        run = peak_anonymous([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(corpus), "--output-dir",
                              cache_dir, "--annotator", annotator, "--num-proc", "1"], env, cwd=ROOT)
    return words_per_second(run.stderr)


def measure(name: str, corpus: Path, settings: Settings, rounds: int | None = None) -> Row:
    """Row 4d: fast against full, best of ``rounds`` (default ``settings.rounds``) each."""
    rounds = rounds or settings.rounds
    best: dict[str, float] = {}
    for _ in range(rounds):
        for annotator in ANNOTATORS:
            best[annotator] = max(best.get(annotator, 0.0), annotation_rate(corpus, annotator))
    return Row("4d. annotation words/s per process: --annotator fast vs full", best["fast"], best["full"], "words/s",
               1.5, note=f"{name}; prepare --num-proc 1 into an empty cache, best of {rounds}")


def component_seconds(paragraphs: list[str], annotator: str) -> dict[str, float]:
    """Seconds of each step of ``annotator``'s pipeline over ``paragraphs``, as ``prepare`` runs it: the
    tokenizer, each component in turn (batches of 64), then reading the sentences, entities and noun chunks."""
    import time

    from ernie_cpt.data.spacy_pipeline import load_pipeline, noun_chunks, resolve_pipeline_name

    nlp = load_pipeline(resolve_pipeline_name(None), annotator)
    seconds = {}
    with nlp.memory_zone():
        start = time.perf_counter()
        docs = [nlp.make_doc(text) for text in paragraphs]
        seconds["tokenizer"] = time.perf_counter() - start
        for name, component in nlp.pipeline:
            start = time.perf_counter()
            pipe = getattr(component, "pipe", None)  # a plain function component has none
            docs = list(pipe(docs, batch_size=64)) if pipe else [component(doc) for doc in docs]
            seconds[name] = time.perf_counter() - start
        start = time.perf_counter()
        spans = [(list(doc.sents), list(doc.ents), noun_chunks(doc)) for doc in docs]
        seconds["spans"] = time.perf_counter() - start
        del spans, docs
    return seconds


def profile_table(corpus: Path, rounds: int) -> str:
    """Best-of-``rounds`` seconds of each step of both pipelines (alternating) over the first paragraphs of
    ``corpus``, as Markdown, with the words/s each adds up to."""
    from ernie_cpt.data.annotate import paragraph_spans
    from ernie_cpt.data.corpus import CorpusOptions, read_corpus

    paragraphs: list[str] = []
    for row in read_corpus(CorpusOptions(corpus=[str(corpus)])):
        paragraphs += [row["text"][start:end] for start, end in paragraph_spans(row["text"])]
        if len(paragraphs) >= PROFILE_PARAGRAPHS:
            break
    paragraphs = paragraphs[:PROFILE_PARAGRAPHS]
    best: dict[str, dict[str, float]] = {}
    for _ in range(rounds):
        for annotator in ANNOTATORS:
            for step, seconds in component_seconds(paragraphs, annotator).items():
                best.setdefault(annotator, {})[step] = min(best.get(annotator, {}).get(step, seconds), seconds)
    words = sum(len(text.split()) for text in paragraphs)
    steps = [*dict.fromkeys(step for annotator in ANNOTATORS[::-1] for step in best[annotator] if step != "spans"),
             "spans"]
    lines = [f"| step ({len(paragraphs):,} paragraphs, {words:,} words) | full (s) | fast (s) |", "|---|---:|---:|"]
    lines += [f"| {step} | {best['full'].get(step, 0):.2f} | {best['fast'].get(step, 0):.2f} |" for step in steps]
    totals = {annotator: sum(best[annotator].values()) for annotator in ANNOTATORS}
    lines.append(f"| total | {totals['full']:.2f} ({words / totals['full']:,.0f} words/s) | {totals['fast']:.2f} "
                 f"({words / totals['fast']:,.0f} words/s) |")
    return "\n".join(lines)


def example_statistics(corpus: Path, annotator: str, cache_dir: str) -> dict[str, Any]:
    """The spans ``annotator`` finds in ``corpus`` and, per ERNIE task, its examples and sampled labels."""
    from ernie_cpt.data.annotate import annotate
    from ernie_cpt.data.column_stats import total_length
    from ernie_cpt.data.corpus import CorpusOptions, read_corpus
    from ernie_cpt.data.options import AnnotationOptions
    from ernie_cpt.data.tokenizer import cached_corpus_tokenizer
    from pretasks import ERNIE_TASKS, TaskUnavailable, get_task

    documents = annotate(read_corpus(CorpusOptions(corpus=[str(corpus)])),
                         AnnotationOptions(cache_dir=cache_dir, annotator=annotator))
    found: dict[str, Any] = {kind: total_length(documents, f"{kind}_starts")
                             for kind in ("sentence", "entity", "noun_chunk")}
    tokenizer = cached_corpus_tokenizer(documents, None, cache_dir)
    for name in ERNIE_TASKS:
        task_class = get_task(name)
        task = task_class(tokenizer, task_class.options_class(), 128)
        try:
            rows = task.build_examples(documents)
        except TaskUnavailable:
            found[name] = {"examples": 0, "labels": {}}
            continue
        counts, _ = task.sample_labels(rows, SEED)
        total = sum(counts.values()) or 1
        labels = {} if task.head == "masked_lm" else {task.label_name(label): count / total  # not token ids
                                                      for label, count in Counter(counts).most_common()}
        found[name] = {"examples": len(rows), "labels": labels}
    return found


def _labels(labels: dict[str, float]) -> str:
    if not labels:
        return "-"
    shown = [f"{label} {share:.0%}" for label, share in list(labels.items())[:SHOWN_LABELS]]
    return ", ".join(shown + (["..."] if len(labels) > SHOWN_LABELS else []))


def statistics_table(stats: dict[str, dict[str, Any]]) -> str:
    """The spans and each task's examples and labels, fast beside full, as Markdown."""
    lines = ["| | full | fast | fast / full |", "|---|---:|---:|---:|"]
    for kind in ("sentence", "entity", "noun_chunk"):
        full, fast = stats["full"][kind], stats["fast"][kind]
        lines.append(f"| {kind.replace('_', ' ')}s | {full:,} | {fast:,} | {fast / max(full, 1):.2f} |")
    tasks = [name for name in stats["full"] if isinstance(stats["full"][name], dict)]
    for name in tasks:
        full, fast = stats["full"][name], stats["fast"][name]
        lines.append(f"| {name} examples | {full['examples']:,} | {fast['examples']:,} | "
                     f"{fast['examples'] / max(full['examples'], 1):.2f} |")
    lines += ["", "| task | labels, full | labels, fast |", "|---|---|---|"]
    lines += [f"| {name} | {_labels(stats['full'][name]['labels'])} | {_labels(stats['fast'][name]['labels'])} |"
              for name in tasks]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import machine, table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.annotators", description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="the corpus (any --corpus path)")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each annotator, alternating (default 2)")
    args = parser.parse_args(argv)
    row = measure(args.corpus.name, args.corpus, Settings(quick=False), args.rounds)
    profile = profile_table(args.corpus, args.rounds)
    with tempfile.TemporaryDirectory(prefix="bench-annotators-") as cache_dir:
        stats = {annotator: example_statistics(args.corpus, annotator, cache_dir) for annotator in ANNOTATORS}
    print(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(
        ["python -m benchmarks.annotators", *(argv if argv is not None else sys.argv[1:])]), **machine()}))
    print(table([row]))
    print()
    print(profile)
    print()
    print(statistics_table(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
