"""``ernie-cpt pretrain``: corpus → annotations → task examples → batches → trainer → checkpoints.

The run directory holds everything needed to resume or export:

    run_config.json      the resolved options of the run
    encoder_config.json  the ErnieConfig of the encoder
    tasks.json           task name → task id (row of the task embedding) and the embedding's size,
                         fixed when the run starts (ernie_cpt.training.task_ids)
    architecture.json    the model's ``describe()``: with encoder_config.json and a checkpoint's
                         weights, ``model_from_description`` rebuilds the model exactly
    tokenizer/           the tokenizer (trained on the corpus or copied)
    checkpoints/         step-NNNNNNNN/ folders and the ``latest`` pointer
    logs/                train.jsonl, eval.jsonl, weights.jsonl, routing.jsonl, tensorboard/
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import ErnieConfig

from ernie_cpt import distributed
from ernie_cpt.builders import Corpus, build_corpus, build_model, build_tasks, build_tokenizer
from ernie_cpt.claims import claim_on_main
from ernie_cpt.commands.options import RunOptions
from ernie_cpt.commands.plan import plan_table
from ernie_cpt.config import PretrainConfig
from ernie_cpt.data.corpus import corpus_chars, corpus_fingerprint, corpus_words
from ernie_cpt.data.options import AnnotationOptions, TokenizerOptions
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import ConfigError, UserError
from ernie_cpt.evaluation.forgetting import continual_metrics
from ernie_cpt.files import check_output_path
from ernie_cpt.full_disk import writing
from ernie_cpt.glosses import gloss
from ernie_cpt.messages import plural
from ernie_cpt.modeling.architectures import check_expert_layers
from ernie_cpt.modeling.encoder import check_fits, check_init_from, preset_layers
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.options import absent_values, to_dict
from ernie_cpt.threads import torch_thread_count, torch_threads
from ernie_cpt.training.batching import TaskStream, eval_batches
from ernie_cpt.training.checkpoint import Checkpoint, atomic_write_text, read_checkpoint
from ernie_cpt.training.device import pick_device
from ernie_cpt.training.loading import SavedModel, is_saved_model, load_model
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.training.run_dir import check_stages, resolve_resume, run_directory, write_config
from ernie_cpt.training.run_environment import check_corpus, check_split, environment, held_out_fingerprint
from ernie_cpt.training.task_ids import assign_task_ids, read_task_ids, write_task_ids
from ernie_cpt.training.trainer import build_trainer, train
from ernie_cpt.weighting import weighting_from
from pretasks import TASKS, PreTask, TaskUnavailable, get_task
from schedules import CURRICULA, ScheduleOptions, Stage, build_schedule, check_schedule

log = logging.getLogger(__name__)


def _tokenizer(config: PretrainConfig, run_dir: Path, resume: bool, source: SavedModel | None,
               train_documents: datasets.Dataset) -> Any:
    if resume:
        return load_tokenizer(run_dir / "tokenizer")
    if source is not None:
        return load_tokenizer(source.tokenizer_dir)
    return build_tokenizer(config, train_documents)


def _task_ids(run_dir: Path, resume: bool, tasks: list[str], source: SavedModel | None) -> dict[str, int]:
    """Each task's id: as the resumed run fixed them, as the ernie-cpt model ``source`` has them, or new
    (:mod:`ernie_cpt.training.task_ids`); never from the task modules installed now."""
    if resume:
        return read_task_ids(run_dir, tasks)
    return assign_task_ids(tasks, None if source is None else source.model.task_ids)


def _init_source(model_options: ModelOptions, run: RunOptions) -> SavedModel | None:
    """The ernie-cpt model ``--init-from`` names (an export or a run), read before anything is written;
    None for a BERT/ERNIE folder."""
    if not model_options.init_from or run.resume or run.resume_from_checkpoint:
        return None
    if not is_saved_model(model_options.init_from):
        return None  # a BERT/ERNIE folder: _check_given_tokenizer checks it, build_model reads it
    source = load_model(model_options.init_from)
    log.info("--init-from %s: %s model at step %s", model_options.init_from, source.model.name,
             source.description.get("step", "?"))
    return source


def _corpus_record(corpus: Corpus) -> dict[str, Any]:
    """The corpus's size and content hash, for run_config.json (and the model card)."""
    documents = corpus.documents
    return {"documents": len(documents), "training_documents": len(corpus.train),
            "held_out_documents": len(corpus.held_out), "words": corpus_words(documents),
            "characters": corpus_chars(documents), "fingerprint": corpus_fingerprint(documents),
            "held_out_fingerprint": held_out_fingerprint(corpus.held_out)}


