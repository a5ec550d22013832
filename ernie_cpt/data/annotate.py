"""The spaCy pass: paragraphs, sentences, entities and noun chunks per document, cached.

Spans are character offsets into the document text, stored as flat start/end columns. The
result is saved as an Arrow dataset under ``<cache-dir>/annotations/<fingerprint>``, where the
fingerprint covers the corpus content, the spaCy pipeline name and version, and the settings,
so a corpus is annotated once whatever is trained on it later.

Documents are cut into paragraph pieces, and ``datasets.map`` parses the pieces in ``num_proc``
processes, each running spaCy and keeping only the span offsets: unlike ``nlp.pipe(n_process=)``,
whole parsed Docs never travel back to the main process to be deserialized there. The pieces
are then gathered back into one record per document, in corpus order.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import numpy as np

from ernie_cpt.data.annotation_record import RECORD, find_recorded, write_record
from ernie_cpt.data.corpus import corpus_chars, corpus_fingerprint, corpus_words, paragraph_bounds
from ernie_cpt.data.options import PARALLEL_MIN_CHARS, AnnotationOptions
from ernie_cpt.data.read_only import load_read_only
from ernie_cpt.data.spacy_pipeline import (
    load_pipeline,
    noun_chunks,
    pipeline_version,
    resolve_pipeline_name,
    spacy_version,
    warn_if_not_english,
)
from ernie_cpt.errors import UserError
from ernie_cpt.files import check_cache_writable
from ernie_cpt.full_disk import writing
from ernie_cpt.messages import plural
from ernie_cpt.staging import remove_stale, staging_dir
from ernie_cpt.threads import available_cpus

if TYPE_CHECKING:
    from spacy.language import Language

log = logging.getLogger(__name__)

ANNOTATION_SCHEMA = 2  # 2: offsets as int32 (half the bytes of int64); the --annotator in the key
# A sentence end where a long paragraph may be cut: ., ! or ?, closing quotes or brackets, whitespace.
SENTENCE_END = re.compile(r"[.!?][\"')\]\u201d\u2019]*\s+")
WRITER_BATCH_DOCUMENTS = 64  # annotated documents held in memory before they are written
CUT_BATCH_DOCUMENTS = 64  # documents cut into paragraph pieces at a time
SPAN_COLUMNS = ["paragraph", "sentence", "entity", "noun_chunk"]
# What spaCy finds in a paragraph piece (paragraph spans come from the text itself).
PARSED_COLUMNS = [*(f"{kind}_{edge}" for kind in SPAN_COLUMNS[1:] for edge in ("starts", "ends")), "entity_labels"]
FEATURES = datasets.Features(
    {
        "doc_id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "text": datasets.Value("string"),
        **{f"{kind}_{edge}": datasets.Sequence(datasets.Value("int32"))
           for kind in SPAN_COLUMNS for edge in ("starts", "ends")},
        "entity_labels": datasets.Sequence(datasets.Value("string")),
    }
)
# A parsed piece: where it sits, and the spans spaCy found in it (fixed, so that empty shards concatenate).
PARSED_FEATURES = datasets.Features({"doc_index": datasets.Value("int64"), "offset": datasets.Value("int64"),
                                     **{column: FEATURES[column] for column in PARSED_COLUMNS}})


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Char spans of the paragraphs of ``text`` (blank-line separated, surrounding space trimmed)."""
    spans = []
    for start, end in paragraph_bounds(text):
        chunk = text[start:end]
        if chunk.strip():
            left = len(chunk) - len(chunk.lstrip())
            spans.append((start + left, start + len(chunk.rstrip())))
    return spans


