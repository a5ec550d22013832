"""``ernie-cpt finetune MODEL --task NAME:KIND:TRAIN:TEST ...``: MT-DNN multi-task fine-tuning.

Liu, He, Chen & Gao 2019, "Multi-Task Deep Neural Networks for Natural Language Understanding"
(ACL), section 3.2. MODEL (an export or a run of any architecture, read by ``load_model``) gets
every labelled set as a new task: ``Architecture.add_task`` routes it (a gated architecture's new
gate, PLE's experts, a cross-stitch column: a copy of the model's first task's, see each
architecture) on row 0 of the task embedding, the row knowledge masking trains, and the set's
kind gives its head (``ernie_cpt.data.labelled_sets.KINDS``), initialised by the seed. Then the
trainer of pre-training (``ernie_cpt.training.trainer.train``: same checkpoints, resume and DDP)
trains one stage in which set i has ``n_i = ceil(--epochs x |train_i| / --batch-size)`` steps:
one set per mini-batch, drawn in proportion to the sets' sizes (task sampler ``size`` at
temperature 1, MT-DNN's sampling), or with ``--multitask-mixing all`` a batch of every set in each
step, combined by ``--loss-weighting``. ``--then-single-task`` adds MT-DNN's second stage: each set
fine-tuned alone from the multi-task model for ``m_i`` steps (``--single-task-epochs``).

The comparison, per seed: single-task fine-tuning of MODEL on set i alone for the same number of
steps on set i, ``n_i + m_i``. Optimisation as ``finetune --train``: AdamW without weight decay,
gradients clipped at norm 1, linear warm-up over 10 % of a run's steps then linear decay. Every
set's test file is scored by its head's metrics; ``DIR/report.json`` and ``DIR/report.md`` give
per set and variant the mean ± std over ``--seeds`` beside the trivial baseline.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch

from ernie_cpt import distributed
from ernie_cpt.claims import claim_on_main
from ernie_cpt.commands.multitask_dir import DATA, multitask_settings, prepare_multitask_dir
from ernie_cpt.commands.options import FinetuneOptions, MultiTaskFinetuneOptions
from ernie_cpt.data.labelled_sets import LabelledSet, load_set, parse_specs
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError
from ernie_cpt.evaluation.multitask_report import METRICS, markdown, summarise
from ernie_cpt.files import check_output_path
from ernie_cpt.full_disk import advice_on_full_disk, writing
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.heads import Head, build_head, ranking_metrics
from ernie_cpt.options import absent_values, check_ranges, to_dict
from ernie_cpt.threads import torch_thread_count, torch_threads
from ernie_cpt.training.checkpoint import atomic_write_text, read_checkpoint
from ernie_cpt.training.device import pick_device
from ernie_cpt.training.labelled_tasks import labelled_stream, test_batches
from ernie_cpt.training.loading import RUN_MARKER, load_model
from ernie_cpt.training.options import TrainingOptions
from ernie_cpt.training.run_dir import CONFIG, resolve_resume, run_directory
from ernie_cpt.training.run_environment import environment
from ernie_cpt.training.trainer import build_trainer, train
from ernie_cpt.weighting import WEIGHTINGS, weighting_from
from ernie_cpt.weighting.options import WeightingOptions
from schedules import ScheduleOptions, Stage

log = logging.getLogger(__name__)

WARMUP_RATIO = 0.1
# options that do not change what one run trains (the other runs' settings, where the runs go)
NOT_OF_A_RUN = {"task", "multitask_dir", "then_single_task", "single_task_epochs", "seeds", "output_json"}
DOWNSTREAM_TASK_ID = 0  # the task-embedding row of every set: knowledge masking's, as finetune --train


def _validate(model_dir: str | Path, options: FinetuneOptions, multi: MultiTaskFinetuneOptions,
              weighting: Mapping[type, Any]) -> None:
    for instance in (options, multi, *weighting.values()):
        check_ranges(instance)
    if not multi.multitask_dir:
        raise UserError("finetune --task needs --multitask-dir DIR (where the runs and the report go)")
    check_output_path(multi.multitask_dir, "--multitask-dir", folder=True)
    if options.output_json:
        check_output_path(options.output_json, "--output-json")
    if options.train or options.test:
        raise UserError("pass either --train/--test (one set) or --task (several sets), not both")
    if not options.seeds:
        raise UserError("--seeds needs at least one seed")
    if len(set(options.seeds)) != len(options.seeds):
        raise UserError(f"--seeds {options.seeds} repeats a seed; give each seed once")
    if options.batch_size % distributed.world_size():
        raise UserError(f"--batch-size {options.batch_size} must be a multiple of the {distributed.world_size()} "
                        f"processes")
    if not Path(model_dir).exists():
        raise UserError(f"MODEL {model_dir} does not exist; pass an ernie-cpt export or a pretrain run directory")


def _steps(labelled: LabelledSet, epochs: int, batch_size: int) -> int:
    return math.ceil(epochs * len(labelled.train) / batch_size)


def _training(options: FinetuneOptions, multi: MultiTaskFinetuneOptions, seed: int, steps: int) -> TrainingOptions:
    return TrainingOptions(max_steps=steps, batch_size=options.batch_size, learning_rate=options.learning_rate[0],
                           weight_decay=0.0, warmup_ratio=WARMUP_RATIO, max_grad_norm=1.0, seed=seed,
                           save_steps=multi.save_steps, save_total_limit=1, report_to="none", device=options.device,
                           num_threads=options.num_threads)


def _with_sets(model: Architecture, sets: list[LabelledSet], seed: int) -> Architecture:
    """A copy of ``model`` with every set added as a task, its head initialised from ``seed``."""
    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    for labelled in sets:
        name = labelled.spec.name
        if name in model.task_ids:
            raise UserError(f"--task {name}: the model already has a task {name} ({', '.join(model.task_ids)}); "
                            f"give the set another name")
        model.add_task(name, DOWNSTREAM_TASK_ID)
        model.add_head(name, build_head(labelled.head, model.config, labelled.num_labels, model.word_embeddings()))
    return model.train()


def _run(run_dir: Path, model: Architecture, sets: list[LabelledSet], steps: dict[str, int], seed: int,
         options: FinetuneOptions, multi: MultiTaskFinetuneOptions, weighting: Mapping[type, Any],
         tokenizer: Any) -> Architecture:
    """Train ``model`` (in place) on ``sets`` for ``steps`` each in ``run_dir`` with the trainer; resumes a run there
    with --resume (a finished one is only read back)."""
    mixing = ScheduleOptions(task_mixing=multi.multitask_mixing if len(sets) > 1 else "sample",
                             task_sampling="size", sampling_temperature=1.0)
    training = _training(options, multi, seed, sum(steps.values()))
    schedule = [Stage(dict(steps))]
    config = {key: value for key, value in to_dict(options, multi, *weighting.values(), training, mixing).items()
              if key not in NOT_OF_A_RUN}
    config.update(stages=[schedule[0].steps], tasks=list(steps), sets=[dataclasses.asdict(s.spec) for s in sets],
                  environment=environment(pick_device(training.device), training.amp, annotates=False))
    resume = multi.resume and (run_dir / CONFIG).is_file()
    found = None

    def choose() -> Path | None:  # the main process decides; the others read the checkpoint it names
        nonlocal found
        found = resolve_resume(run_dir, config, resume, False,
                               absent=absent_values(options, multi, *weighting.values(), training, mixing))
        return found[0] if found else None

    path = distributed.main_result(choose)
    resume_from = found if distributed.is_main() or path is None else (path, read_checkpoint(path))
    streams = {s.spec.name: labelled_stream(s, i, tokenizer, options.batch_size, seed, distributed.rank(),
                                            distributed.world_size()) for i, s in enumerate(sets)}
    combine = weighting_from(weighting, list(steps)) if mixing.task_mixing == "all" else None
    with run_directory(run_dir, config, resume_from):
        if resume_from is None and distributed.is_main():  # a run directory load_model and export read
            with writing(f"the tokenizer and {RUN_MARKER} in {run_dir}", run_dir):
                model.config.to_json_file(str(run_dir / RUN_MARKER))
                tokenizer.save_pretrained(str(run_dir / "tokenizer"))
        train(build_trainer(model, streams, schedule, run_dir, training=training, mixing=mixing, weighting=combine),
              resume_from, description="Multi-task fine-tuning")
    return model


@torch.no_grad()
def _score(model: Architecture, labelled: LabelledSet, tokenizer: Any, batch_size: int,
           device: torch.device) -> dict[str, float]:
    """The set's test scores by its head's metrics (macro-F1 by scikit-learn for the classification kinds)."""
    from sklearn.metrics import f1_score

    model.eval()
    name, head = labelled.spec.name, cast(Head, model.heads[labelled.spec.name])
    predictions, labels = [], []
    for batch in test_batches(labelled, tokenizer, batch_size):
        out = model(name, {k: v.to(device) for k, v in batch.items()})
        predictions.append(out.predictions.cpu())
        labels.append(out.labels.cpu())
    model.train()
    predicted, truth = torch.cat(predictions), torch.cat(labels)
    metrics = head.metrics(predicted, truth)
    if labelled.spec.kind in ("classification", "pair_classification"):
        metrics["macro_f1"] = float(f1_score(truth.numpy(), predicted.numpy(), average="macro", zero_division=0))
    return {metric: metrics[metric] for metric in METRICS[labelled.spec.kind][0]}


def _baseline(labelled: LabelledSet) -> dict[str, float]:
    """The trivial scores of a set's test file: majority training class, training-mean predictor, random ranking."""
    from sklearn.metrics import f1_score

    truth = [e["labels"] for e in labelled.test]
    kind = labelled.spec.kind
    if kind == "regression":
        mean = sum(e["labels"] for e in labelled.train) / len(labelled.train)
        return {"mean_predictor_mse": sum((y - mean) ** 2 for y in truth) / len(truth)}
    if kind == "ranking":
        grid = torch.nn.utils.rnn.pad_sequence([torch.tensor(y) for y in truth], batch_first=True, padding_value=-100)
        metrics = ranking_metrics(torch.zeros(grid.shape).uniform_(), grid)
        return {"random_mrr": metrics["random_mrr"], "random_accuracy": metrics["random_accuracy"]}
    majority = Counter(e["labels"] for e in labelled.train).most_common(1)[0][0]
    guess = [majority] * len(truth)
    return {"majority_accuracy": sum(g == y for g, y in zip(guess, truth)) / len(truth),
            "majority_macro_f1": float(f1_score(truth, guess, average="macro", zero_division=0))}


