"""The tokenizer: an uncased WordPiece trained on the corpus, or an existing tokenizer folder.

A tokenizer trained here covers printable ASCII whatever the corpus holds: every printable
character is in the trainer's ``initial_alphabet``, and every letter and digit is also a
word-continuing piece (``##7``: one extra line of two-character words is fed to the trainer, as
the alphabet holds only word-initial characters). A corpus without digits in its running text
still tells "Letters 1" from "Letters 2", and no ASCII word becomes [UNK].
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import string
from collections.abc import Iterator
from pathlib import Path

import datasets
from transformers import AutoTokenizer, BertTokenizer, PreTrainedTokenizerBase

from ernie_cpt.data.corpus import corpus_chars, corpus_fingerprint, corpus_words
from ernie_cpt.errors import UserError
from ernie_cpt.files import apply_umask, check_cache_writable
from ernie_cpt.full_disk import writing
from ernie_cpt.heap import release_free_memory
from ernie_cpt.messages import plural
from ernie_cpt.progress import library_progress_shown
from ernie_cpt.staging import remove_stale, staging_dir

log = logging.getLogger(__name__)

# Printable ASCII as the uncased tokenizer's normalizer leaves it (lower case, no whitespace).
ASCII_ALPHABET = sorted({c.lower() for c in string.printable if not c.isspace()})
# "00 01 ... 0z": every letter and digit after the first character of a word, so "##c" is in the vocabulary.
CONTINUATIONS = " ".join(f"0{c}" for c in ASCII_ALPHABET if c.isalnum())
TOKENIZER_VERSION = 2  # part of the cache key: 2 = printable ASCII covered
# The trainer's memory grows with the distinct words it reads (126 MiB for 16 MB of mixed English text,
# 18 MiB for 1 MB), so it reads at most this many characters, spread over the corpus. Trained on 4.1M
# of 13.5M characters, a 30,522-piece vocabulary cuts held-out text into 0.6% more pieces (1.559
# against 1.549 tokens per word); on 1.8M, 2.9% more.
TRAINING_CHARS = 4_000_000


def _texts(documents: datasets.Dataset, budget: int = TRAINING_CHARS, batch_size: int = 64) -> Iterator[str]:
    """The text the trainer reads: every document up to ``budget`` characters in all; beyond it every
    k-th document (k = characters / budget, rounded up), cut where the budget ends. Then the line of
    continuation pieces. One text at a time: `tokenizers` buffers 256 items of the iterator."""
    step = max(1, -(-corpus_chars(documents) // budget))
    left = budget
    for batch in documents.select_columns(["text"]).iter(batch_size=batch_size * step):
        for text in batch["text"][::step]:
            if left <= 0:
                break
            yield text[:left]
            left -= len(text)
    yield CONTINUATIONS


def corpus_vocab_size(documents: datasets.Dataset) -> int:
    """A vocabulary that grows with the corpus: 20·sqrt(words), a multiple of 64, in [2048, 30522].

    Small corpora leave most entries of a BERT-sized vocabulary rare or unseen, and a large
    output layer costs time; large corpora get BERT's size."""
    return int(min(30522, max(2048, round(20 * math.sqrt(corpus_words(documents)) / 64) * 64)))


def train_tokenizer(documents: datasets.Dataset, vocab_size: int) -> PreTrainedTokenizerBase:
    """An uncased BERT WordPiece tokenizer (lower-casing, accent stripping) trained on ``documents`` (on
    ``TRAINING_CHARS`` of their text at most, spread over them), covering printable ASCII (see the
    module docstring)."""
    log.info("Training a WordPiece tokenizer (vocabulary %d) on %s", vocab_size, plural(len(documents), "document"))
    tokenizer = BertTokenizer(do_lower_case=True).train_new_from_iterator(
        _texts(documents), vocab_size=vocab_size, length=len(documents) + 1, show_progress=library_progress_shown(),
        initial_alphabet=ASCII_ALPHABET)
    release_free_memory()  # the trainer's word counts, freed: about 55 MiB at 4M characters
    return tokenizer


