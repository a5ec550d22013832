"""The Python API: every command of the ``ernie-cpt`` command line as a call, for scripts, notebooks and
torchrun::

    import ernie_cpt

    config = ernie_cpt.PretrainConfig(corpus=["my_texts/"], output_dir="runs/py", model_size="tiny",
                                      tasks=["knowledge_masking", "capitalization"], max_steps=50)
    result = ernie_cpt.pretrain(config)
    print(result.metrics)                       # accuracy matrix, forgetting and BWT on held-out documents
    ernie_cpt.export(result.run_dir, "runs/py-export")

Each call takes the command's options as keyword arguments (its flags with underscores; ``pretrain`` also
a :class:`~ernie_cpt.config.PretrainConfig`), checked as the command line checks them: a wrong value
raises :class:`~ernie_cpt.errors.ConfigError` (a ``ValueError``) before anything is read or written. Bad
input raises :class:`~ernie_cpt.errors.UserError` with the message the command line prints (it exits
with 2 on it). Each call returns its result (a dataclass, or the folder it wrote).

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
from typing import TYPE_CHECKING, Any

from ernie_cpt import interrupt, threads
from ernie_cpt.config import PretrainConfig
from ernie_cpt.errors import ConfigError

if TYPE_CHECKING:
    import datasets

    from ernie_cpt.commands.inspect_task import TaskInspection
    from ernie_cpt.modeling.architectures import Architecture

LOGGER = "ernie_cpt"
CHILD_LOGGERS = ("pretasks", "schedules")  # the plugin packages beside it log under their own names
QUIET = ("datasets", "transformers", "urllib3", "filelock", "fsspec", "httpx")


def _configure_logging() -> None:
    """The packages' loggers (``ernie_cpt``, ``pretasks``, ``schedules``) at INFO (WARNING on torchrun's
    other ranks) unless the caller has set their level, with a handler to stderr unless logging is
    configured already (the root logger or one of them has a handler): the root logger and a notebook's
    own set-up are left alone. The libraries log warnings only, transformers errors only, and show no
    progress bars, unless the caller has set their levels or environment variables."""
    from ernie_cpt.progress import show_library_progress

    rank = int(os.environ.get("RANK", "0"))
    names = (LOGGER, *CHILD_LOGGERS)
    configured = logging.getLogger().handlers or any(logging.getLogger(name).handlers for name in names)
    for name in names:
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
    """Process set-up around one call (every function here enters it).

    * Threads: before torch loads, OpenMP threads that yield under CPU contention and pools sized to a
      cgroup quota (:func:`ernie_cpt.threads.configure_process`, also run by ``import ernie_cpt``). Once
      torch is loaded (a notebook that imported it first) that is too late and is skipped: the OpenMP
      spin is then the library default, slower on a shared machine. Each run still sets torch's own
      thread count (``num_threads``).
    * Logging: see :func:`_configure_logging`.
    * Signals: in the main thread, SIGTERM (Slurm, Kubernetes, torchrun) stops the call as Ctrl-C does
      (:func:`ernie_cpt.interrupt.handled`); a training run saves a checkpoint at the end of its step and
      raises :class:`~ernie_cpt.interrupt.Interrupted` (a ``KeyboardInterrupt``). The caller's handlers
      are restored after the call.
    * Distributed: under torchrun the first call that needs it joins the process group, which later calls
      use and the process leaves at exit (:func:`ernie_cpt.distributed.init`); a group the caller joined is
      used as it is.
    """
    threads.configure_process()
    _configure_logging()
    with interrupt.handled():
        yield


@dataclass
class PretrainResult:
    """A finished pre-training run.

    Attributes:
        run_dir: the run directory (``config.output_dir``): checkpoints, logs, tokenizer, ``metrics.json``.
        metrics: ``metrics.json`` as a dict: the accuracy matrix on held-out documents (``accuracy_matrix``,
            one row per stage end, one column per task; accuracy in [0, 1]), ``forgetting``, ``drop_from_best``,
            ``backward_transfer`` (Lopez-Paz & Ranzato 2017, GEM), ``average_final`` and the ``curves``. Empty
            when the corpus held no documents out, and on torchrun's other processes.
    """

    run_dir: Path
    metrics: dict[str, Any]

    def model(self, checkpoint: str | None = None, stage: int | None = None) -> Architecture:
        """The trained model of the latest checkpoint, or of ``checkpoint`` (``"step-N"``) or the end of
        ``stage`` (1-based), on the CPU in eval mode: an ``Architecture`` (the encoder, a head per task,
        ``forward(task, input_ids=..., attention_mask=..., token_type_ids=...)`` with ``(batch, seq_len)``
        long tensors). Raises UserError when there is no such checkpoint."""
        from ernie_cpt.training.loading import load_model

        return load_model(self.run_dir, checkpoint, stage).model

    def tokenizer(self) -> Any:
        """The run's tokenizer (a ``PreTrainedTokenizerFast``)."""
        from ernie_cpt.data.tokenizer import load_tokenizer

        return load_tokenizer(self.run_dir / "tokenizer")


