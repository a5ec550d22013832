"""``ernie-cpt pretrain``: corpus → annotations → task examples → batches → trainer → checkpoints.

The run directory holds everything needed to resume or export:

    run_config.json      the resolved options of the run
    encoder_config.json  the ErnieConfig of the encoder
    tasks.json           task name → task id (row of the task embedding)
    tokenizer/           the tokenizer (trained on the corpus or copied)
    checkpoints/         step-NNNNNNNN/ folders and the ``latest`` pointer
    logs/                train.jsonl, eval.jsonl, tensorboard/
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import ErnieConfig, ErnieModel

from ernie_cpt.annotate import AnnotationOptions, annotate
from ernie_cpt.batching import TaskStream, eval_batches
from ernie_cpt.checkpoint import atomic_write_text, checkpoints
from ernie_cpt.corpus import CorpusOptions, load_corpus, split_documents
from ernie_cpt.errors import UserError
from ernie_cpt.evaluate import EvaluationOptions
from ernie_cpt.forgetting import continual_metrics
from ernie_cpt.model import ErnieMultiTask, ModelOptions, encoder_config, encoder_from_checkpoint
from ernie_cpt.options import option, to_dict
from ernie_cpt.plan import plan_table
from ernie_cpt.tokenizer import TokenizerOptions, cached_corpus_tokenizer, load_tokenizer
from ernie_cpt.trainer import TrainingOptions, train
from pretasks import TASKS, PreTask, TaskUnavailable, get_task
from schedules import ScheduleOptions, build_schedule
from schedules.weighting import WeightingOptions, build_weighting

log = logging.getLogger(__name__)

# Options that may change between a run and its resumption without changing the result (a run
# directory may also be moved).
RESUMABLE_CHANGES = {"output_dir", "resume", "overwrite", "save_steps", "save_total_limit", "logging_steps",
                     "eval_steps", "dataloader_workers", "num_proc", "cache_dir", "device", "spacy_batch_size"}


@dataclass
class RunOptions:
    """Run: what to train and where"""

    output_dir: str | None = option(None, "Run directory for checkpoints, logs and the tokenizer (required)")
    tasks: list[str] = option(["knowledge_masking"], "Pre-training tasks, in curriculum order")
    max_seq_length: int = option(128, "Maximum tokens per example, [CLS] and [SEP] included")
    resume: bool = option(False, "Continue the run in --output-dir from its latest checkpoint")
    overwrite: bool = option(False, "Delete an existing run in --output-dir and start over")


def option_classes() -> list[type]:
    """Every option group of ``pretrain``: the framework's and each registered task's."""
    return [RunOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, ModelOptions, TrainingOptions,
            ScheduleOptions, WeightingOptions, EvaluationOptions, *(task.options_class for task in TASKS.values())]


def _check_run_dir(run_dir: Path, config: dict[str, Any], run: RunOptions) -> None:
    config_file = run_dir / "run_config.json"
    if run.resume:
        if not config_file.exists() or not checkpoints(run_dir):
            raise UserError(f"--resume: {run_dir} holds no checkpoint to resume; run without --resume to start")
        previous = json.loads(config_file.read_text(encoding="utf-8"))
        changed = sorted(k for k in config if k not in RESUMABLE_CHANGES and previous.get(k) != config[k])
        if changed:
            raise UserError(f"--resume: options differ from the run in {run_dir}: {', '.join(changed)}; "
                            f"resume with the same options or use a new --output-dir")
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not run.overwrite:
            raise UserError(f"{run_dir} is not empty; pass --resume to continue the run there, --overwrite to "
                            f"replace it, or choose another --output-dir")
        shutil.rmtree(run_dir)


@contextlib.contextmanager
def _run_directory(run_dir: Path) -> Iterator[None]:
    """Create ``run_dir``; if set-up or training fails before the first checkpoint, remove it again."""
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if created and not checkpoints(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _tokenizer(run_dir: Path, resume: bool, tokenizer_options: TokenizerOptions, model_options: ModelOptions,
               train_documents: datasets.Dataset, cache_dir: str) -> Any:
    if resume:
        return load_tokenizer(run_dir / "tokenizer")
    if model_options.init_from:
        return load_tokenizer(model_options.init_from)
    if tokenizer_options.tokenizer:
        return load_tokenizer(tokenizer_options.tokenizer)
    return cached_corpus_tokenizer(train_documents, tokenizer_options.vocab_size, cache_dir)


def _model(run_dir: Path, resume: bool, model_options: ModelOptions, tasks: dict[str, PreTask],
           vocab_size: int, max_seq_length: int, shared_task_id: bool) -> ErnieMultiTask:
    """The encoder (new, resumed or from --init-from) with each task's head; every task uses its
    own task id, or id 0 with ``shared_task_id``."""
    mlm_weights: dict[str, torch.Tensor] = {}
    if resume:
        encoder = ErnieModel(ErnieConfig.from_json_file(str(run_dir / "encoder_config.json")))
    elif model_options.init_from:
        encoder, mlm_weights = encoder_from_checkpoint(model_options.init_from)
    else:
        encoder = ErnieModel(encoder_config(model_options, vocab_size, max_seq_length))
    if encoder.config.max_position_embeddings < max_seq_length:
        raise UserError(f"--max-seq-length {max_seq_length} exceeds the model's "
                        f"{encoder.config.max_position_embeddings} positions; lower it")
    heads = {name: task.make_head(encoder) for name, task in tasks.items()}
    if "knowledge_masking" in heads and mlm_weights:
        head_state = {k: v for k, v in mlm_weights.items() if k in heads["knowledge_masking"].state_dict()}
        heads["knowledge_masking"].load_state_dict(head_state, strict=False)
    return ErnieMultiTask(encoder, heads, {name: 0 if shared_task_id else task.task_id for name, task in tasks.items()},
                          {name: task.num_labels for name, task in tasks.items()})


def _task_data(tasks: dict[str, PreTask], split: datasets.DatasetDict, training: TrainingOptions,
               evaluation: EvaluationOptions, num_proc: int | None) -> tuple[dict[str, TaskStream], dict]:
    """Each task's training stream and held-out batches. A task the held-out documents cannot
    give examples for is trained but not evaluated, with a warning."""
    streams, evals = {}, {}
    for name, task in tasks.items():
        rows = task.build_examples(split["train"], num_proc=num_proc)
        if len(rows) == 0:
            raise UserError(f"task {name} found no training examples in this corpus; add text or drop the task")
        streams[name] = TaskStream(task, rows, training.batch_size, training.seed, training.dataloader_workers)
        if not len(split["test"]):
            continue
        try:
            held_out = task.build_examples(split["test"], num_proc=num_proc, background=split["train"],
                                           held_out=True)
        except TaskUnavailable as e:
            log.warning("task %s is not evaluated: the held-out documents give no examples (%s)", name, e)
            continue
        if len(held_out):
            held_out = held_out.shuffle(seed=training.seed).select(range(min(len(held_out),
                                                                             evaluation.eval_max_examples)))
            evals[name] = eval_batches(task, held_out, evaluation.eval_batch_size, training.seed)
    return streams, evals


def _validate(run: RunOptions, training: TrainingOptions) -> None:
    if not run.output_dir:
        raise UserError("pretrain needs --output-dir DIR (where checkpoints and logs go)")
    for name in ("max_steps", "batch_size", "grad_accum_steps", "save_steps", "logging_steps", "save_total_limit"):
        if getattr(training, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1")
    if run.max_seq_length < 8:
        raise UserError("--max-seq-length must be at least 8")


def pretrain(options: dict[type, Any]) -> Path:
    """Pre-train as ``options`` say; returns the run directory."""
    run, training, evaluation = options[RunOptions], options[TrainingOptions], options[EvaluationOptions]
    model_options = options[ModelOptions]
    _validate(run, training)
    task_classes = {name: get_task(name) for name in run.tasks}
    schedule_options = options[ScheduleOptions]
    schedule = build_schedule(schedule_options, run.tasks, training.max_steps)
    weighting = (build_weighting(options[WeightingOptions], run.tasks)
                 if schedule_options.task_mixing == "all" else None)
    run_dir = Path(run.output_dir)
    config = {**to_dict(*options.values()), "stages": [stage.steps for stage in schedule]}
    _check_run_dir(run_dir, config, run)

    documents = annotate(load_corpus(options[CorpusOptions]), options[AnnotationOptions])
    split = split_documents(documents, evaluation.eval_fraction, training.seed)
    log.info("%d training and %d held-out documents", len(split["train"]), len(split["test"]))
    with _run_directory(run_dir):
        tokenizer = _tokenizer(run_dir, run.resume, options[TokenizerOptions], model_options, split["train"],
                               options[AnnotationOptions].cache_dir)
        tasks = {name: cls(tokenizer, options[cls.options_class], run.max_seq_length)
                 for name, cls in task_classes.items()}
        streams, evals = _task_data(tasks, split, training, evaluation,
                                    options[AnnotationOptions].num_proc or None)
        torch.manual_seed(training.seed)
        model = _model(run_dir, run.resume, model_options, tasks, len(tokenizer), run.max_seq_length,
                       schedule_options.shared_task_id)
        if not run.resume:
            tokenizer.save_pretrained(str(run_dir / "tokenizer"))
            model.encoder.config.to_json_file(str(run_dir / "encoder_config.json"))
            atomic_write_text(run_dir / "tasks.json", json.dumps(model.task_ids, indent=2))
            atomic_write_text(run_dir / "run_config.json", json.dumps(config, indent=2))
        log.info("Schedule %s:\n%s", schedule_options.schedule,
                 plan_table(schedule, run.tasks, schedule_options.task_mixing))
        n_params = sum(p.numel() for p in model.encoder.parameters())
        log.info("Encoder: %d layers, hidden %d, %.1fM parameters; %d steps over %d stage(s)",
                 model.encoder.config.num_hidden_layers, model.encoder.config.hidden_size, n_params / 1e6,
                 sum(s.optimizer_steps(schedule_options.task_mixing) for s in schedule), len(schedule))
        results = train(model, streams, evals, schedule, training, schedule_options, weighting,
                        evaluation, run_dir, run.resume)
        if evals:
            metrics = continual_metrics(run_dir)
            log.info("Accuracy matrix, forgetting and BWT: %s (mean forgetting %.4f, BWT %.4f, average final "
                     "score %.4f)", run_dir / "metrics.json", metrics["mean_forgetting"],
                     metrics["backward_transfer"], metrics["average_final"])
    for task, metrics in results.items():
        f1 = f", F1 {metrics['f1']:.4f} (majority class {metrics['majority_f1']:.4f})" if "f1" in metrics else ""
        log.info("Held-out %s: loss %.4f, accuracy %.4f (majority class %.4f)%s over %d targets", task,
                 metrics["loss"], metrics["accuracy"], metrics["majority_accuracy"], f1, metrics["scored"])
    return run_dir