def chunk_spans(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut ``text[start:end]`` into pieces of at most ``max_chars``: after the last sentence end (``.``, ``!`` or
    ``?``, closing quotes or brackets, whitespace) in the second half of each piece, else at its last space,
    else at ``max_chars``."""
    pieces = []
    while end - start > max_chars:
        low, high = start + max_chars // 2, start + max_chars
        ends = [found.end() for found in SENTENCE_END.finditer(text, low, high)]
        cut = ends[-1] if ends else text.rfind(" ", low, high)
        cut = cut if cut > start else high
        pieces.append((start, cut))
        start = cut
    pieces.append((start, end))
    return pieces


def spacy_batches(pieces: list[str], max_pieces: int, max_chars: int) -> Iterator[range]:
    """Runs of consecutive ``pieces`` for ``nlp.pipe``: at most ``max_pieces`` of them and ``max_chars``
    characters in all (a longer piece alone). spaCy's memory grows with the characters it parses at once,
    about 3.5 KB each (64 paragraphs of 5,000 characters: 0.8 GB), not with their number."""
    first, chars = 0, 0
    for i, piece in enumerate(pieces):
        if i > first and (i - first == max_pieces or chars + len(piece) > max_chars):
            yield range(first, i)
            first, chars = i, 0
        chars += len(piece)
    if first < len(pieces):
        yield range(first, len(pieces))


def annotation_key(corpus: datasets.Dataset, pipeline: str, options: AnnotationOptions) -> dict[str, Any]:
    """What the annotations of ``corpus`` depend on: its content, the pipeline and spaCy, the settings."""
    return {
        "schema": ANNOTATION_SCHEMA,
        "corpus": corpus_fingerprint(corpus),
        "pipeline": os.path.basename(os.path.normpath(pipeline)),
        "pipeline_version": pipeline_version(pipeline),
        "spacy": spacy_version(),
        "max_chunk_chars": options.max_chunk_chars,
        "annotator": options.annotator,
    }


def annotation_fingerprint(corpus: datasets.Dataset, pipeline: str, options: AnnotationOptions) -> str:
    key = annotation_key(corpus, pipeline, options)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _empty_record(row: dict[str, Any], paragraphs: list[tuple[int, int]]) -> dict[str, Any]:
    record: dict[str, Any] = {"doc_id": row["doc_id"], "title": row["title"], "text": row["text"],
                              "entity_labels": []}
    for kind in SPAN_COLUMNS:
        record[f"{kind}_starts"], record[f"{kind}_ends"] = [], []
    record["paragraph_starts"] = [s for s, _ in paragraphs]
    record["paragraph_ends"] = [e for _, e in paragraphs]
    return record


def _pieces(batch: dict[str, list], indices: list[int], max_chunk_chars: int) -> dict[str, list]:
    """``datasets.map`` function: the paragraphs of each document (long ones cut), with their offset."""
    pieces: dict[str, list] = {"doc_index": [], "offset": [], "piece": []}
    for index, text in zip(indices, batch["text"]):
        for start, end in paragraph_spans(text):
            for s, e in chunk_spans(text, start, end, max_chunk_chars):
                pieces["doc_index"].append(index)
                pieces["offset"].append(s)
                pieces["piece"].append(text[s:e])
    return pieces


@functools.cache
def _cached_pipeline(name: str, annotator: str) -> Language:
    """One pipeline per process (``datasets.map`` workers call the parser many times)."""
    return load_pipeline(name, annotator)


def _parse(batch: dict[str, list], pipeline: str, annotator: str, spacy_batch_size: int,
           max_chunk_chars: int) -> dict[str, list]:
    """``datasets.map`` function: the sentence, entity and noun chunk spans of each piece, as
    offsets into its document (surrounding whitespace trimmed; blank spans dropped). spaCy parses
    at most ``spacy_batch_size`` pieces and ``max_chunk_chars`` characters at once
    (:func:`spacy_batches`). The Docs live in a spaCy memory zone, so the strings of new words are
    freed with them: a worker's vocabulary does not grow with the corpus."""
    columns: dict[str, list] = {column: [] for column in PARSED_COLUMNS}
    nlp = _cached_pipeline(pipeline, annotator)
    pieces, offsets = batch["piece"], batch["offset"]
    with nlp.memory_zone():
        for run in spacy_batches(pieces, spacy_batch_size, max_chunk_chars):
            for doc, offset in zip(nlp.pipe(pieces[run.start:run.stop], batch_size=len(run)),
                                   offsets[run.start:run.stop]):
                _add_spans(columns, doc, offset)
    return columns


def _add_spans(columns: dict[str, list], doc: Any, offset: int) -> None:
    """Append the sentence, entity and noun chunk spans of ``doc`` (a piece at ``offset`` in its document)."""
    for kind, spans in (("sentence", doc.sents), ("entity", doc.ents), ("noun_chunk", noun_chunks(doc))):
        starts, ends = [], []
        for span in spans:
            text_span = span.text.strip()
            if text_span:
                left = offset + span.start_char + span.text.find(text_span)
                starts.append(left)
                ends.append(left + len(text_span))
        columns[f"{kind}_starts"].append(starts)
        columns[f"{kind}_ends"].append(ends)
    columns["entity_labels"].append([e.label_ for e in doc.ents if e.text.strip()])


def _annotation_records(corpus: datasets.Dataset, parsed: datasets.Dataset) -> Iterator[dict[str, Any]]:
    """Generator for `Dataset.from_generator`: one record per document, its parsed pieces gathered."""
    pieces = (dict(zip(batch, values)) for batch in parsed.iter(batch_size=1000) for values in zip(*batch.values()))
    piece = next(pieces, None)
    for index, row in enumerate(corpus):
        record = _empty_record(row, paragraph_spans(row["text"]))
        while piece is not None and piece["doc_index"] == index:
            for column in PARSED_COLUMNS:
                record[column].extend(piece[column])
            piece = next(pieces, None)
        yield record


def cut_pieces(corpus: datasets.Dataset, options: AnnotationOptions, build_dir: Path) -> datasets.Dataset:
    """Every paragraph piece of the corpus (columns doc_index, offset, piece), in corpus order (on disk)."""
    return corpus.map(_pieces, batched=True, batch_size=CUT_BATCH_DOCUMENTS, with_indices=True,
                      remove_columns=corpus.column_names,
                      fn_kwargs={"max_chunk_chars": options.max_chunk_chars},
                      cache_file_name=str(build_dir / "pieces.arrow"), new_fingerprint="pieces",
                      desc="Cutting paragraphs")


def parse_pieces(pieces: datasets.Dataset, pipeline: str, options: AnnotationOptions, n_process: int,
                 build_dir: Path) -> datasets.Dataset:
    """``pieces`` parsed by spaCy in ``n_process`` processes, in their order (on disk): columns doc_index,
    offset and the span columns (:data:`PARSED_COLUMNS`)."""
    n_process = max(1, min(n_process, len(pieces)))
    _cached_pipeline(pipeline, options.annotator)  # loaded once here: forked workers inherit it
    # map gives each process a contiguous shard; dealing the pieces round-robin balances the text
    # per process (contiguous halves of the Austen novels differ by 12%), and the order is restored.
    dealt = dealt_order(len(pieces), n_process)
    parsed = pieces.select(dealt).map(
        _parse, batched=True, batch_size=4 * options.spacy_batch_size, remove_columns=["piece"],
        num_proc=n_process if n_process > 1 else None, features=PARSED_FEATURES,
        fn_kwargs={"pipeline": pipeline, "annotator": options.annotator, "spacy_batch_size": options.spacy_batch_size,
                   "max_chunk_chars": options.max_chunk_chars},
        cache_file_name=str(build_dir / "parsed.arrow"), new_fingerprint="parsed", desc="Annotating with spaCy")
    return parsed.select(np.argsort(dealt))


def dealt_order(n: int, shares: int) -> np.ndarray:
    """Items 0..n-1 dealt round-robin to ``shares`` takers, taker by taker: 0, s, 2s, ..., 1, s+1, ...
    (``numpy.argsort`` of it puts them back)."""
    return np.concatenate([np.arange(first, n, shares) for first in range(shares)]) if n else np.zeros(0, np.int64)


def annotation_target(corpus: datasets.Dataset, options: AnnotationOptions) -> tuple[str, str, Path]:
    """The spaCy pipeline to use, the annotations' fingerprint and their cache folder. Where spaCy or
    the pipeline is not installed, those of annotations of this corpus cached with their record
    (:mod:`ernie_cpt.data.annotation_record`); without any, raises UserError."""
    try:
        pipeline = resolve_pipeline_name(options.spacy_model)
        spacy_version()  # a pipeline package without spaCy itself is not installed either
    except (UserError, importlib.metadata.PackageNotFoundError) as e:
        wanted = {"schema": ANNOTATION_SCHEMA, "corpus": corpus_fingerprint(corpus),
                  "max_chunk_chars": options.max_chunk_chars, "annotator": options.annotator,
                  **({"pipeline": os.path.basename(os.path.normpath(options.spacy_model))}
                     if options.spacy_model else {})}
        found = find_recorded(Path(options.cache_dir) / "annotations", wanted)
        if found is None:
            problem = str(e) if isinstance(e, UserError) else "spaCy is not installed; run: pip install spacy"
            raise UserError(f"{problem}; or pass --cache-dir with annotations of this corpus made where spaCy is "
                            f"installed") from e
        target, record = found
        return record["pipeline"], target.name, target
    fingerprint = annotation_fingerprint(corpus, pipeline, options)
    return pipeline, fingerprint, Path(options.cache_dir) / "annotations" / fingerprint


def spacy_processes(options: AnnotationOptions, chars: int, sharing: int = 1) -> int:
    """The spaCy processes to parse ``chars`` characters with: ``--num-proc``, or for 0 the CPUs this
    process may use divided among the ``sharing`` processes of the job on this machine (at least 1),
    or 1 for a text under PARALLEL_MIN_CHARS."""
    return options.num_proc or (max(1, available_cpus() // sharing) if chars > PARALLEL_MIN_CHARS else 1)


def save_annotations(corpus: datasets.Dataset, parsed: datasets.Dataset, target: Path, build_dir: Path) -> None:
    """One record per document of ``corpus`` from its ``parsed`` pieces (all of them, in corpus order),
    written in ``build_dir`` and renamed to ``target`` (kept when another process wrote it first)."""
    annotated = datasets.Dataset.from_generator(
        _annotation_records, features=FEATURES, cache_dir=str(build_dir / "build"),
        gen_kwargs={"corpus": corpus, "parsed": parsed}, writer_batch_size=WRITER_BATCH_DOCUMENTS)
    annotated.save_to_disk(str(build_dir / "final"))
    del annotated
    try:
        os.replace(build_dir / "final", target)
    except OSError:
        if not (target / "dataset_info.json").exists():
            raise
        log.info("Another process cached the same annotations first; using those")


def annotate(corpus: datasets.Dataset, options: AnnotationOptions) -> datasets.Dataset:
    """Annotations of every document of ``corpus``, from the cache when this corpus was seen before
    (in this process and its ``--num-proc`` workers; :mod:`ernie_cpt.data.sharded_annotation` shares
    the work out over the processes of a torchrun job). Raises UserError for a missing pipeline."""
    pipeline, fingerprint, target = annotation_target(corpus, options)
    warn_if_not_english((text for batch in corpus.select_columns(["text"]).iter(batch_size=100)
                         for text in batch["text"]), pipeline)
    remove_stale(target.parent)  # what a killed prepare left
    if (target / "dataset_info.json").exists():
        log.info("Reusing cached annotations %s (corpus unchanged, pipeline %s)", target, pipeline)
        _record(corpus, pipeline, options, target)
        return load_annotations(target, options)
    check_cache_writable(target.parent, "the annotations of this corpus")
    n_process = spacy_processes(options, corpus_chars(corpus))
    log.info("Annotating %s with %s (%s, --annotator %s); cache: %s", plural(len(corpus), "document"), pipeline,
             plural(n_process, "process", "processes"), options.annotator, target)
    _cached_pipeline(pipeline, options.annotator)  # loaded before the clock starts
    start = time.perf_counter()
    build_dir = None
    try:
        with writing(f"the annotations in {target.parent}", target.parent):
            build_dir = staging_dir(target.parent, fingerprint)
            parsed = parse_pieces(cut_pieces(corpus, options, build_dir), pipeline, options, n_process, build_dir)
            save_annotations(corpus, parsed, target, build_dir)
            del parsed
    finally:
        if build_dir is not None:
            shutil.rmtree(build_dir, ignore_errors=True)
    log_throughput(corpus, time.perf_counter() - start, n_process)
    _record(corpus, pipeline, options, target)
    return load_annotations(target, options)


def log_throughput(corpus: datasets.Dataset, seconds: float, n_process: int) -> None:
    """Log the words/s of an annotation by ``n_process`` spaCy processes in all, for sizing a larger job."""
    words = corpus_words(corpus)
    log.info("Annotated %s words in %.1f s: %s words/s with %s", f"{words:,}", seconds,
             f"{words / max(seconds, 1e-9):,.0f}", plural(n_process, "spaCy process", "spaCy processes"))


def load_annotations(target: Path, options: AnnotationOptions) -> datasets.Dataset:
    """The finished cache entry ``target``, read-only: what is derived from it goes to
    ``<cache-dir>/examples/<fingerprint>`` (:mod:`ernie_cpt.data.read_only`)."""
    return load_read_only(target, Path(options.cache_dir) / "examples" / target.name)


def _record(corpus: datasets.Dataset, pipeline: str, options: AnnotationOptions, target: Path) -> None:
    """The entry's record, for machines without spaCy: written once, where spaCy is installed; an
    entry in a cache this process may not write to (read-only, shared) keeps none."""
    if (target / RECORD).exists() or importlib.util.find_spec("spacy") is None:
        return
    try:
        write_record(target, annotation_key(corpus, pipeline, options))
    except OSError as e:
        log.debug("No record written beside %s (%s)", target, e)
