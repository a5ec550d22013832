"""The Python API: every command of the ``ernie-cpt`` command line as a call, for scripts, notebooks and
torchrun::

    import ernie_cpt

    config = ernie_cpt.PretrainConfig(corpus=["my_texts/"], output_dir="runs/py", model_size="tiny",
                                      tasks=["knowledge_masking", "capitalization"], max_steps=50)
    result = ernie_cpt.pretrain(config)
    print(result.metrics)                       # accuracy matrix, forgetting and BWT on held-out documents
    ernie_cpt.export(result.run_dir, "runs/py-export")

Each call takes a config dataclass or the options as keyword arguments (the command's flags with
underscores), checked as the command line checks them (a wrong value raises
:class:`~ernie_cpt.errors.ConfigError`, a ``ValueError``), and returns a result dataclass. Bad input
raises :class:`~ernie_cpt.errors.UserError` with the message the command line prints.

Process set-up (:func:`session`) happens around each call, so a call works from a fresh interpreter,
a notebook or torchrun alike.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ernie_cpt import threads
from ernie_cpt.config import PretrainConfig
from ernie_cpt.errors import ConfigError

LOGGERS = ("ernie_cpt", "pretasks", "schedules")  # the packages' loggers
QUIET = ("datasets", "transformers", "urllib3", "filelock", "fsspec", "httpx")


def _configure_logging() -> None:
    """INFO from the packages (WARNING on processes other than torchrun's rank 0) to stderr, unless the
    caller has configured logging (the root logger or these loggers have handlers): a notebook's own set-up
    is left alone. The libraries log warnings only and show no progress bars unless their environment
    variables say otherwise."""
    from ernie_cpt.progress import show_library_progress

    rank = int(os.environ.get("RANK", "0"))
    configured = logging.getLogger().handlers or any(logging.getLogger(name).handlers for name in LOGGERS)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
        if not configured:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("ernie-cpt: %(message)s" if rank == 0 else
                                                   f"ernie-cpt[{rank}]: %(message)s"))
            logger.addHandler(handler)
    for name in QUIET:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.WARNING)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # read when transformers loads
    show_library_progress(False)


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Process set-up around one call. Threads: before torch loads, OpenMP threads that yield under CPU
    contention and pools sized to a cgroup quota (:func:`ernie_cpt.threads.configure_process`); once torch is
    loaded that is too late and is skipped, and each run still sets torch's own thread count
    (``num_threads``). Logging: see :func:`_configure_logging`. Distributed: under torchrun the call joins
    the process group and leaves it at the end, unless the caller had joined one already."""
    threads.configure_process()
    _configure_logging()
    joined = _process_group_active()
    try:
        yield
    finally:
        if not joined and _process_group_active():
            from ernie_cpt import distributed

            distributed.shutdown()


def _process_group_active() -> bool:
    if "torch.distributed" not in sys.modules:  # only a call that trained can have joined a process group
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def _config(config: Any, kwargs: dict[str, Any], cls: type) -> Any:
    if config is not None and kwargs:
        raise ConfigError(f"give a {cls.__name__} or keyword arguments, not both")
    if config is None:
        return cls(**kwargs)
    if not isinstance(config, cls):
        raise ConfigError(f"config must be a {cls.__name__}, got {type(config).__name__}")
    return config


@dataclass
class PretrainResult:
    """A finished pre-training run: its directory and the held-out scores of ``metrics.json`` (the accuracy
    matrix, forgetting and backward transfer; empty without held-out documents, and on torchrun's other
    processes)."""

    run_dir: Path
    metrics: dict[str, Any]

    def model(self, checkpoint: str | None = None, stage: int | None = None) -> Any:
        """The trained model (an ``Architecture``: encoder, task heads, ``forward(task, **batch)``) of the latest
        checkpoint, or of ``checkpoint`` (step-N) or the end of ``stage``; loaded on the CPU."""
        from ernie_cpt.training.loading import load_model

        return load_model(self.run_dir, checkpoint, stage).model

    def tokenizer(self) -> Any:
        """The run's tokenizer (a ``PreTrainedTokenizerFast``)."""
        from ernie_cpt.data.tokenizer import load_tokenizer

        return load_tokenizer(self.run_dir / "tokenizer")


def pretrain(config: PretrainConfig | None = None, **kwargs: Any) -> PretrainResult:
    """Pre-train as ``config`` (or ``PretrainConfig(**kwargs)``) says, as ``ernie-cpt pretrain`` does: a new
    run in ``config.output_dir``, or with ``resume=True`` the continuation of the run there. Raises ConfigError
    for a wrong option, UserError for bad input (its message says what to do), ``KeyboardInterrupt`` on
    Ctrl-C or SIGTERM after saving a checkpoint."""
    from ernie_cpt.commands.pretrain import pretrain as run_pretrain

    config = _config(config, kwargs, PretrainConfig)
    with session():
        run_dir = Path(run_pretrain(config))
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    return PretrainResult(run_dir, metrics)


def export(run_dir: str | Path, out_dir: str | Path, **kwargs: Any) -> Path:
    """Write the latest checkpoint of ``run_dir`` (or ``checkpoint="step-N"``, ``stage=K``) to the new folder
    ``out_dir`` with ``save_pretrained``, its tokenizer and a model card (``license``, ``language``), as
    ``ernie-cpt export`` does; returns ``out_dir``. Raises UserError for a folder that is not a run or an
    ``out_dir`` that is not empty."""
    from ernie_cpt.commands.export import export as run_export
    from ernie_cpt.commands.options import ExportOptions
    from ernie_cpt.options import groups_from_values

    options = groups_from_values([ExportOptions], kwargs)[ExportOptions]
    with session():
        return Path(run_export(run_dir, out_dir, options))


@dataclass
class FinetuneResult:
    """Fine-tuning results: for one labelled set, accuracy and macro-F1 on the test file per seed and their
    mean ± std beside the majority class (``format_results`` prints them); for several (``task=[...]``), the
    MT-DNN report of every set, multi-task beside single-task."""

    results: dict[str, Any]
    multitask: bool = False


def finetune(model_dir: str | Path, **kwargs: Any) -> FinetuneResult:
    """Fine-tune ``model_dir`` (an export or a run directory) as ``ernie-cpt finetune`` does: on
    ``train=``/``test=`` files, or on several labelled sets ``task=["NAME:KIND:TRAIN:TEST", ...]`` with
    ``multitask_dir=``. Options are the command's flags with underscores. Raises ConfigError for a wrong
    option, UserError for bad input."""
    from ernie_cpt.commands.options import (
        FinetuneOptions,
        MultiTaskFinetuneOptions,
        check_finetune_mode,
        finetune_option_classes,
    )
    from ernie_cpt.options import groups_from_values
    from ernie_cpt.weighting.options import WeightingOptions

    groups = groups_from_values(finetune_option_classes(), kwargs)
    single, multi, weighting = groups[FinetuneOptions], groups[MultiTaskFinetuneOptions], groups[WeightingOptions]
    check_finetune_mode(single, multi, weighting)
    with session():
        if multi.task:
            from ernie_cpt.commands.finetune_multitask import finetune_multitask

            return FinetuneResult(finetune_multitask(model_dir, single, multi, weighting), multitask=True)
        from ernie_cpt.commands.finetune import finetune as run_finetune

        return FinetuneResult(run_finetune(model_dir, single))


def compare(**kwargs: Any) -> Path:
    """Pre-train several curricula (``schedules=[...]``) or architectures (``architectures=[...]``) on one corpus
    with the same tasks, data and seeds, and write the report of forgetting and transfer, as ``ernie-cpt
    compare`` does; returns the report's ``report.md``. Options are the command's flags with underscores
    (``output_dir``, ``tasks`` and ``corpus`` at least). Raises ConfigError for a wrong option."""
    from ernie_cpt.commands.compare import compare as run_compare
    from ernie_cpt.commands.options import compare_option_classes
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values(compare_option_classes(), kwargs)
    with session():
        return Path(run_compare(groups))


def inspect_task(task: str, **kwargs: Any) -> Any:
    """What the pre-task ``task`` makes of a corpus (``corpus=[...]``; the bundled sample when absent), as
    ``ernie-cpt inspect-task`` shows it: a :class:`~ernie_cpt.commands.inspect_task.TaskInspection` with the
    statistics and ``examples``, a list of dicts (``input_ids``, ``labels``, ``description``, ...).
    ``num_examples``, ``seed``, ``max_seq_length`` and the task's own options are keyword arguments."""
    from ernie_cpt.commands.inspect_task import inspect_task as run_inspect
    from ernie_cpt.commands.options import inspect_option_classes
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values(inspect_option_classes(), kwargs)
    with session():
        return run_inspect(task, groups)


def prepare(**kwargs: Any) -> Any:
    """Read and annotate a corpus with spaCy (``corpus=[...]``, ``cache_dir=``, ``annotator=``, ...), cached for
    later runs, as ``ernie-cpt prepare`` does; returns the annotated documents (a ``datasets.Dataset``)."""
    from ernie_cpt.data.annotate import annotate
    from ernie_cpt.data.corpus import read_corpus
    from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values([CorpusOptions, AnnotationOptions], kwargs)
    with session():
        return annotate(read_corpus(groups[CorpusOptions]), groups[AnnotationOptions])