def pretrain(config: PretrainConfig | None = None, **kwargs: Any) -> PretrainResult:
    """Pre-train as ``config`` says, or as ``PretrainConfig.from_dict(kwargs)`` (flat names, a task's
    options too: ``pretrain(output_dir="runs/x", mask_ratio=0.2)``), as ``ernie-cpt pretrain`` does: a new
    run in ``config.output_dir``, or with ``resume=True`` the continuation of the run there (ERNIE 2.0,
    Sun et al. 2020, continual multi-task pre-training).

    Raises:
        ConfigError: a wrong option (before anything is read), or both ``config`` and keyword arguments.
        UserError: bad input (a corpus that cannot be read, an ``output_dir`` holding another run, a full
            disk, ...); its message says what to do, and nothing half-written is left.
        Interrupted: Ctrl-C or SIGTERM, after a checkpoint is saved at the end of the step.
    """
    if config is not None and kwargs:
        raise ConfigError("give pretrain a PretrainConfig or keyword arguments, not both")
    if config is None:
        config = PretrainConfig.from_dict(kwargs)
    elif not isinstance(config, PretrainConfig):
        raise ConfigError(f"config must be a PretrainConfig, got {type(config).__name__}")
    with session():
        from ernie_cpt.commands.pretrain import pretrain as run_pretrain

        run_dir = Path(run_pretrain(config))
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file.is_file() else {}
    return PretrainResult(run_dir, metrics)


def export(run_dir: str | Path, out_dir: str | Path, **kwargs: Any) -> Path:
    """Write the latest checkpoint of ``run_dir`` (or ``checkpoint="step-N"``, ``stage=K``) to the new folder
    ``out_dir`` with ``save_pretrained``, with its tokenizer and a model card (``license``, ``language``), as
    ``ernie-cpt export`` does; returns ``out_dir``. A hard-sharing run gives an ``ErnieForMaskedLM``
    (``pipeline("fill-mask", model=out_dir)``, ``AutoModel.from_pretrained(out_dir)``).

    Raises:
        ConfigError: a wrong option.
        UserError: a folder that is not a run, a run without that checkpoint, an ``out_dir`` that is not empty
            or that another command is writing, a full disk (nothing is left in ``out_dir``'s folder).
    """
    from ernie_cpt.commands.options import ExportOptions
    from ernie_cpt.options import groups_from_values

    options = groups_from_values([ExportOptions], kwargs)[ExportOptions]
    with session():
        from ernie_cpt.commands.export import export as run_export

        return Path(run_export(run_dir, out_dir, options))


@dataclass
class FinetuneResult:
    """Fine-tuning results.

    Attributes:
        results: for one labelled set, accuracy and macro-F1 on the test file (in [0, 1]) per seed and their
            mean ± sample std beside the majority class (``ernie_cpt.commands.finetune.format_results`` prints
            them as ``ernie-cpt finetune`` does); for several (``task=[...]``), the MT-DNN report (Liu et al.
            2019) of every set, multi-task beside single-task.
        multitask: whether ``results`` is the multi-task report.
    """

    results: dict[str, Any]
    multitask: bool = False


