"""ernie-cpt: ERNIE 2.0-style continual pre-training of language models.

The public names load lazily (PEP 562), so ``import ernie_cpt`` (and the command line's ``--help``)
loads neither torch, transformers, datasets nor spaCy; see :mod:`ernie_cpt.api` for an example.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_PUBLIC = {
    "PretrainConfig": "ernie_cpt.config",
    "ConfigError": "ernie_cpt.errors",
    "UserError": "ernie_cpt.errors",
    "PretrainResult": "ernie_cpt.api",
    "FinetuneResult": "ernie_cpt.api",
    "pretrain": "ernie_cpt.api",
    "export": "ernie_cpt.api",
    "finetune": "ernie_cpt.api",
    "compare": "ernie_cpt.api",
    "inspect_task": "ernie_cpt.api",
    "prepare": "ernie_cpt.api",
    "Corpus": "ernie_cpt.builders",
    "build_corpus": "ernie_cpt.builders",
    "build_tokenizer": "ernie_cpt.builders",
    "build_tasks": "ernie_cpt.builders",
    "build_model": "ernie_cpt.builders",
    "build_trainer": "ernie_cpt.builders",
}

__all__ = [
    "ConfigError", "Corpus", "FinetuneResult", "PretrainConfig", "PretrainResult", "UserError", "__version__",
    "build_corpus", "build_model", "build_tasks", "build_tokenizer", "build_trainer", "compare", "export",
    "finetune", "inspect_task", "prepare", "pretrain",
]

if TYPE_CHECKING:
    from ernie_cpt.api import FinetuneResult, PretrainResult, compare, export, finetune, inspect_task, prepare, pretrain
    from ernie_cpt.builders import Corpus, build_corpus, build_model, build_tasks, build_tokenizer, build_trainer
    from ernie_cpt.config import PretrainConfig
    from ernie_cpt.errors import ConfigError, UserError


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'ernie_cpt' has no attribute '{name}'")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