def finetune_multitask(model_dir: str | Path, options: FinetuneOptions, multi: MultiTaskFinetuneOptions,
                       weighting: Mapping[type, Any]) -> dict[str, Any]:
    """Multi-task fine-tuning of ``model_dir`` on ``multi.task``'s sets, per seed, beside single-task fine-tuning;
    returns the report (also written to ``DIR/report.json`` and ``DIR/report.md``). Raises UserError for bad input,
    before anything is written, and for a DIR another command is writing (it is claimed: :mod:`ernie_cpt.claims`)."""
    _validate(model_dir, options, multi, weighting)
    assert multi.multitask_dir, "checked by _validate"
    distributed.init(pick_device(options.device))
    with claim_on_main(multi.multitask_dir, "--multitask-dir", "finetune"):
        return _finetune_multitask(model_dir, options, multi, weighting)


def _finetune_multitask(model_dir: str | Path, options: FinetuneOptions, multi: MultiTaskFinetuneOptions,
                        weighting: Mapping[type, Any]) -> dict[str, Any]:
    specs = parse_specs(multi.task)
    if not specs:
        raise UserError("finetune --task needs at least one NAME:KIND:TRAIN:TEST")
    if len(options.learning_rate) != 1:
        raise UserError(f"finetune --task trains every run at one learning rate (it has no validation split to "
                        f"choose among {len(options.learning_rate)}): pass one, e.g. --learning-rate 3e-4")
    name = (weighting.get(WeightingOptions) or WeightingOptions()).loss_weighting
    if WEIGHTINGS.get(name).needs_kpis and any(s.kind == "regression" for s in specs):
        raise UserError(f"--loss-weighting {name} weighs tasks by their accuracy, which a regression set has not; "
                        f"choose another --loss-weighting")
    device = pick_device(options.device)
    distributed.init(device)
    source = load_model(model_dir)
    tokenizer = load_tokenizer(source.tokenizer_dir)
    positions = source.model.config.max_position_embeddings
    if options.max_seq_length > positions:
        raise UserError(f"--max-seq-length {options.max_seq_length} exceeds the model's {positions} positions; "
                        f"lower it")
    sets = [load_set(spec, tokenizer, options.max_seq_length) for spec in specs]
    _with_sets(source.model, sets, 0)  # a name the model has is an error before anything is written
    assert multi.multitask_dir, "checked by _validate"
    out = Path(multi.multitask_dir)
    first = {s.spec.name: _steps(s, options.epochs, options.batch_size) for s in sets}
    second = {s.spec.name: _steps(s, multi.single_task_epochs, options.batch_size) if multi.then_single_task else 0
              for s in sets}
    scores: dict[str, dict[str, list]] = {s.spec.name: {} for s in sets}

    def record(variant: str, model: Architecture, labelled: LabelledSet, seed: int) -> None:
        result = {"seed": seed, **_score(model, labelled, tokenizer, options.batch_size, device)}
        scores[labelled.spec.name].setdefault(variant, []).append(result)
        log.info("%s, %s, seed %d: %s", labelled.spec.name, variant, seed,
                 ", ".join(f"{k} {v:.4f}" for k, v in result.items() if k != "seed"))

    settings = multitask_settings(model_dir, options, multi, weighting)
    distributed.main_result(lambda: prepare_multitask_dir(out, model_dir, settings, multi.resume, options.overwrite))
    resume = "free space, then run the same command with --resume (finished runs are kept)"
    with torch_threads(*torch_thread_count(options.num_threads)), advice_on_full_disk(resume):
        for seed in options.seeds:
            mt = _run(out / "runs" / f"multi_task-seed{seed}", _with_sets(source.model, sets, seed), sets, first,
                      seed, options, multi, weighting, tokenizer)
            for labelled in sets:
                name = labelled.spec.name
                record("multi_task", mt, labelled, seed)
                if multi.then_single_task:
                    stage2 = _run(out / "runs" / f"multi_task_then_{name}-seed{seed}", copy.deepcopy(mt), [labelled],
                                  {name: second[name]}, seed, options, multi, weighting, tokenizer)
                    record("multi_task_then_single_task", stage2, labelled, seed)
                alone = _run(out / "runs" / f"single_task_{name}-seed{seed}",
                             _with_sets(source.model, [labelled], seed), [labelled],
                             {name: first[name] + second[name]}, seed, options, multi, weighting, tokenizer)
                record("single_task", alone, labelled, seed)
    report = {"model": settings["model"], "architecture": source.model.name, "seeds": list(options.seeds),
              "settings": {k: v for k, v in settings.items() if k not in ("model", "task", DATA)},
              "steps": {name: {"multi_task": first[name], "single_task_stage": second[name],
                               "single_task": first[name] + second[name]} for name in first},
              "sets": {s.spec.name: {"kind": s.spec.kind, "train_examples": len(s.train),
                                     "test_examples": len(s.test), "baseline": _baseline(s),
                                     "variants": {v: summarise(r) for v, r in scores[s.spec.name].items()}}
                       for s in sets}}
    if distributed.is_main():
        atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n", resume)
        atomic_write_text(out / "report.md", markdown(report) + "\n", resume)
        if options.output_json:
            Path(options.output_json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(options.output_json), json.dumps(report, indent=2) + "\n", resume)
    return report
