"""``ernie-cpt compare``: several curricula on one corpus, then one report on forgetting and transfer.

The corpus is annotated once, up front (later runs read the annotation cache, and a bad corpus
fails before anything is written). Then, for each seed (``--seed``, ``--seed`` + 1, ...) and
each curriculum, ``pretrain`` runs into ``DIR/runs/<schedule>-seed<k>/`` with the same tasks,
per-task budget, data and model options, so every curriculum starts from the same
initialisation: pretrain seeds torch right before it builds the model, and the corpus
tokenizer comes from the cache. The run's continual-learning metrics are computed
(:func:`ernie_cpt.evaluation.forgetting.continual_metrics`), the encoder is exported to ``export/`` and,
given a downstream set, fine-tuned on it with the run's seed. ``result.json``, written last
and atomically, marks the run done.

Started again with the same options, compare skips the runs that have a result.json (rescoring
them from their logs if ``--metric`` changed), resumes those with a checkpoint (``pretrain
--resume``) and restarts those without one; a finished run whose options differ is an error
rather than a silent mix. The report goes to ``DIR/report/``
(:mod:`ernie_cpt.evaluation.report`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from ernie_cpt.commands.export import export
from ernie_cpt.commands.finetune import finetune
from ernie_cpt.commands.options import CompareOptions, FinetuneOptions, RunOptions, pretrain_option_classes
from ernie_cpt.commands.pretrain import pretrain
from ernie_cpt.data.annotate import annotate
from ernie_cpt.data.corpus import load_corpus
from ernie_cpt.data.labelled_data import load_labelled_data
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
from ernie_cpt.errors import UserError
from ernie_cpt.evaluation.forgetting import continual_metrics
from ernie_cpt.modeling.options import ModelOptions
from ernie_cpt.options import to_dict
from ernie_cpt.training.checkpoint import atomic_write_text, checkpoints
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.training.run_dir import option_differences
from ernie_cpt.weighting.options import WeightingOptions
from pretasks import get_task
from schedules import ScheduleOptions, build_schedule, get_curriculum

log = logging.getLogger(__name__)

RESULT = "result.json"


def schedule_names(items: list[str]) -> list[str]:
    """``["continual,joint", "sequential"]`` -> ``["continual", "joint", "sequential"]``, each once."""
    names = [name.strip() for item in items for name in item.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def _validate(options: dict[type, Any]) -> list[str]:
    """Every check that needs no training, so bad input fails before anything is written; returns the
    curricula to run."""
    settings = options[CompareOptions]
    if not settings.output_dir:
        raise UserError("compare needs --output-dir DIR (where the runs and the report go)")
    if len(settings.tasks) < 2:
        raise UserError("compare needs at least 2 --tasks: with one task every curriculum is the same")
    for task in settings.tasks:
        get_task(task)
    names = schedule_names(settings.schedules)
    if not names:
        raise UserError("--schedules names no curriculum; give e.g. --schedules continual,joint")
    for name in names:
        get_curriculum(name)
        if name == "file":
            raise UserError("compare builds every curriculum from --tasks and one per-task budget; a 'file' "
                            "schedule sets its own budgets: run it with ernie-cpt pretrain")
    if options[EvaluationOptions].eval_fraction <= 0:
        raise UserError("compare scores every task on held-out documents; --eval-fraction must be above 0")
    if settings.seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {settings.seeds}")
    if bool(settings.downstream_train) != bool(settings.downstream_test):
        raise UserError("give both --downstream-train and --downstream-test (the fine-tuning data and the set it "
                        "is scored on), or neither")
    for flag, path in (("--downstream-train", settings.downstream_train), ("--downstream-test",
                                                                          settings.downstream_test)):
        if path and not Path(path).is_file():
            raise UserError(f"{flag} file {path} does not exist; pass a .jsonl, .csv or .parquet file")
    if settings.downstream_train:  # read once up front: a bad file fails before any training, not after
        try:
            load_labelled_data(settings.downstream_train, settings.downstream_test, settings.downstream_text_field,
                               settings.downstream_text_pair_field, settings.downstream_label_field)
        except UserError as e:
            raise UserError(f"downstream set (--train/--test here mean --downstream-train/--downstream-test): "
                            f"{e}") from e
    for name in names:
        build_schedule(_schedule_options(options, name), settings.tasks, options[TrainingOptions].max_steps)
    return names


def _schedule_options(options: dict[type, Any], schedule: str) -> ScheduleOptions:
    return dataclasses.replace(options[ScheduleOptions], schedule=schedule)


def _run_options(options: dict[type, Any], schedule: str, seed: int, run_dir: Path, resume: bool) -> dict[type, Any]:
    """The options of pretrain for one curriculum and seed; the others are compare's, unchanged."""
    settings = options[CompareOptions]
    replaced = {
        RunOptions: RunOptions(output_dir=str(run_dir), tasks=list(settings.tasks),
                               max_seq_length=settings.max_seq_length, resume=resume, overwrite=not resume),
        ScheduleOptions: _schedule_options(options, schedule),
        TrainingOptions: dataclasses.replace(options[TrainingOptions], seed=seed),
    }
    return {cls: replaced.get(cls, options.get(cls)) for cls in pretrain_option_classes()}


