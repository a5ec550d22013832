"""The training loop: stages in order, checkpoints that resume bit-exactly.

:func:`train` reads top to bottom: for every optimizer step it chooses the tasks - one drawn by the
sampler (``--task-mixing sample``) or every task of the stage with steps left (``all``, losses
combined by the loss weighting) - accumulates their gradients, and applies them or skips a step
whose loss or gradient norm is NaN/inf (``ernie_cpt.training.step``), then logs, records the
routing, evaluates and checkpoints when due. A skipped step still counts (its batches and its place
in the schedules are used up): it is logged with ``"skipped": true`` and a warning, and more than
``--max-nonfinite-steps`` of them stop the run before another checkpoint. At a stage boundary the
stage is scored, and AdamW's moments are reset if ``--reset-optimizer`` asks for it; parameters
always carry over. Where the architecture routes tasks (gates, cross-stitch units), the mean routing
weights of ``model.routing()`` go to ``logs/routing.jsonl`` every ``--logging-steps`` and at every
checkpoint.

SIGINT or SIGTERM (``ernie_cpt.interrupt``) stops the run at the end of the step it arrives in (the
processes agree on which): a checkpoint is saved there unless one just was, and ``Interrupted``
names the step and the checkpoint, from which ``--resume`` continues as the uninterrupted run would.

Progress is a :class:`~ernie_cpt.training.train_state.TrainState`, saved in every checkpoint.
:func:`train` takes a :class:`Trainer` of built objects (model, streams, optimizer, LR schedule,
sampler, weighting, run log); :func:`build_trainer` assembles one from the option groups.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LRScheduler
from torch.utils.data import DataLoader

from ernie_cpt import distributed, interrupt
from ernie_cpt.errors import UserError
from ernie_cpt.heap import release_free_memory
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.saved_model import describe_model
from ernie_cpt.progress import progress
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.checkpoint import Checkpoint, latest_name, save_checkpoint
from ernie_cpt.training.device import memory_record, pick_device
from ernie_cpt.training.evaluate import evaluate, evaluation_line, explain_rising_loss
from ernie_cpt.training.optimization import build_lr_scheduler, build_optimizer
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.training.run_log import RunLog
from ernie_cpt.training.step import StepResult, TrainStep
from ernie_cpt.training.train_state import TrainState
from ernie_cpt.weighting import LossWeighting
from schedules.options import ScheduleOptions
from schedules.sampling import Sampler, get_sampler
from schedules.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class Trainer:
    """Everything :func:`train` works with, built. ``model`` is on ``device``; ``streams`` yield each
    task's batches (``next``, ``state()``/``load_state()``, ``rows``); ``schedule`` gives each stage's
    steps per task. ``task_mixing`` "sample" trains one task per optimizer step, drawn by ``sampler``
    (at ``sampling_temperature``) with a generator seeded per (seed, stage, step); "all" trains every
    task of the stage with steps left, their losses combined by ``weighting`` (None: summed).
    ``args`` gives the seed, micro-batches, clipping, logging and checkpoint cadence and the
    non-finite limit; ``eval_batches`` are scored every ``eval_steps`` (0: at stage ends only).
    ``model_description`` (``describe_model``) goes into every checkpoint, so that it loads on its own."""

    model: Architecture
    streams: dict[str, TaskStream]
    schedule: list[Stage]
    optimizer: torch.optim.Optimizer
    lr_scheduler: LRScheduler
    run_log: RunLog
    run_dir: Path
    args: TrainingOptions
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    task_mixing: str = "sample"
    sampler: Sampler = field(default_factory=lambda: get_sampler("remaining"))
    sampling_temperature: float = 2.0
    weighting: LossWeighting | None = None
    eval_batches: dict[str, DataLoader] = field(default_factory=dict)
    eval_steps: int = 0
    eval_untrained_tasks: bool = False
    reset_optimizer: bool = False
    model_description: dict[str, Any] | None = None
    train_step: TrainStep = field(init=False)
    # task -> (step, metrics) of its lowest held-out loss; None once its rising loss was explained
    lowest_eval: dict[str, tuple[int, dict] | None] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.weighting is not None and self.task_mixing != "all":
            raise ValueError("a loss weighting combines the tasks of a step: it needs task_mixing 'all'")
        self.train_step = TrainStep(self.model, self.optimizer, self.weighting, self.device,
                                    grad_accum_steps=self.args.grad_accum_steps, seed=self.args.seed,
                                    max_grad_norm=self.args.max_grad_norm, amp=self.args.amp)

    @property
    def total_steps(self) -> int:
        return sum(stage.optimizer_steps(self.task_mixing) for stage in self.schedule)


def build_trainer(model: Architecture, streams: dict[str, TaskStream], schedule: list[Stage], run_dir: Path, *,
                  training: TrainingOptions, mixing: ScheduleOptions, evaluation: EvaluationOptions | None = None,
                  weighting: LossWeighting | None = None, eval_batches: dict[str, DataLoader] | None = None) -> Trainer:
    """A :class:`Trainer` of ``model`` from the option groups: the model (and ``weighting``, used with task_mixing
    "all") on ``training.device``, AdamW over both, the LR schedule over ``schedule``, the task sampler, the
    run log (TensorBoard with ``report_to``) in ``run_dir``. Raises UserError for a device this machine lacks."""
    device = pick_device(training.device)
    model.to(device)
    for stream in streams.values():
        stream.use_pinned_memory(device.type == "cuda")  # batches copied without waiting for the GPU
    if weighting is not None:
        weighting.to(device)
    optimizer = build_optimizer(model, list(weighting.parameters()) if weighting is not None else [], training, device)
    evaluation = evaluation or EvaluationOptions(eval_steps=0)
    return Trainer(
        model, streams, schedule, optimizer, build_lr_scheduler(optimizer, schedule, training, mixing.task_mixing),
        RunLog(run_dir, tensorboard=training.report_to == "tensorboard"), run_dir, training, device,
        task_mixing=mixing.task_mixing, sampler=get_sampler(mixing.task_sampling),
        sampling_temperature=mixing.sampling_temperature, weighting=weighting, eval_batches=eval_batches or {},
        eval_steps=evaluation.eval_steps, eval_untrained_tasks=evaluation.eval_untrained_tasks,
        reset_optimizer=mixing.reset_optimizer, model_description=describe_model(model))


def train(trainer: Trainer, resume_from: Checkpoint | None = None,
          description: str = "Pre-training") -> dict[str, dict]:
    """Run every stage of ``trainer.schedule``, from checkpoint ``resume_from`` if given, under a progress
    bar named ``description``; returns the evaluation at the end of the last stage (task -> metrics).
    Evaluations score the tasks trained so far (all tasks with ``eval_untrained_tasks``); those at the
    end of a stage are marked ``stage_end``: they make the accuracy matrix. Raises UserError after too
    many non-finite steps, and ``interrupt.Interrupted`` (after a checkpoint) on SIGINT/SIGTERM."""
    state = resume(trainer, resume_from) if resume_from is not None else TrainState()
    release_free_memory()  # what building the examples freed: training starts from what is alive
    trainer.model.train()
    results: dict[str, dict] = {}
    bar = progress(trainer.total_steps, description, "step", initial=state.step, disable=not distributed.is_main())
    with bar, trainer.run_log, interrupt.deferred() as stop_signal:  # the log is closed on errors too
        state.start_window()
        while state.stage < len(trainer.schedule):
            stage = trainer.schedule[state.stage]
            if state.stage_over(stage):  # a stage without steps
                state.next_stage()
                continue

            # One optimizer step: choose the tasks, accumulate their gradients, apply them or skip.
            tasks = choose_tasks(trainer, state, stage)
            result = trainer.train_step.accumulate(trainer.streams, tasks, state)
            trainer.train_step.apply_or_skip(result, state)
            trainer.lr_scheduler.step()
            trainer.optimizer.zero_grad(set_to_none=True)
            state.advance(tasks)
            bar.update(1)

            # Then log, route, evaluate and checkpoint when due, and stop if asked to.
            log_step(trainer, state, result, bar)
            if routing_due(trainer, state):
                log_routing(trainer, state)
            check_nonfinite(trainer, state, result)
            ended = None
            if state.stage_over(stage):  # stage over: score it
                results = evaluate_now(trainer, state, stage_end=True)
                ended = end_stage(trainer, state)
            elif trainer.eval_steps and state.step % trainer.eval_steps == 0:
                evaluate_now(trainer, state, stage_end=False)
            saved = ended is not None or state.step % trainer.args.save_steps == 0 or state.step == trainer.total_steps
            if saved:
                save(trainer, state, stage_end=ended)  # every stage end is kept: export --stage K
            stop_if_signalled(trainer, state, stop_signal(), saved)
    return results


def resume(trainer: Trainer, checkpoint: Checkpoint) -> TrainState:
    """Load the model, optimizer, LR schedule, weighting and stream positions of ``checkpoint``, drop the
    log records past it; its progress."""
    path, (weights, training_state, trainer_state) = checkpoint
    trainer.model.load_state_dict(weights)
    trainer.optimizer.load_state_dict(training_state["optimizer"])
    trainer.lr_scheduler.load_state_dict(training_state["scheduler"])
    if trainer.weighting is not None:
        trainer.weighting.load_state_dict(training_state["weighting"])
    state = TrainState()
    state.load_state_dict(trainer_state)
    for task, position in trainer_state["streams"].items():
        trainer.streams[task].load_state(position)
    trainer.run_log.truncate_after(state.step)
    log.info("Resumed from %s at step %d", path, state.step)
    return state


def choose_tasks(trainer: Trainer, state: TrainState, stage: Stage) -> list[str]:
    """The tasks this step trains: every task of ``stage`` with steps left, or one drawn by the sampler."""
    remaining = state.remaining(stage)
    if trainer.task_mixing == "all":
        return [task for task, left in remaining.items() if left > 0]
    rng = np.random.default_rng([trainer.args.seed, state.stage, state.step])
    sizes = {task: len(stream.rows) for task, stream in trainer.streams.items()}
    return [trainer.sampler(remaining, sizes, trainer.sampling_temperature, rng)]


def log_step(trainer: Trainer, state: TrainState, result: StepResult, bar: Any) -> None:
    """The weighting's task weights after every applied step; a ``train`` record (loss, LR, gradient
    norm, the architecture's ``aux_loss`` where it has one, tokens/s) every ``logging_steps``, at the
    last step and for a skipped step. ``loss`` is the sum of the tasks' losses, without the penalty."""
    if trainer.weighting is not None and not result.skipped:
        trainer.run_log.write("weights", {"step": state.step, "stage": state.stage,
                                          "weights": trainer.weighting.last_weights})
    if not (result.skipped or state.step % trainer.args.logging_steps == 0 or state.step == trainer.total_steps):
        return
    tokens_per_s, empty_batches = state.close_window()
    record = {"step": state.step, "stage": state.stage, "task": "+".join(result.tasks),
              "loss": sum(result.losses.values()), "lr": trainer.lr_scheduler.get_last_lr()[0],
              "grad_norm": result.grad_norm, **({"aux_loss": result.aux_loss} if result.aux_loss is not None else {}),
              "tokens_per_s": tokens_per_s, **memory_record(trainer.device),
              **({"losses": result.losses} if trainer.task_mixing == "all" else {}),
              **({"skipped": True} if result.skipped else {}),
              **({"empty_batches": empty_batches} if empty_batches else {})}
    trainer.run_log.write("train", record)
    bar.set_postfix(task=record["task"], loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")


def routing_due(trainer: Trainer, state: TrainState) -> bool:
    """At every ``train`` record's cadence and every checkpoint: a resumed run starts from a checkpoint
    with nothing accumulated, and so logs what the whole run logs."""
    step, args = state.step, trainer.args
    return step % args.logging_steps == 0 or step % args.save_steps == 0 or step == trainer.total_steps


def log_routing(trainer: Trainer, state: TrainState) -> None:
    """Each task's mean routing weights since the last record (every process takes part)."""
    for task, weights in trainer.model.routing().items():
        trainer.run_log.write("routing", {"step": state.step, "stage": state.stage, "task": task, "weights": weights})


def check_nonfinite(trainer: Trainer, state: TrainState, result: StepResult) -> None:
    """Warn of a skipped step; raise UserError when more than ``max_nonfinite_steps`` were skipped."""
    if not result.skipped:
        return
    limit = trainer.args.max_nonfinite_steps
    log.warning("step %d (%s): loss %s, gradient norm %s; step skipped (%d of at most %d)", state.step,
                "+".join(result.tasks), result.losses, result.grad_norm, state.nonfinite_steps, limit)
    if state.nonfinite_steps > limit:
        kept = latest_name(trainer.run_dir) or "none (none was saved)"
        raise UserError(f"the loss or gradient norm was NaN/inf in {state.nonfinite_steps} steps (the last: step "
                        f"{state.step}, {', '.join(result.nonfinite)}), more than --max-nonfinite-steps {limit}; "
                        f"the last good checkpoint is {kept}, intact: lower --learning-rate (now "
                        f"{trainer.args.learning_rate:g}) and start a new run, or --resume with a higher "
                        f"--max-nonfinite-steps")


def evaluate_now(trainer: Trainer, state: TrainState, stage_end: bool) -> dict[str, dict]:
    """Score the held-out batches of the tasks trained so far (of all with ``eval_untrained_tasks``) and
    log them (``eval`` records); task -> metrics."""
    trained = {task for stage in trainer.schedule[:state.stage + 1] for task, n in stage.steps.items() if n > 0}
    scored = {task: batches for task, batches in trainer.eval_batches.items()
              if trainer.eval_untrained_tasks or task in trained}
    results = evaluate(trainer.model, scored, trainer.device)
    for task, metrics in results.items():
        trainer.run_log.write("eval", {"step": state.step, "stage": state.stage, "task": task,
                                       "stage_end": stage_end, "trained": task in trained, **metrics})
    if results and distributed.is_main():
        log.info(evaluation_line(state.step, state.stage + 1 if stage_end else None, results))
        explain_rising_loss(trainer, state, results)
    return results


def end_stage(trainer: Trainer, state: TrainState) -> int:
    """Move on to the next stage (AdamW's moments cleared with ``reset_optimizer``); K, the stage
    that ended (from 1)."""
    state.next_stage()
    if trainer.reset_optimizer:
        trainer.optimizer.state.clear()
    return state.stage


def save(trainer: Trainer, state: TrainState, stage_end: int | None = None) -> None:
    """Checkpoint the run (main process only): weights, optimizer, LR schedule and weighting state, and
    ``trainer_state.json`` (the :class:`TrainState`, the streams' positions, ``stage_end``)."""
    if not distributed.is_main():
        return
    weighting = trainer.weighting
    training_state = {"optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.lr_scheduler.state_dict(),
                      **({"weighting": weighting.state_dict()} if weighting is not None else {})}
    streams = {task: stream.state() for task, stream in trainer.streams.items()}
    trainer_state = {**state.state_dict(), "streams": streams, **({"stage_end": stage_end} if stage_end else {})}
    save_checkpoint(trainer.run_dir, state.step, trainer.model, training_state, trainer_state,
                    keep=trainer.args.save_total_limit, description=trainer.model_description)


def stop_if_signalled(trainer: Trainer, state: TrainState, signum: int | None, saved: bool) -> None:
    """After SIGINT/SIGTERM on any process (they agree on the step), checkpoint here unless ``saved``
    and raise ``interrupt.Interrupted``; nothing at the last step, which ends the run anyway."""
    signum = distributed.any_rank(signum or 0, trainer.device)  # every process stops at the same step
    if not signum or state.step >= trainer.total_steps:
        return
    if not saved:
        log_routing(trainer, state)  # the routing means since the last record, as at every checkpoint
        save(trainer, state)
    raise interrupt.Interrupted(signum, state.step, latest_name(trainer.run_dir) if distributed.is_main() else None,
                                "continue with the same command and --resume")
