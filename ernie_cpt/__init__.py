"""ernie-cpt: ERNIE 2.0-style continual pre-training of language models (Sun et al. 2020).

Everything the ``ernie-cpt`` command line does is a call here (:mod:`ernie_cpt.api`)::

    import ernie_cpt

    config = ernie_cpt.PretrainConfig(corpus=["my_texts/"], output_dir="runs/py", model_size="tiny",
                                      tasks=["knowledge_masking", "capitalization"], max_steps=50)
    result = ernie_cpt.pretrain(config)   # ernie_cpt.ConfigError (a ValueError) for a wrong option
    print(result.metrics)                 # held-out accuracy matrix, forgetting, backward transfer
    ernie_cpt.export(result.run_dir, "runs/py-export")

The public names load lazily (PEP 562), so ``import ernie_cpt`` (and the command line's ``--help``)
loads neither torch, transformers, datasets nor spaCy. Importing it sets up the process's CPU threads
for a shared machine (:func:`ernie_cpt.threads.configure_process`: the OpenMP spin, pools sized to a
cgroup quota), which works only before torch loads: import ernie_cpt first, or set ``OMP_WAIT_POLICY``
or ``GOMP_SPINCOUNT`` yourself to keep OpenMP's defaults.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ernie_cpt import threads

__version__ = "0.1.0"

threads.configure_process()  # before torch loads (a no-op after): OpenMP threads that yield under contention

# public name -> the module that defines it
_PUBLIC = {
    "PretrainConfig": "ernie_cpt.config",
    "ConfigError": "ernie_cpt.errors",
    "UserError": "ernie_cpt.errors",
    "PretrainResult": "ernie_cpt.api",
    "FinetuneResult": "ernie_cpt.api",
    "CompareResult": "ernie_cpt.api",
    "TaskInspection": "ernie_cpt.commands.inspect_task",
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
    "CompareResult", "ConfigError", "Corpus", "FinetuneResult", "PretrainConfig", "PretrainResult", "TaskInspection",
    "UserError", "__version__", "build_corpus", "build_model", "build_tasks", "build_tokenizer", "build_trainer",
    "compare", "export", "finetune", "inspect_task", "prepare", "pretrain",
]

if TYPE_CHECKING:
    from ernie_cpt.api import (
        CompareResult,
        FinetuneResult,
        PretrainResult,
        compare,
        export,
        finetune,
        inspect_task,
        prepare,
        pretrain,
    )
    from ernie_cpt.builders import Corpus, build_corpus, build_model, build_tasks, build_tokenizer, build_trainer
    from ernie_cpt.commands.inspect_task import TaskInspection
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