def cached_corpus_tokenizer(documents: datasets.Dataset, vocab_size: int | None,
                            cache_dir: str) -> PreTrainedTokenizerBase:
    """The tokenizer trained on ``documents``, trained once and then reused from the cache.

    WordPiece training in `tokenizers` breaks ties in hash-map order, which differs between
    processes (huggingface/tokenizers#1794); caching makes every run on a corpus use the same
    vocabulary, so the same command gives the same results.
    """
    vocab_size = vocab_size or corpus_vocab_size(documents)
    key = hashlib.sha256(f"{corpus_fingerprint(documents)}/{vocab_size}/{TOKENIZER_VERSION}".encode()).hexdigest()[:20]
    target = Path(cache_dir) / "tokenizers" / key
    remove_stale(target.parent)
    if (target / "tokenizer.json").exists():
        log.info("Reusing the tokenizer trained on this corpus: %s", target)
        return load_tokenizer(target)
    check_cache_writable(target.parent, "the tokenizer trained on this corpus")
    tokenizer = train_tokenizer(documents, vocab_size)
    staging = None
    try:
        with writing(f"the tokenizer cache in {target.parent}", target.parent):
            staging = staging_dir(target.parent, key)
            tokenizer.save_pretrained(str(staging))
            apply_umask(staging)  # mkdtemp made it 0700
        try:
            os.replace(staging, target)
        except OSError:  # another process cached it first
            if not (target / "tokenizer.json").exists():
                raise
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return load_tokenizer(target)


# Files that hold a vocabulary: without one, transformers builds a tokenizer from tokenizer_config.json alone
# that has only the special tokens and reads every word as [UNK].
VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                    "tokenizer.model")
# Where a model folder names its vocabulary size: a Hugging Face config, or ernie-cpt's own description
# (ernie_cpt.modeling.saved_model.MODEL_JSON, which this lower layer cannot import).
MODEL_CONFIGS = (("config.json", ()), ("ernie_cpt_model.json", ("encoder_config",)))
EXPORT_HINT = "export the model again (ernie-cpt export RUN OUT_DIR), or copy its tokenizer files into the folder"


def _model_vocab_size(folder: Path) -> int | None:
    """The embedding rows of the model saved in ``folder`` beside its tokenizer, or None when there is none."""
    for name, keys in MODEL_CONFIGS:
        try:
            config = json.loads((folder / name).read_text(encoding="utf-8"))
            for key in keys:
                config = config[key]
            return int(config["vocab_size"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


def check_vocabulary(tokenizer: PreTrainedTokenizerBase, folder: Path) -> None:
    """Refuse a tokenizer folder with no vocabulary file, or a tokenizer with fewer than half the tokens
    of the model saved beside it (a model's embedding rows match its tokenizer, up to padding): such a
    tokenizer reads the text as [UNK]s, and training on it learns nothing."""
    if folder.is_dir() and not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise UserError(f"{folder} has no usable tokenizer: no tokenizer.json or vocab.txt (a tokenizer built "
                        f"from tokenizer_config.json alone has {len(tokenizer)} tokens and reads every word as "
                        f"[UNK]); {EXPORT_HINT}")
    rows = _model_vocab_size(folder) if folder.is_dir() else None
    if rows is not None and len(tokenizer) < rows / 2:
        raise UserError(f"the tokenizer in {folder} has {len(tokenizer)} tokens, far fewer than the "
                        f"{rows} of the model's vocabulary: it is not the tokenizer the model was trained with; "
                        f"{EXPORT_HINT}")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer saved with ``save_pretrained``; it must be a fast one (offsets are needed), with a vocabulary
    file, and not far smaller than the model saved in the same folder (:func:`check_vocabulary`). Raises
    UserError otherwise."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"cannot load a tokenizer from {path}; pass a folder written by save_pretrained") from e
    check_vocabulary(tokenizer, Path(path))
    if not tokenizer.is_fast:
        raise UserError(f"the tokenizer in {path} is not a fast tokenizer; character offsets are needed")
    if tokenizer.mask_token_id is None or tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise UserError(f"the tokenizer in {path} lacks [MASK], [CLS] or [SEP]; use a BERT-style tokenizer")
    return tokenizer
