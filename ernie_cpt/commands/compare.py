"""``ernie-cpt compare``: several curricula (or sharing architectures) on one corpus, then one report
on forgetting and transfer.

The corpus is annotated once, up front (later runs read the annotation cache, and a bad corpus
fails before anything is written). Then, for each seed (``--seed``, ``--seed`` + 1, ...) and
each curriculum, ``pretrain`` runs into ``DIR/runs/<schedule>-seed<k>/`` with the same tasks,
per-task budget, data and model options, so every curriculum starts from the same
initialisation: pretrain seeds torch right before it builds the model, and the corpus
tokenizer comes from the cache. With ``--architectures``, each architecture instead runs one
curriculum into ``DIR/runs/<architecture>-<schedule>-seed<k>/`` (each architecture is built from
the same initial encoder). The run's continual-learning metrics are computed
(:func:`ernie_cpt.evaluation.forgetting.continual_metrics`) with its parameter count and training
tokens/s; given a downstream set, the run is exported to ``export/`` and fine-tuned on it with
the run's seed. ``result.json``, written last and atomically, marks the run done.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ernie_cpt.commands.export import export
from ernie_cpt.commands.finetune import FinetuneOptions, finetune
from ernie_cpt.commands.pretrain import RunOptions, option_classes, pretrain
from ernie_cpt.data.annotate import AnnotationOptions, annotate
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.labelled_data import load_labelled_data
from ernie_cpt.errors import UserError
from ernie_cpt.evaluation.forgetting import SCORE_METRICS, continual_metrics
from ernie_cpt.evaluation.run_costs import parameter_count, training_tokens_per_s
from ernie_cpt.modeling.architectures import (
    ARCHITECTURES,
    ArchitectureOptions,
    architecture_names,
    check_expert_layers,
)
from ernie_cpt.modeling.encoder import ModelOptions, preset_layers
from ernie_cpt.options import option, to_dict
from ernie_cpt.training.checkpoint import atomic_write_text, checkpoints
from ernie_cpt.training.evaluate import EvaluationOptions
from ernie_cpt.training.run_dir import option_differences
from ernie_cpt.training.trainer import TrainingOptions
from ernie_cpt.weighting import WeightingOptions
from pretasks import get_task
from schedules import CURRICULA, ScheduleOptions, build_schedule, get_curriculum

log = logging.getLogger(__name__)

DEFAULT_SCHEDULES = ["continual", "joint", "sequential", "pairwise"]
RESULT = "result.json"
_FINETUNE = FinetuneOptions()


@dataclass
class CompareOptions:
    """Compare: curricula or architectures, seeds and the downstream set"""

    output_dir: str | None = option(None, "Folder for the runs (DIR/runs/<schedule>-seed<k>, or "
                                    "<architecture>-<schedule>-seed<k>) and the report (DIR/report) (required)")
    tasks: list[str] = option([], "Pre-training tasks, at least 2, in curriculum order (required)")
    max_seq_length: int = option(RunOptions().max_seq_length, "Maximum tokens per example, [CLS] and [SEP] included")
    schedules: list[str] | None = option(None, f"Curricula to compare, comma- or space-separated: "
                                         f"{', '.join(c for c in CURRICULA if c != 'file')}. Unset: "
                                         f"{', '.join(DEFAULT_SCHEDULES)}; with --architectures, the one curriculum "
                                         f"to compare them at, {ScheduleOptions().schedule} if unset")
    architectures: list[str] | None = option(None, f"Sharing architectures to compare at one curriculum, comma- or "
                                             f"space-separated: {', '.join(architecture_names())}; the report adds "
                                             f"each one's parameters and tokens/s. Unset: compare curricula, each "
                                             f"with --architecture")
    seeds: int = option(1, "Number of seeds: every curriculum runs with --seed, --seed + 1, ...; the report gives "
                        "mean ± std over them")
    metric: str = option("accuracy", "Score of the accuracy matrix, forgetting and BWT", choices=tuple(SCORE_METRICS))
    downstream_train: str | None = option(None, "Labelled training file (.jsonl/.csv/.parquet) to fine-tune each "
                                          "curriculum's encoder on; needs --downstream-test")
    downstream_test: str | None = option(None, "Labelled test file of the downstream task")
    downstream_text_field: str = option(_FINETUNE.text_field, "Field holding the downstream text")
    downstream_text_pair_field: str | None = option(None, "Field holding a second text, for a sentence-pair task")
    downstream_label_field: str = option(_FINETUNE.label_field, "Field holding the downstream label")
    downstream_epochs: int = option(_FINETUNE.epochs, "Fine-tuning passes over the downstream training set")
    downstream_learning_rate: float = option(_FINETUNE.learning_rate, "Peak learning rate of the fine-tuning")
    downstream_batch_size: int = option(_FINETUNE.batch_size, "Examples per fine-tuning batch")


def compare_option_classes() -> list[type]:
    """CompareOptions and every option group of pretrain but RunOptions (whose output_dir, tasks
    and max_seq_length CompareOptions has; resume and overwrite compare decides per run)."""
    return [CompareOptions, *(cls for cls in option_classes() if cls is not RunOptions)]


def schedule_names(items: list[str]) -> list[str]:
    """``["continual,joint", "sequential"]`` -> ``["continual", "joint", "sequential"]``, each once."""
    names = [name.strip() for item in items for name in item.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def _architectures(settings: CompareOptions) -> list[str] | None:
    """The architectures of --architectures (None: compare curricula); an unknown one is a UserError."""
    if settings.architectures is None:
        return None
    names = schedule_names(settings.architectures)
    if not names:
        raise UserError(f"--architectures names no architecture; give e.g. --architectures hard,mmoe "
                        f"(registered: {', '.join(ARCHITECTURES)})")
    for name in names:
        ARCHITECTURES.get(name)
    return names


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
    architectures = _architectures(settings)
    default = DEFAULT_SCHEDULES if architectures is None else [options[ScheduleOptions].schedule]
    names = default if settings.schedules is None else schedule_names(settings.schedules)
    if not names:
        raise UserError("--schedules names no curriculum; give e.g. --schedules continual,joint")
    if architectures is not None and len(names) > 1:
        raise UserError(f"--architectures compares architectures at one curriculum, but --schedules names "
                        f"{len(names)} ({', '.join(names)}); give one, e.g. --schedules sequential")
    layers = preset_layers(options[ModelOptions])
    for architecture in architectures or [options[ArchitectureOptions].architecture]:
        if layers is not None:  # else checked when the --init-from encoder is built
            check_expert_layers(dataclasses.replace(options[ArchitectureOptions], architecture=architecture), layers)
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


def _run_options(options: dict[type, Any], schedule: str, architecture: str, seed: int, run_dir: Path,
                 resume: bool) -> dict[type, Any]:
    """The options of pretrain for one curriculum, architecture and seed; the others are compare's, unchanged."""
    settings = options[CompareOptions]
    replaced = {
        RunOptions: RunOptions(output_dir=str(run_dir), tasks=list(settings.tasks),
                               max_seq_length=settings.max_seq_length, resume=resume, overwrite=not resume),
        ScheduleOptions: _schedule_options(options, schedule),
        TrainingOptions: dataclasses.replace(options[TrainingOptions], seed=seed),
        ArchitectureOptions: dataclasses.replace(options[ArchitectureOptions], architecture=architecture),
    }
    return {cls: replaced.get(cls, options.get(cls)) for cls in option_classes()}


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
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in ("output_json", "device")}