def finetune(model_dir: str | Path, **kwargs: Any) -> FinetuneResult:
    """Fine-tune ``model_dir`` (an export or a run directory) as ``ernie-cpt finetune`` does: on
    ``train=``/``test=`` files (.jsonl, .csv or .parquet), or on several labelled sets
    ``task=["NAME:KIND:TRAIN:TEST", ...]`` with ``multitask_dir=``. Options are the command's flags with
    underscores (``seeds=[1, 2, 3]``, ``learning_rate=[1e-4]``, ``output_dir=``).

    Raises:
        ConfigError: a wrong option, or options of both modes.
        UserError: bad input (a model folder or a labelled file that cannot be read, an output folder in use).
    """
    from ernie_cpt.commands.options import (
        FinetuneOptions,
        MultiTaskFinetuneOptions,
        check_finetune_mode,
        finetune_option_classes,
    )
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values(finetune_option_classes(), kwargs)
    single, multi = groups.pop(FinetuneOptions), groups.pop(MultiTaskFinetuneOptions)
    weighting = groups  # what is left: the loss weighting's groups (its choice and each weighting's own)
    check_finetune_mode(single, multi, weighting)
    with session():
        if multi.task:
            from ernie_cpt.commands.finetune_multitask import finetune_multitask

            return FinetuneResult(finetune_multitask(model_dir, single, multi, weighting), multitask=True)
        from ernie_cpt.commands.finetune import finetune as run_finetune

        return FinetuneResult(run_finetune(model_dir, single))


@dataclass
class CompareResult:
    """A comparison of curricula or architectures.

    Attributes:
        report: ``report.md`` (with its plots beside it, under ``output_dir/report/``).
        summary: ``summary.json``: the setup, each variant's estimates (mean and spread over seeds of
            forgetting, backward and forward transfer and the downstream scores) and one row per run.
    """

    report: Path
    summary: dict[str, Any]


def compare(**kwargs: Any) -> CompareResult:
    """Pre-train several curricula (``schedules=[...]``) or architectures (``architectures=[...]``, or
    ``architectures="all"``: every registered one) on one corpus with the same tasks, data and seeds, and report
    forgetting and transfer, as ``ernie-cpt compare`` does.
    Options are the command's flags with underscores (``output_dir``, ``tasks`` and ``corpus`` at least).
    Started again, it keeps the finished runs.

    Raises:
        ConfigError: a wrong option.
        UserError: bad input; Interrupted: Ctrl-C or SIGTERM (finished runs are kept).
    """
    from ernie_cpt.commands.options import compare_option_classes
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values(compare_option_classes(), kwargs)
    with session():
        from ernie_cpt.commands.compare import compare as run_compare

        report = Path(run_compare(groups))
    return CompareResult(report, json.loads((report.parent / "summary.json").read_text(encoding="utf-8")))


def inspect_task(task: str, **kwargs: Any) -> TaskInspection:
    """What the pre-task ``task`` makes of a corpus (``corpus=[...]``; the bundled sample when absent), as
    ``ernie-cpt inspect-task`` shows it: a :class:`~ernie_cpt.commands.inspect_task.TaskInspection` with the
    statistics (examples per 1,000 words, the label distribution) and ``examples``, a list of dicts
    (``input_ids`` and ``labels`` as lists of ints, ``description``, ...; ``report()`` is the printed text).
    ``num_examples``, ``seed``, ``max_seq_length`` and the task's own options are keyword arguments.

    Raises:
        ConfigError: a wrong option or an unknown task (the closest name suggested).
        UserError: a corpus that cannot be read.
    """
    from ernie_cpt.commands.options import inspect_option_classes
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values(inspect_option_classes(), kwargs)
    with session():
        from ernie_cpt.commands.inspect_task import inspect_task as run_inspect

        return run_inspect(task, groups)


def prepare(**kwargs: Any) -> datasets.Dataset:
    """Read and annotate a corpus with spaCy (``corpus=[...]``, ``cache_dir=``, ``annotator=``, ...), cached for
    later runs, as ``ernie-cpt prepare`` does (under torchrun every process parses a share); returns the
    annotated documents, a ``datasets.Dataset`` with one row per document (``text`` and the paragraph,
    sentence, entity and noun-chunk spans as character offsets).

    Raises:
        ConfigError: a wrong option.
        UserError: a corpus that cannot be read, a cache that cannot be written.
    """
    from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
    from ernie_cpt.options import groups_from_values

    groups = groups_from_values([CorpusOptions, AnnotationOptions], kwargs)
    with session():
        from ernie_cpt.commands.prepare import prepare as run_prepare

        return run_prepare(groups)