def _task_data(tasks: dict[str, PreTask], corpus: Corpus, training: TrainingOptions,
               evaluation: EvaluationOptions, num_proc: int | None) -> tuple[dict[str, TaskStream], dict, dict, dict]:
    """Each task's training stream and held-out batches, the tasks the training documents give no
    example for (name -> why), and the label counts of each trained task's sample of training
    examples (``PreTask.sample_labels``). A task the held-out documents cannot give examples for
    is trained but not evaluated, with a warning; one with fewer training examples than --batch-size
    is trained with a warning, and one with fewer than the processes is unavailable."""
    streams, evals, unavailable, label_counts = {}, {}, {}, {}
    for name, task in tasks.items():
        try:
            rows = task.build_examples(corpus.train, num_proc=num_proc)
        except TaskUnavailable as e:
            unavailable[name] = str(e)
            continue
        if len(rows) == 0:
            unavailable[name] = f"{name} found no training examples in this corpus"
            continue
        counts, sampled = task.sample_labels(rows, training.seed)
        if reason := task.nothing_to_learn(counts, len(sampled), training.max_majority_share):
            unavailable[name] = reason
            continue
        if len(rows) < distributed.world_size():
            unavailable[name] = (f"{name} has {plural(len(rows), 'training example')}, fewer than the "
                                 f"{distributed.world_size()} processes that share each of its batches")
            continue
        if len(rows) < training.batch_size:
            log.warning("task %s has %s, fewer than --batch-size %d: each of its batches holds all of them, so "
                        "every step of it is an epoch of the same examples; lower --batch-size or add text",
                        name, plural(len(rows), "training example"), training.batch_size)
        label_counts[name] = counts
        streams[name] = TaskStream(task, rows, training.batch_size, training.seed, training.dataloader_workers,
                                   distributed.rank(), distributed.world_size())
        if not len(corpus.held_out):
            continue
        try:
            held_out = task.build_examples(corpus.held_out, num_proc=num_proc, background=corpus.train,
                                           held_out=True)
        except TaskUnavailable as e:
            log.warning("task %s is not evaluated: the held-out documents give no examples (%s)", name, e)
            continue
        if len(held_out):
            held_out = held_out.shuffle(seed=evaluation.split_seed).select(range(min(len(held_out),
                                                                                     evaluation.eval_max_examples)))
            evals[name] = eval_batches(task, held_out, evaluation.eval_batch_size, evaluation.split_seed)
    return streams, evals, unavailable, label_counts


def _without(schedule: list[Stage], unavailable: dict[str, str]) -> list[Stage]:
    """The schedule without the tasks the corpus cannot give examples for (the others keep their
    steps; a stage left with no task is dropped); an error when no task is left."""
    if not unavailable:
        return schedule
    kept = [Stage({t: n for t, n in stage.steps.items() if t not in unavailable}) for stage in schedule]
    kept = [stage for stage, before in zip(kept, schedule) if stage.steps or not before.steps]
    if not any(stage.steps for stage in kept):
        raise UserError(f"no task can train on this corpus: {'; '.join(unavailable.values())}; add text the "
                        f"tasks need or choose other --tasks")
    for name, reason in unavailable.items():
        log.warning("task %s is skipped (the other tasks train as planned): %s", name, reason)
    return kept


def _validate(run: RunOptions, training: TrainingOptions, options: dict[type, Any]) -> None:
    """The checks across options (each option's own range is checked when the options are read)."""
    if not run.output_dir:
        raise ConfigError("pretrain needs --output-dir DIR (output_dir: where checkpoints and logs go)")
    check_output_path(run.output_dir, "--output-dir", folder=True)
    for name in run.tasks:
        get_task(name).check_seq_length(TASKS.options_for(name, options), run.max_seq_length)
    check_schedule(options)
    processes = distributed.world_size()
    if training.batch_size % processes:
        raise UserError(f"--batch-size {training.batch_size} is the batch over all {processes} processes and must "
                        f"be a multiple of {processes}; change --batch-size or --nproc_per_node")