def _run(options: dict[type, Any], schedule: str, architecture: str, seed: int, run_dir: Path) -> dict[str, Any]:
    """Pre-train (or resume), compute the metrics, export and fine-tune one curriculum and architecture
    with one seed; the result is written to ``run_dir/result.json`` last. A finished run is read, not re-run."""
    settings = options[CompareOptions]
    resume = bool(checkpoints(run_dir))
    run_options = _run_options(options, schedule, architecture, seed, run_dir, resume)
    finetune_options = (_downstream(settings, options[TrainingOptions], seed, run_dir)
                        if settings.downstream_train else None)
    result_file = run_dir / RESULT
    if result_file.exists():
        result = json.loads(result_file.read_text(encoding="utf-8"))
        _check_finished_run(run_dir, run_options, finetune_options, result)
        log.info("%s, seed %d: done before, not re-run (%s)", run_dir.name, seed, result_file)
        if result["metrics"]["metric"] != settings.metric:  # another --metric: rescored from the logs
            result["metrics"] = continual_metrics(run_dir, settings.metric)
            atomic_write_text(result_file, json.dumps(result, indent=2) + "\n")
        return result

    log.info("%s, seed %d: %s pre-training in %s", run_dir.name, seed, "resuming" if resume else "starting", run_dir)
    start = time.perf_counter()
    pretrain(run_options)
    seconds = time.perf_counter() - start
    metrics = continual_metrics(run_dir, settings.metric)
    downstream = None
    if finetune_options:
        export_dir = run_dir / "export"
        shutil.rmtree(export_dir, ignore_errors=True)  # a part-written export of an interrupted compare
        export(run_dir, export_dir)
        downstream = finetune(export_dir, finetune_options)
    result = {"schedule": schedule, "architecture": architecture, "seed": seed, "pretrain_seconds": seconds,
              "resumed": resume, "parameters": parameter_count(run_dir),
              "tokens_per_s": training_tokens_per_s(run_dir),
              "metrics": metrics, "downstream": downstream,
              "downstream_options": None if finetune_options is None else _finetune_settings(finetune_options)}
    atomic_write_text(result_file, json.dumps(result, indent=2) + "\n")
    return result


def _setup(options: dict[type, Any], names: list[str], architectures: list[str]) -> dict[str, Any]:
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
        "architectures": architectures,
        **({"expert layers (K)": options[ArchitectureOptions].expert_layers}
           if any(name != "hard" for name in architectures) else {}),
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
    """Run every curriculum (or architecture) of ``options`` with every seed and write the report;
    returns report.md's path."""
    from ernie_cpt.evaluation.report import (
        write_report,  # matplotlib: loaded when a report is written, not by the CLI's parser
    )

    names = _validate(options)
    settings, training = options[CompareOptions], options[TrainingOptions]
    compared = _architectures(settings)
    architectures = compared or [options[ArchitectureOptions].architecture]
    annotate(load_corpus(options[CorpusOptions]), options[AnnotationOptions])
    root = Path(settings.output_dir)
    results = []
    for seed in range(training.seed, training.seed + settings.seeds):
        for architecture in architectures:
            for schedule in names:
                folder = f"{architecture}-{schedule}-seed{seed}" if compared else f"{schedule}-seed{seed}"
                results.append({"architecture": architecture,
                                **_run(options, schedule, architecture, seed, root / "runs" / folder)})
    results.sort(key=lambda r: (architectures.index(r["architecture"]), names.index(r["schedule"]), r["seed"]))
    return write_report(results, _setup(options, names, architectures), root / "report",
                        "architecture" if compared else "curriculum")
