"""``ernie-cpt compare``: several curricula on one corpus, beside baselines, then one report on
forgetting and transfer with confidence intervals over seeds.

The corpus is annotated once, up front (later runs read the annotation cache, and a bad corpus
fails before anything is written). Then, for each seed (``--seed``, ``--seed`` + 1, ...):

* every variant (a curriculum, or ``<curriculum>+replay`` with ``--replay F``; with
  ``--architectures``, each sharing architecture at one curriculum) runs ``pretrain`` into
  ``DIR/runs/<variant>-seed<k>/`` (``<architecture>-<curriculum>-seed<k>``) with the same tasks,
  per-task budget, data and model options, so
  every variant starts from the same initialisation (pretrain seeds torch right before it builds
  the model, and the corpus tokenizer comes from the cache); the held-out split is the same for
  every seed (``--split-seed``). Its metrics are computed, its encoder exported, fine-tuned on the
  downstream set and probed (:mod:`ernie_cpt.commands.compare_runs`);
* each task alone (``single-<task>-seed<k>``): the reference of forward transfer, evaluated at the
  step counts at which the variants first finish training that task (not with ``--no-forward-transfer``);
* the baselines: ``mlm-seed<k>`` (the masked-LM task alone for the variants' total steps: the first of
  ``--tasks`` scored by a masked-LM head, else the first registered one, knowledge masking) and
  ``none-seed<k>`` (no pre-training); and once, ``tfidf`` (TF-IDF + logistic regression).

``result.json``, written last and atomically, marks a run done. Started again with the same
options, compare skips the finished runs (rescoring them from their logs if ``--metric``
changed), resumes those with a checkpoint and restarts the others; a finished run whose options
differ is an error rather than a silent mix. The report goes to ``DIR/report/``
(:mod:`ernie_cpt.evaluation.report`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from ernie_cpt import interrupt
from ernie_cpt.claims import claim
from ernie_cpt.commands.compare_runs import initial_run, pretrained_run, tfidf_run
from ernie_cpt.commands.options import (
    DEFAULT_SCHEDULES,
    CompareOptions,
    FinetuneOptions,
    RunOptions,
    pretrain_option_classes,
)
from ernie_cpt.data.annotate import annotate
from ernie_cpt.data.corpus import read_corpus, split_documents
from ernie_cpt.data.labelled_data import LabelledData, load_labelled_data
from ernie_cpt.data.labelled_files import check_file
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
from ernie_cpt.errors import UserError
from ernie_cpt.evaluation.forgetting import forward_transfer
from ernie_cpt.evaluation.probes import ProbeSet, probe_sets
from ernie_cpt.files import check_output_path
from ernie_cpt.full_disk import advice_on_full_disk
from ernie_cpt.interrupt import Interrupted
from ernie_cpt.modeling.architectures import ARCHITECTURES, check_expert_layers
from ernie_cpt.modeling.encoder import preset_layers
from ernie_cpt.modeling.heads import HEADS, MaskedLMHead
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.training.checkpoint import atomic_write_text
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.weighting.options import WeightingOptions
from pretasks import TASKS, get_task
from schedules import CURRICULA, ScheduleOptions, Stage, build_schedule, check_schedule, get_curriculum, uses_budget
from schedules.budget import BudgetTooSmall
from schedules.curricula import own_step_options
from schedules.curricula.file import ScheduleFileOptions

log = logging.getLogger(__name__)

REPLAY = "+replay"
RERUN = ("free space, then run the same command again: it keeps the finished runs and resumes the others from "
         "their last checkpoint")
# The single-task references are cut at the step counts where variants first finish a task: a schedule file,
# which compare writes itself, gives the cuts (a curriculum of the framework used as a tool, not a compared one).
CUT_SCHEDULE = "file"
ALL_ARCHITECTURES = "all"  # --architectures all: every registered architecture


@dataclass(frozen=True)
class Variant:
    """One compared variant: a curriculum, with the replay fraction and the architecture it runs with;
    ``folder`` names its runs (``<folder>-seed<k>``)."""

    name: str
    schedule: str
    replay: float
    architecture: str
    folder: str


def schedule_names(items: list[str]) -> list[str]:
    """``["continual,joint", "sequential"]`` -> ``["continual", "joint", "sequential"]``, each once."""
    names = [name.strip() for item in items for name in item.split(",") if name.strip()]
    return list(dict.fromkeys(names))


def _architectures(settings: CompareOptions) -> list[str] | None:
    """The architectures of --architectures (None: compare curricula); ``all`` is every registered one, in
    registration order (a plugin's included). An unknown one is a UserError."""
    if settings.architectures is None:
        return None
    names = schedule_names(settings.architectures)
    if ALL_ARCHITECTURES in names:
        if len(names) > 1:
            raise UserError(f"--architectures {ALL_ARCHITECTURES} already names every registered architecture; give "
                            f"{ALL_ARCHITECTURES} alone, or list the ones to compare")
        names = list(ARCHITECTURES)
    if not names:
        raise UserError(f"--architectures names no architecture; give e.g. --architectures hard,mmoe "
                        f"(registered: {', '.join(ARCHITECTURES)})")
    for name in names:
        ARCHITECTURES.get(name)
    return names


def _variants(options: dict[type, Any]) -> list[Variant]:
    """The variants named by --schedules; ``X+replay`` runs X with --replay, plain X without replay.
    With --architectures, one variant per architecture at the one curriculum of --schedules."""
    replay, settings = options[ScheduleOptions].replay, options[CompareOptions]
    architectures = _architectures(settings)
    default = DEFAULT_SCHEDULES if architectures is None else [options[ScheduleOptions].schedule]
    names = default if settings.schedules is None else schedule_names(settings.schedules)
    if architectures is not None and len(names) > 1:
        raise UserError(f"--architectures compares architectures at one curriculum, but --schedules names "
                        f"{len(names)} ({', '.join(names)}); give one, e.g. --schedules sequential")
    layers = preset_layers(options[ModelOptions])
    for architecture in architectures or [options[ArchitectureOptions].architecture]:
        sharing = dataclasses.replace(options[ArchitectureOptions], architecture=architecture)
        if layers is not None:  # else checked when the --init-from encoder is built
            check_expert_layers(sharing, layers)
        ARCHITECTURES.get(architecture).check_options(sharing, ARCHITECTURES.options_for(architecture, options),
                                                      settings.tasks)
    variants = []
    for name in names:
        schedule = name.removesuffix(REPLAY)
        get_curriculum(schedule)
        if not uses_budget(schedule):
            raise UserError(f"compare builds every curriculum from --tasks and one per-task budget; --schedule "
                            f"{schedule} sets its own steps: run it with ernie-cpt pretrain")
        if name.endswith(REPLAY) and replay <= 0:
            raise UserError(f"{name} replays a fraction --replay of every stage's steps; give it, e.g. --replay 0.05")
        fraction = replay if name.endswith(REPLAY) else 0.0
        variants += ([Variant(a, schedule, fraction, a, f"{a}-{name}") for a in architectures] if architectures else
                     [Variant(name, schedule, fraction, options[ArchitectureOptions].architecture, name)])
    if not variants:
        raise UserError("--schedules names no curriculum; give e.g. --schedules continual,joint")
    if replay > 0 and not any(v.name.endswith(REPLAY) for v in variants):
        raise UserError(f"--replay applies to the {REPLAY} curricula; add one to --schedules, e.g. continual{REPLAY}")
    return variants


def _refuse_own_step_options(options: dict[type, Any]) -> None:
    """Refuse an option of a curriculum that sets its own steps (``--schedule-file``): compare never runs one, so
    the option could only be ignored (and check_schedule's advice, to choose that curriculum, would not help)."""
    for name, cls in own_step_options():
        if cls not in options:
            continue
        for f in dataclasses.fields(cls):
            if getattr(options[cls], f.name) != getattr(cls(), f.name):
                flag = "--" + f.name.replace("_", "-")
                raise UserError(f"{flag} is read by --schedule {name}, which sets its own steps; compare builds every "
                                f"curriculum from --tasks and one per-task budget, so it never reads {flag}: drop it, "
                                f"or run that curriculum with ernie-cpt pretrain --schedule {name} {flag} ...")


def _validate(options: dict[type, Any]) -> tuple[list[Variant], LabelledData | None]:
    """Every check that needs no training, so bad input fails before anything is written; returns the
    variants to run and the downstream set (None without one)."""
    settings = options[CompareOptions]
    if not settings.output_dir:
        raise UserError("compare needs --output-dir DIR (where the runs and the report go)")
    check_output_path(settings.output_dir, "--output-dir", folder=True)
    if len(settings.tasks) < 2:
        raise UserError("compare needs at least 2 --tasks: with one task every curriculum is the same")
    for name in settings.tasks:
        get_task(name).check_seq_length(TASKS.options_for(name, options), settings.max_seq_length)
    _refuse_own_step_options(options)
    check_schedule(options)
    variants = _variants(options)
    if options[EvaluationOptions].eval_fraction <= 0:
        raise UserError("compare scores every task on held-out documents; --eval-fraction must be above 0")
    if bool(settings.downstream_train) != bool(settings.downstream_test):
        raise UserError("give both --downstream-train and --downstream-test (the fine-tuning data and the set it "
                        "is scored on), or neither")
    for flag, path in (("--downstream-train", settings.downstream_train), ("--downstream-test",
                                                                          settings.downstream_test)):
        if path:
            check_file(Path(path), flag)
    data = None
    if settings.downstream_train:  # read once up front: a bad file fails before any training, not after
        data = load_labelled_data(settings.downstream_train, settings.downstream_test,
                                  settings.downstream_text_field, settings.downstream_text_pair_field,
                                  settings.downstream_label_field, flags=("--downstream-train", "--downstream-test"))
    _check_budgets(options, variants)
    return variants, data


def _check_budgets(options: dict[type, Any], variants: list[Variant]) -> None:
    """Every variant's curriculum built (warning where a budget leaves a task out of a stage); where
    budgets leave a stage without a step, the error of the variant that needs the largest budget, so
    that the budget it names fills every curriculum."""
    too_small = []
    for variant in variants:
        try:
            _stages(options, variant, warn=True)
        except BudgetTooSmall as e:
            too_small.append(e)
    if too_small:
        raise max(too_small, key=lambda e: (e.per_task or 0, e.total or 0))


def _schedule_options(options: dict[type, Any], variant: Variant) -> ScheduleOptions:
    return dataclasses.replace(options[ScheduleOptions], schedule=variant.schedule, replay=variant.replay)


def _stages(options: dict[type, Any], variant: Variant, warn: bool = False) -> list[Stage]:
    schedule = _schedule_options(options, variant)
    return build_schedule(schedule, options[CompareOptions].tasks, options[TrainingOptions].max_steps, warn,
                          CURRICULA.options_for(schedule.schedule, options))


def mlm_task(tasks: list[str]) -> str:
    """The task of the masked-LM baseline: the first of ``tasks`` that a masked-LM head scores, else the first
    registered one (knowledge masking). Raises UserError when no task has a masked-LM head."""
    def masked_lm(name: str) -> bool:
        head = HEADS.get(get_task(name).head_of())
        return isinstance(head, type) and issubclass(head, MaskedLMHead)

    found = next((name for name in [*tasks, *TASKS] if masked_lm(name)), None)
    if found is None:
        raise UserError("compare's mlm baseline needs a task with a masked-LM head, and none is installed")
    return found


def _run_options(options: dict[type, Any], run_dir: Path, seed: int, resume: bool, tasks: list[str],
                 schedule: ScheduleOptions, training: TrainingOptions | None = None,
                 architecture: str | None = None, schedule_file: Path | None = None) -> dict[type, Any]:
    """The options of pretrain for one run (with ``architecture``, that one instead of
    --architecture; with ``schedule_file``, the stages of that file); the others are compare's, unchanged."""
    settings = options[CompareOptions]
    replaced = {
        ScheduleFileOptions: ScheduleFileOptions(schedule_file=None if schedule_file is None else str(schedule_file)),
        RunOptions: RunOptions(output_dir=str(run_dir), tasks=list(tasks), max_seq_length=settings.max_seq_length,
                               resume=resume, overwrite=not resume,
                               allow_changed_world_size=settings.allow_changed_world_size),
        ScheduleOptions: schedule,
        TrainingOptions: dataclasses.replace(training or options[TrainingOptions], seed=seed),
        ArchitectureOptions: dataclasses.replace(
            options[ArchitectureOptions], architecture=architecture or options[ArchitectureOptions].architecture),
    }
    return {cls: replaced.get(cls, options.get(cls)) for cls in pretrain_option_classes()}


def _downstream(settings: CompareOptions, training: TrainingOptions, seed: int, run_dir: Path) -> FinetuneOptions:
    return FinetuneOptions(
        train=settings.downstream_train, test=settings.downstream_test, text_field=settings.downstream_text_field,
        text_pair_field=settings.downstream_text_pair_field, label_field=settings.downstream_label_field,
        seeds=[seed], epochs=settings.downstream_epochs, learning_rate=settings.downstream_learning_rate,
        batch_size=settings.downstream_batch_size, max_seq_length=settings.max_seq_length,
        output_json=str(run_dir / "finetune.json"), device=training.device, num_threads=training.num_threads)


def _reference_file(options: dict[type, Any], variants: list[Variant], task: str, root: Path) -> Path:
    """The stages of ``task``'s single-task reference: the task alone, cut at each step count at
    which a variant ends the stage that first trains it (so each is scored there), written as a
    ``--schedule file`` YAML. Cuts change nothing else: the learning rate runs one schedule over
    the whole run and the optimizer state is kept."""
    counts = sorted({next(stage.steps[task] for stage in _stages(options, v) if stage.steps.get(task))
                     for v in variants})
    path = root / "references" / f"{task}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    cuts = [b - a for a, b in zip([0, *counts], counts)]
    atomic_write_text(path, yaml.safe_dump({"stages": [{task: n} for n in cuts]}))
    return path


def _runs_of_seed(options: dict[type, Any], variants: list[Variant], seed: int, root: Path,
                  probes: list[ProbeSet] | None, references: dict[str, Path]) -> list[dict[str, Any]]:
    """Every run of one seed: the variants, the single-task references, and the mlm and none baselines."""
    settings, metric = options[CompareOptions], options[CompareOptions].metric
    training = options[TrainingOptions]

    def downstream(run_dir: Path) -> FinetuneOptions | None:
        return _downstream(settings, training, seed, run_dir) if settings.downstream_train else None

    results = []
    for variant in variants:
        run_dir = root / "runs" / f"{variant.folder}-seed{seed}"
        make = partial(_run_options, options, run_dir, seed, tasks=settings.tasks,
                       schedule=_schedule_options(options, variant), architecture=variant.architecture)
        results.append(pretrained_run(variant.name, "variant", seed, run_dir, make, metric, downstream(run_dir),
                                      probes))
    single = dataclasses.replace(training, lr_schedule="whole")
    skipped = set.intersection(*(set((r.get("metrics") or {}).get("skipped_tasks", {})) for r in results))
    for task, schedule_file in references.items():
        if task in skipped:  # every variant skipped it (the report says why): no forward transfer to measure
            log.info("%s: no single-task reference, as no run could train it", task)
            continue
        run_dir = root / "runs" / f"single-{task}-seed{seed}"
        schedule = dataclasses.replace(options[ScheduleOptions], schedule=CUT_SCHEDULE, steps_per_task=None,
                                       replay=0.0, reset_optimizer=False)
        make = partial(_run_options, options, run_dir, seed, tasks=[task], schedule=schedule, training=single,
                       schedule_file=schedule_file)
        results.append(pretrained_run(f"single-{task}", "reference", seed, run_dir, make, metric, None, None,
                                      export_model=False))
    total = sum(stage.total_steps for stage in _stages(options, variants[0]))
    run_dir = root / "runs" / f"mlm-seed{seed}"
    # one task for `total` steps: one stage, which joint (the default curriculum) gives
    mlm = dataclasses.replace(options[ScheduleOptions], schedule="joint", steps_per_task=total, replay=0.0)
    make = partial(_run_options, options, run_dir, seed, tasks=[mlm_task(settings.tasks)], schedule=mlm)
    results.append(pretrained_run("mlm", "baseline", seed, run_dir, make, metric, downstream(run_dir), probes))
    source = root / "runs" / f"{variants[0].folder}-seed{seed}"
    results.append(initial_run(seed, root / "runs" / f"none-seed{seed}", source, options[ModelOptions],
                               downstream(root / "runs" / f"none-seed{seed}"), probes))
    return results


def _with_forward_transfer(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The variants and baselines, each variant with its forward transfer from the references of its seed."""
    references = {(r["variant"].removeprefix("single-"), r["seed"]): r["metrics"] for r in results
                  if r["kind"] == "reference"}
    kept = [r for r in results if r["kind"] != "reference"]
    for result in kept:
        if result["kind"] == "variant":
            result["forward_transfer"] = forward_transfer(
                result["metrics"], {task: metrics for (task, seed), metrics in references.items()
                                    if seed == result["seed"]})
    return kept


def _setup(options: dict[type, Any], variants: list[Variant]) -> dict[str, Any]:
    """The run setup the report lists."""
    settings, training, model = options[CompareOptions], options[TrainingOptions], options[ModelOptions]
    schedule_options = options[ScheduleOptions]
    stages = _stages(options, dataclasses.replace(variants[0], replay=0.0))
    budgets = sorted({sum(stage.steps.get(task, 0) for stage in stages) for task in settings.tasks})
    mixing = (f"all tasks of a stage in every step, --loss-weighting {options[WeightingOptions].loss_weighting}"
              if schedule_options.task_mixing == "all" else
              f"one task per step, --task-sampling {schedule_options.task_sampling}")
    return {
        "corpus": options[CorpusOptions].corpus or "the bundled sample (Persuasion, chapters 1-12)",
        "curricula": list(dict.fromkeys(v.schedule + (f"+replay ({v.replay:g} of each stage)" if v.replay else "")
                                        for v in variants)),
        "architectures": list(dict.fromkeys(v.architecture for v in variants)),
        **({"expert layers (K)": options[ArchitectureOptions].expert_layers}
           if any("expert_layers" in ARCHITECTURES.get(v.architecture).options_used for v in variants) else {}),
        "tasks": settings.tasks,
        "mlm baseline": mlm_task(settings.tasks),
        "steps per task": "-".join(map(str, budgets)),
        "model": model.init_from or f"{model.model_size} (new)",
        "task mixing": mixing,
        "learning rate": f"{training.learning_rate} ({training.lr_schedule} schedule)",
        "batch size": training.batch_size,
        "seeds": [training.seed + k for k in range(settings.seeds)],
        "held-out split": f"--eval-fraction {options[EvaluationOptions].eval_fraction}, --split-seed "
                          f"{options[EvaluationOptions].split_seed} (the same for every seed)",
        "metric": settings.metric,
        "forward transfer": ("against each task trained alone" if settings.forward_transfer
                             else "not measured (--no-forward-transfer)"),
        "downstream": (f"train {settings.downstream_train}, test {settings.downstream_test}, "
                       f"{settings.downstream_epochs} epoch{'s' * (settings.downstream_epochs != 1)}, learning rate "
                       f"{settings.downstream_learning_rate}" if settings.downstream_train else "none"),
    }


def compare(options: dict[type, Any]) -> Path:
    """Run every variant, reference and baseline with every seed and write the report; returns report.md's path.
    --output-dir is claimed for the whole comparison (:mod:`ernie_cpt.claims`), and a full disk's error says
    to run compare again (it keeps finished runs and resumes the others)."""
    variants, data = _validate(options)
    with claim(options[CompareOptions].output_dir, "--output-dir", "compare"), advice_on_full_disk(RERUN):
        return _compare(options, variants, data)


def _compare(options: dict[type, Any], variants: list[Variant], data: LabelledData | None) -> Path:
    from ernie_cpt.evaluation.report import (
        write_report,  # matplotlib: loaded when a report is written, not by the CLI's parser
    )

    settings, training = options[CompareOptions], options[TrainingOptions]
    documents = annotate(read_corpus(options[CorpusOptions]), options[AnnotationOptions])
    root = Path(settings.output_dir)
    probes = None
    if settings.probes or data is None:
        held_out = split_documents(documents, options[EvaluationOptions].eval_fraction,
                                   options[EvaluationOptions].split_seed)["test"]
        probes = probe_sets(held_out, options[EvaluationOptions].split_seed) or None
    references = ({task: _reference_file(options, variants, task, root) for task in settings.tasks}
                  if settings.forward_transfer else {})
    results = []
    try:
        for seed in range(training.seed, training.seed + settings.seeds):
            results += _runs_of_seed(options, variants, seed, root, probes, references)
        if data is not None:
            results.append(tfidf_run(root / "runs" / "tfidf", data, _downstream(settings, training, 0, root)))
    except Interrupted as e:  # every file is written whole (atomically, or staged); the runs carry on
        e.advice = ("continue with the same compare command: finished runs are kept, and an interrupted one "
                    "resumes from its last checkpoint")
        raise
    order = [v.name for v in variants] + ["mlm", "none", "tfidf"]
    results = sorted(_with_forward_transfer(results), key=lambda r: (order.index(r["variant"]), r["seed"] or 0))
    axis = ("architecture", "architectures") if settings.architectures is not None else ("curriculum", "curricula")
    with interrupt.deferred():  # the report's files are written all, not some new and some old, then it stops
        return write_report(results, _setup(options, variants), root / "report", axis)