def _downstream(settings: CompareOptions, training: TrainingOptions, seed: int, run_dir: Path) -> FinetuneOptions:
    return FinetuneOptions(
        train=settings.downstream_train, test=settings.downstream_test, text_field=settings.downstream_text_field,
        text_pair_field=settings.downstream_text_pair_field, label_field=settings.downstream_label_field,
        seeds=[seed], epochs=settings.downstream_epochs, learning_rate=settings.downstream_learning_rate,
        batch_size=settings.downstream_batch_size, max_seq_length=settings.max_seq_length,
        output_json=str(run_dir / "finetune.json"), device=training.device)


def _check_finished_run(run_dir: Path, run_options: dict[type, Any], finetune_options: FinetuneOptions | None,
                        result: dict[str, Any]) -> None:
    """A finished run must have been made with the options compare would run it with now."""
    previous = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
    config = to_dict(*run_options.values())
    changed = option_differences(previous, config)  # requested tasks, not only those the corpus allowed
    wanted = None if finetune_options is None else _finetune_settings(finetune_options)
    if result.get("downstream_options") != wanted:
        changed.append("the downstream options")
    if changed:
        raise UserError(f"{run_dir} was run with other options ({'; '.join(changed)}); run compare with the "
                        f"options it was started with, or use a new --output-dir")


def _finetune_settings(options: FinetuneOptions) -> dict[str, Any]:
    """The fine-tuning options that change its result (not where it writes or on which device)."""
    unused = ("output_json", "output_dir", "overwrite", "device")
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in unused}


def _run(options: dict[type, Any], schedule: str, seed: int, run_dir: Path) -> dict[str, Any]:
    """Pre-train (or resume), compute the metrics, export and fine-tune one curriculum with one seed;
    the result is written to ``run_dir/result.json`` last. A finished run is read, not re-run."""
    settings = options[CompareOptions]
    resume = bool(checkpoints(run_dir))
    run_options = _run_options(options, schedule, seed, run_dir, resume)
    finetune_options = (_downstream(settings, options[TrainingOptions], seed, run_dir)
                        if settings.downstream_train else None)
    result_file = run_dir / RESULT
    if result_file.exists():
        result = json.loads(result_file.read_text(encoding="utf-8"))
        _check_finished_run(run_dir, run_options, finetune_options, result)
        log.info("%s, seed %d: done before, not re-run (%s)", schedule, seed, result_file)
        if result["metrics"]["metric"] != settings.metric:  # another --metric: rescored from the logs
            result["metrics"] = continual_metrics(run_dir, settings.metric)
            atomic_write_text(result_file, json.dumps(result, indent=2) + "\n")
        return result

    log.info("%s, seed %d: %s pre-training in %s", schedule, seed, "resuming" if resume else "starting", run_dir)
    start = time.perf_counter()
    pretrain(run_options)
    seconds = time.perf_counter() - start
    metrics = continual_metrics(run_dir, settings.metric)
    export_dir = run_dir / "export"
    shutil.rmtree(export_dir, ignore_errors=True)  # a part-written export of an interrupted compare
    export(run_dir, export_dir)
    downstream = finetune(export_dir, finetune_options) if finetune_options else None
    result = {"schedule": schedule, "seed": seed, "pretrain_seconds": seconds, "resumed": resume,
              "metrics": metrics, "downstream": downstream,
              "downstream_options": None if finetune_options is None else _finetune_settings(finetune_options)}
    atomic_write_text(result_file, json.dumps(result, indent=2) + "\n")
    return result


def _setup(options: dict[type, Any], names: list[str]) -> dict[str, Any]:
    """The run setup the report lists."""
    settings, training, model = options[CompareOptions], options[TrainingOptions], options[ModelOptions]
    schedule_options = options[ScheduleOptions]
    stages = build_schedule(_schedule_options(options, names[0]), settings.tasks, training.max_steps)
    budgets = sorted({sum(stage.steps.get(task, 0) for stage in stages) for task in settings.tasks})
    mixing = (f"all tasks of a stage in every step, --loss-weighting {options[WeightingOptions].loss_weighting}"
              if schedule_options.task_mixing == "all" else
              f"one task per step, --task-sampling {schedule_options.task_sampling}")
    return {
        "corpus": options[CorpusOptions].corpus or "the bundled sample (Persuasion, chapters 1-12)",
        "curricula": names,
        "tasks": settings.tasks,
        "steps per task": "-".join(map(str, budgets)),
        "model": model.init_from or f"{model.model_size} (new)",
        "task mixing": mixing,
        "learning rate": training.learning_rate,
        "batch size": training.batch_size,
        "seeds": [training.seed + k for k in range(settings.seeds)],
        "metric": settings.metric,
        "downstream": (f"train {settings.downstream_train}, test {settings.downstream_test}, "
                       f"{settings.downstream_epochs} epoch{'s' * (settings.downstream_epochs != 1)}"
                       if settings.downstream_train else "none"),
    }


def compare(options: dict[type, Any]) -> Path:
    """Run every curriculum of ``options`` with every seed and write the report; returns report.md's path."""
    from ernie_cpt.evaluation.report import (
        write_report,  # matplotlib: loaded when a report is written, not by the CLI's parser
    )

    names = _validate(options)
    settings, training = options[CompareOptions], options[TrainingOptions]
    annotate(load_corpus(options[CorpusOptions]), options[AnnotationOptions])
    root = Path(settings.output_dir)
    results = []
    for seed in range(training.seed, training.seed + settings.seeds):
        for schedule in names:
            results.append(_run(options, schedule, seed, root / "runs" / f"{schedule}-seed{seed}"))
    results.sort(key=lambda r: (names.index(r["schedule"]), r["seed"]))
    return write_report(results, _setup(options, names), root / "report")