def _config(options: dict[type, Any], schedule: list[Stage]) -> dict[str, Any]:
    """run_config.json: every option, the stages, and as ``max_steps`` the task steps they train
    (the --max-steps asked for is ``requested_max_steps``: --steps-per-task may set the budget)."""
    return {**to_dict(*options.values()), "stages": [stage.steps for stage in schedule],
            "max_steps": sum(stage.total_steps for stage in schedule),
            "requested_max_steps": options[TrainingOptions].max_steps}


def _check_given_tokenizer(options: dict[type, Any], task_classes: dict[str, type[PreTask]],
                           max_seq_length: int, source: SavedModel | None) -> None:
    """Before any work: an --init-from model or folder (``source`` when it is an ernie-cpt export or
    run) must fit the run (positions, token types), and a tokenizer from --init-from or --tokenizer
    must suit every task (capitalization needs an uncased one)."""
    init_from, tokenizer = options[ModelOptions].init_from, options[TokenizerOptions].tokenizer
    if init_from and tokenizer:
        raise UserError(f"--init-from {init_from} brings its own tokenizer, the one its embeddings were trained "
                        f"with; drop --tokenizer {tokenizer}")
    token_types = max(task.num_token_types for task in task_classes.values())
    if source is not None:
        check_fits(source.model.config, init_from, max_seq_length, token_types)
    elif init_from:
        check_init_from(init_from, max_seq_length, token_types)
    if init_from or tokenizer:
        given = load_tokenizer(source.tokenizer_dir if source is not None else init_from or tokenizer)
        for task in task_classes.values():
            task.check_tokenizer(given)


def _torch_threads(run_dir: Path, resuming: bool, training: TrainingOptions) -> tuple[int, str]:
    """Torch's thread count for the run, and why: --num-threads, or the CPUs this process may use less the
    data-loader workers (ernie_cpt.threads); a resumed run keeps the count it was started with, as the
    count changes the last digits of the losses."""
    before = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8")).get("torch_threads") \
        if resuming else None
    if before and training.num_threads and training.num_threads != before:
        raise UserError(f"--resume: the run in {run_dir} used {before} torch thread{'s' * (before != 1)}; the thread "
                        f"count changes the last digits of the losses; resume with --num-threads {before} (or 0)")
    if before:
        return before, "the count the run was started with"
    return torch_thread_count(training.num_threads, training.dataloader_workers)


def _checkpoint_to_resume(run_dir: Path, config: dict[str, Any], options: dict[type, Any]) -> Checkpoint | None:
    """The checkpoint to continue from (None: start), chosen by the main process, read by every process."""
    found, run = None, options[RunOptions]

    def choose() -> Path | None:
        nonlocal found
        found = resolve_resume(run_dir, config, run.resume or bool(run.resume_from_checkpoint), run.overwrite,
                               run.resume_from_checkpoint, absent_values(*options.values()))
        return found[0] if found else None

    path = distributed.main_result(choose)
    return found if distributed.is_main() or path is None else (path, read_checkpoint(path))


