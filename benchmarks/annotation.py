"""Measure 4: annotation throughput of ``prepare`` against a plain single-process spaCy pass,
and a second ``prepare`` of the same corpus (a cache hit) against the first.

Ours is the ``ernie-cpt prepare`` command with its defaults, into an empty cache: its wall time
as a subprocess (start-up included), taken from the first run of measure 6. The baseline loads
the full pipeline (nothing excluded) and runs ``nlp.pipe`` in one process over the same
paragraphs (a whole novel is too long for one spaCy document), collecting the same sentence,
entity and noun-chunk spans. Both count the corpus's whitespace-separated words. The second
``prepare`` runs in this process (what it costs beyond starting Python and importing torch).
"""

from __future__ import annotations

import time
from pathlib import Path

import datasets
import spacy

from benchmarks.common import Row
from ernie_cpt.data.annotate import annotate, paragraph_spans
from ernie_cpt.data.corpus import CorpusOptions, corpus_chars, corpus_words, load_corpus
from ernie_cpt.data.options import PARALLEL_MIN_CHARS, AnnotationOptions
from ernie_cpt.data.spacy_pipeline import resolve_pipeline_name


def prepare(corpus: Path, cache_dir: str) -> datasets.Dataset:
    """What ``ernie-cpt prepare --corpus CORPUS`` does, with the cache in ``cache_dir``."""
    return annotate(load_corpus(CorpusOptions(corpus=[str(corpus)])), AnnotationOptions(cache_dir=cache_dir))


def plain_spacy(texts: list[str]) -> int:
    """The baseline: the full pipeline over every paragraph in one process; returns the spans found."""
    nlp = spacy.load(resolve_pipeline_name(None))
    paragraphs = [text[s:e] for text in texts for s, e in paragraph_spans(text)]
    spans = 0
    for doc in nlp.pipe(paragraphs):
        spans += len([(s.start_char, s.end_char) for part in (doc.sents, doc.ents, doc.noun_chunks) for s in part])
    return spans


def measure(name: str, corpus: Path, cache_dir: str, first: float) -> list[Row]:
    """Both rows; ``first`` is the seconds of the first ``prepare`` of ``corpus`` into ``cache_dir``."""
    start = time.perf_counter()
    documents = prepare(corpus, cache_dir)
    second = time.perf_counter() - start
    words = corpus_words(documents)
    start = time.perf_counter()
    plain_spacy(documents["text"])
    baseline = time.perf_counter() - start
    processes = "all cores" if corpus_chars(documents) > PARALLEL_MIN_CHARS else "1 process"
    note = f"{name}, {words:,} words, {len(documents)} documents; prepare defaults ({processes})"
    return [
        Row("4a. annotation words/s: prepare vs plain nlp.pipe", words / first, words / baseline, "words/s", 2.0,
            note=note),
        Row("4b. prepare words/s: second run (cache hit) vs first", words / second, words / first, "words/s", 50.0,
            note=f"{second:.2f} s in-process vs {first:.1f} s"),
    ]