def _optional(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def pretrain(config: PretrainConfig | dict[type, Any]) -> Path:
    """Pre-train as ``config`` says (or its option groups, keyed by class); returns the run directory. The
    run directory is claimed for the whole run (:mod:`ernie_cpt.claims`): a second command that would write
    it is refused."""
    config = config if isinstance(config, PretrainConfig) else PretrainConfig.from_groups(config)
    options = config.option_groups()
    run, training = options[RunOptions], options[TrainingOptions]
    device = pick_device(training.device)
    distributed.init(device)
    _validate(run, training, options)
    with claim_on_main(run.output_dir, "--output-dir", "pretrain"):
        return _pretrain(config, options, device)


def _pretrain(pretrain_config: PretrainConfig, options: dict[type, Any], device: torch.device) -> Path:
    run, training, evaluation = options[RunOptions], options[TrainingOptions], options[EvaluationOptions]
    model_options = options[ModelOptions]
    task_classes = {name: get_task(name) for name in run.tasks}
    schedule_options = options[ScheduleOptions]
    schedule = build_schedule(schedule_options, run.tasks, training.max_steps,
                              settings=CURRICULA.options_for(schedule_options.schedule, options))
    weighting = weighting_from(options, run.tasks) if schedule_options.task_mixing == "all" else None
    source = _init_source(model_options, run)
    if not (run.resume or run.resume_from_checkpoint):
        _check_given_tokenizer(options, task_classes, run.max_seq_length, source)
    layers = preset_layers(model_options)
    if layers is not None:  # else checked when the --init-from encoder is built
        check_expert_layers(options[ArchitectureOptions], layers)
    run_dir = Path(run.output_dir)
    config = {**_config(options, schedule),
              "environment": environment(device, training.amp, options[AnnotationOptions].spacy_model)}
    resume_from = _checkpoint_to_resume(run_dir, config, options)
    resuming = resume_from is not None
    config["torch_threads"], threads_why = _torch_threads(run_dir, resuming, training)

    # every process annotates its shard of the corpus, the main process combines them
    recorded = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8")).get("corpus") \
        if resuming else None
    corpus = build_corpus(pretrain_config, before_annotation=(lambda read: distributed.main_result(
        lambda: check_corpus(run_dir, recorded, read))) if resuming else None)
    if resuming:
        distributed.main_result(lambda: check_split(run_dir, recorded, corpus.held_out))
    log.info("%s and %d held-out", plural(len(corpus.train), "training document"), len(corpus.held_out))
    with run_directory(run_dir, config, resume_from), torch_threads(config["torch_threads"], threads_why):
        with distributed.main_first():
            tokenizer = _tokenizer(pretrain_config, run_dir, resuming, source, corpus.train)
            tasks = build_tasks(pretrain_config, tokenizer)
            for name, task_id in _task_ids(run_dir, resuming, run.tasks, source).items():
                tasks[name].task_id = task_id
            streams, evals, unavailable, label_counts = _task_data(tasks, corpus, training, evaluation,
                                                     options[AnnotationOptions].num_proc or None)
        schedule = _without(schedule, unavailable)
        tasks = {name: task for name, task in tasks.items() if name in streams}
        config = {**_config(options, schedule), "tasks": list(tasks), "requested_tasks": run.tasks,
                  "skipped_tasks": unavailable, "corpus": _corpus_record(corpus),
                  "torch_threads": config["torch_threads"], "environment": config["environment"]}
        if resuming:
            check_stages(run_dir, config["stages"])
        torch.manual_seed(training.seed)
        model = build_model(pretrain_config, tasks, len(tokenizer),
                            ErnieConfig.from_json_file(str(run_dir / "encoder_config.json")) if resuming else None,
                            None if resuming or source is None else source.model, {} if resuming else label_counts)
        if not resuming and distributed.is_main():
            with writing(f"the tokenizer and encoder_config.json in {run_dir}", run_dir):
                tokenizer.save_pretrained(str(run_dir / "tokenizer"))
                model.config.to_json_file(str(run_dir / "encoder_config.json"))
            write_task_ids(run_dir, {name: task.task_id for name, task in tasks.items()},
                           model.config.task_type_vocab_size)
            atomic_write_text(run_dir / "architecture.json", json.dumps(model.describe(), indent=2))
            write_config(run_dir, config)
        log.info("Schedule %s:\n%s", schedule_options.schedule,
                 plan_table(schedule, list(tasks), schedule_options.task_mixing))
        n_params = sum(p.numel() for p in model.parameters())
        log.info("Encoder: %s, hidden %d, architecture %s, %.1fM parameters; %s over %s",
                 plural(model.config.num_hidden_layers, "layer"), model.config.hidden_size, model.name, n_params / 1e6,
                 plural(sum(s.optimizer_steps(schedule_options.task_mixing) for s in schedule), "step"),
                 plural(len(schedule), "stage"))
        trainer = build_trainer(model, streams, schedule, run_dir, training=training, mixing=schedule_options,
                                evaluation=evaluation, weighting=weighting, eval_batches=evals)
        train(trainer, resume_from)
        if evals and distributed.is_main():
            log.info(continual_summary(run_dir / "metrics.json", continual_metrics(run_dir)))
    return run_dir


def continual_summary(path: Path, metrics: dict[str, Any]) -> str:
    """The console's line of a run's continual metrics, its terms glossed the first time (:mod:`glosses`)."""
    drop, bwt = metrics["mean_drop"], metrics["backward_transfer"]
    terms = [f"mean drop from best to final {_optional(drop)}", f"BWT {_optional(bwt)}",
             f"average final score {_optional(metrics['average_final'])}"]
    glossed = [gloss("drop") if drop is not None else "", gloss("bwt_undefined" if bwt is None else "bwt"), ""]
    if not any(glossed):
        return f"Accuracy matrix, forgetting and BWT: {path} ({', '.join(terms)})"
    explained = "; ".join(f"{term} ({text})" if text else term for term, text in zip(terms, glossed))
    return f"Accuracy matrix, forgetting and BWT: {path}. {explained[0].upper()}{explained[1:]}"
