"""The training loop: stages in order, checkpoints that resume bit-exactly.

Read it top to bottom: set-up (optimizer, LR schedule, resume), then for every optimizer step
choose the tasks it trains - one task drawn by the sampler (``--task-mixing sample``) or every
task of the stage with steps left (``--task-mixing all``, losses combined by the loss
weighting) - accumulate gradients over micro-batches, clip, step, and now and then log,
evaluate and checkpoint. At a stage boundary the stage is scored, and AdamW's moments are
reset if ``--reset-optimizer`` asks for it; parameters always carry over. The learning rate
follows one warm-up + linear-decay schedule over the whole curriculum (``--lr-schedule whole``),
or warms up and decays again in every stage (``--lr-schedule per-stage``). Where the architecture
routes tasks (gates, cross-stitch units), ``model.routing()`` gives per task the mean routing
weights since its last call; they go to ``logs/routing.jsonl`` every ``--logging-steps`` and at
every checkpoint.

A step whose loss or gradient norm is NaN or infinite is skipped: no parameter moves, a warning
naming the values seen and a ``"skipped": true`` record are logged, and the step still counts
(its batches and its place in the schedules are used up, so budgets and resumption are
unchanged). After more than ``--max-nonfinite-steps`` such steps in a run, training stops before
writing another checkpoint. A batch with nothing to score (no target token) is not one of them:
its head's loss is 0 and its gradients are 0; it is counted in the next ``train`` record
(``"empty_batches": {task: n}``).

SIGINT or SIGTERM (``ernie_cpt.interrupt``) stops the run at the end of the step it arrives in (the
processes agree on which): a checkpoint is saved there unless one just was, and ``Interrupted``
names the step and the checkpoint, from which ``--resume`` continues as the uninterrupted run would.

Dropout is seeded per (seed, step, rank), so a resumed run needs no RNG state. With several
processes (``ernie_cpt.distributed``) the step runs under DistributedDataParallel: each rank
scores its share of every batch, and losses are scaled so that the averaged gradient is that of
the whole batch, as in one process.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from bisect import bisect_right
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader
from transformers import get_linear_schedule_with_warmup

from ernie_cpt import distributed, interrupt
from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.saved_model import describe_model
from ernie_cpt.progress import progress
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.checkpoint import Checkpoint, latest_name, save_checkpoint
from ernie_cpt.training.device import enable_tf32, memory_record, to_device
from ernie_cpt.training.evaluate import evaluate
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.training.run_environment import autocast_dtype
from ernie_cpt.training.run_log import RunLog
from ernie_cpt.training.task_gradients import TaskGradients
from ernie_cpt.training.task_step import TasksForward, clip_gradients, global_losses, gradient_sync, losses_on
from ernie_cpt.weighting import LossWeighting
from schedules.options import ScheduleOptions
from schedules.sampling import get_sampler
from schedules.stage import Stage

log = logging.getLogger(__name__)

WEIGHTING_STREAM = 1  # the RNG key of a gradient-level weighting's random choices (PCGrad's order)


def pick_device(name: str) -> torch.device:
    """The device ``name`` means; under torchrun, "auto" and "cuda" mean this process's GPU. "auto" is
    the CPU without CUDA, or under ``accelerate launch --cpu`` (ACCELERATE_USE_CPU). Raises UserError
    for a name torch does not know or a GPU this machine does not have."""
    if name == "auto":
        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        name = "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"
    try:
        device = torch.device("cuda", distributed.local_rank()) if name == "cuda" else torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name} is not a device torch knows; pass cpu, cuda, cuda:N or auto") from e
    try:
        torch.empty(0, device=device)  # a device torch knows but this machine lacks fails here
    except (RuntimeError, AssertionError) as e:  # torch asserts when it was built without CUDA
        found = f"{torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no usable GPU"
        raise UserError(f"--device {name} is not available on this machine ({found}); pass --device cpu or auto") from e
    enable_tf32(device)  # fp32 matrix products on the tensor cores (Ampere and later); nothing on the CPU
    return device


def _optimizer(model: torch.nn.Module, weighting: LossWeighting | None, options: TrainingOptions,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model (no decay on biases and LayerNorm) and a learned loss weighting's parameters."""
    decay, no_decay = [], list(weighting.parameters()) if weighting is not None else []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over each tensor) is much faster than the per-tensor loop on CPU too.
    return torch.optim.AdamW(groups, lr=options.learning_rate, fused=device.type in ("cuda", "cpu"))


def score_line(metrics: dict[str, float]) -> str:
    """``loss 0.2613, accuracy 0.9480 (majority 0.8900), F1 0.7012 (majority 0.0000) over 250 targets``:
    one task's held-out scores; a head without accuracy (regression) shows its metrics as they are."""
    if "majority_accuracy" not in metrics:
        shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name != "scored")
        return f"{shown} over {plural(metrics['scored'], 'item')}"
    line = (f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f} "
            f"(majority {metrics['majority_accuracy']:.4f})")
    if "f1" in metrics:
        line += f", F1 {metrics['f1']:.4f} (majority {metrics['majority_f1']:.4f})"
    return f"{line} over {plural(metrics['scored'], 'target')}"


def per_stage_factor(step: int, ends: list[int], warmup_ratio: float) -> float:
    """The learning-rate multiplier of optimizer step ``step`` (0-based) under ``--lr-schedule
    per-stage``: inside the stage that ends at ``ends[k]`` (cumulative optimizer steps), linear
    warm-up over its first ``round(warmup_ratio * length)`` steps, then linear decay to 0 at its
    end, as ``transformers.get_linear_schedule_with_warmup`` over that stage alone. The re-warming
    and re-decaying of Ibrahim et al. 2024 ("Simple and Scalable Strategies to Continually
    Pre-train Large Language Models", TMLR); 0 past the last stage."""
    stage = bisect_right(ends, step)
    if stage == len(ends):
        return 0.0
    start = ends[stage - 1] if stage else 0
    length, local = ends[stage] - start, step - start
    warmup = round(warmup_ratio * length)
    if local < warmup:
        return local / warmup
    return max(0.0, (length - local) / max(1, length - warmup))


def _lr_scheduler(optimizer: torch.optim.Optimizer, schedule: list[Stage], options: TrainingOptions,
                  task_mixing: str) -> LambdaLR:
    """Warm-up + linear decay over the whole curriculum, or in every stage (``options.lr_schedule``)."""
    lengths = [stage.optimizer_steps(task_mixing) for stage in schedule]
    if options.lr_schedule == "whole":
        return get_linear_schedule_with_warmup(optimizer, round(options.warmup_ratio * sum(lengths)), sum(lengths))
    ends = np.cumsum(lengths).tolist()
    return LambdaLR(optimizer, partial(per_stage_factor, ends=ends, warmup_ratio=options.warmup_ratio))


def _dropout_seed(seed: int, step: int) -> int:
    return int(np.random.SeedSequence([seed, step, distributed.rank()]).generate_state(1)[0])


def train(model: Architecture, streams: dict[str, TaskStream], eval_batches: dict[str, DataLoader],
          schedule: list[Stage], options: TrainingOptions, mixing: ScheduleOptions,
          weighting: LossWeighting | None, evaluation: EvaluationOptions, run_dir: Path,
          resume_from: Checkpoint | None) -> dict[str, dict]:
    """Run every stage of ``schedule`` (from checkpoint ``resume_from`` if given); returns the final
    evaluation. ``weighting`` combines the losses when ``mixing.task_mixing == "all"``.
    Evaluations score the tasks trained so far (all tasks with ``evaluation.eval_untrained_tasks``);
    those at the end of a stage are marked ``stage_end``: they make the accuracy matrix."""
    device = pick_device(options.device)
    model.to(device)
    for stream in streams.values():
        stream.use_pinned_memory(device.type == "cuda")  # batches copied without waiting for the GPU
    if weighting is not None:
        weighting.to(device)
    optimizer = _optimizer(model, weighting, options, device)
    all_tasks = mixing.task_mixing == "all"
    combine = weighting is not None and all_tasks
    sampler = get_sampler(mixing.task_sampling)
    sizes = {task: len(stream.rows) for task, stream in streams.items()}
    shared = model.shared_layer_weights()[-1]  # the last layer every task shares (GradNorm)
    # A gradient-level weighting combines per-task gradients of the architecture's shared parameters.
    per_task = TaskGradients(model, model.shared_parameters()) if combine and weighting.level == "gradient" else None
    total_steps = sum(stage.optimizer_steps(mixing.task_mixing) for stage in schedule)
    scheduler = _lr_scheduler(optimizer, schedule, options, mixing.task_mixing)
    dtype = autocast_dtype(device, options.amp)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    run_log = RunLog(run_dir, tensorboard=options.report_to == "tensorboard")
    description = describe_model(model)  # written into every checkpoint: a checkpoint loads on its own

    # Where we are: global step, stage, steps done per task in the stage, steps skipped as non-finite.
    step, stage_index, done, nonfinite = 0, 0, {}, 0
    empty_batches: dict[str, int] = {}  # batches with nothing to score since the last train record
    if resume_from is not None:
        path, (weights, training_state, trainer_state) = resume_from
        model.load_state_dict(weights)
        optimizer.load_state_dict(training_state["optimizer"])
        scheduler.load_state_dict(training_state["scheduler"])
        if weighting is not None:
            weighting.load_state_dict(training_state["weighting"])
        step, stage_index, done = trainer_state["step"], trainer_state["stage"], trainer_state["done"]
        nonfinite = trainer_state.get("nonfinite_steps", 0)
        empty_batches = trainer_state.get("empty_batches", {})
        for task, state in trainer_state["streams"].items():
            streams[task].load_state(state)
        run_log.truncate_after(step)
        log.info("Resumed from %s at step %d", path, step)
    forward = distributed.data_parallel(TasksForward(model), device)

    def checkpoint(ended_stage: int | None) -> None:
        if not distributed.is_main():
            return
        save_checkpoint(
            run_dir, step, model,
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             **({"weighting": weighting.state_dict()} if weighting is not None else {})},
            {"step": step, "stage": stage_index, "done": done, "nonfinite_steps": nonfinite,
             "empty_batches": empty_batches, "streams": {task: stream.state() for task, stream in streams.items()},
             **({"stage_end": ended_stage} if ended_stage is not None else {})},
            keep=options.save_total_limit, description=description)

    def run_eval(stage_end: bool) -> dict[str, dict]:
        trained = {task for stage in schedule[:stage_index + 1] for task, n in stage.steps.items() if n > 0}
        scored = {task: batches for task, batches in eval_batches.items()
                  if evaluation.eval_untrained_tasks or task in trained}
        results = evaluate(model, scored, device)
        for task, metrics in results.items():
            run_log.write("eval", {"step": step, "stage": stage_index, "task": task, "stage_end": stage_end,
                                   "trained": task in trained, **metrics})
        if results and distributed.is_main():
            log.info("Evaluation at step %d%s: %s", step, f" (end of stage {stage_index + 1})" if stage_end else "",
                     "; ".join(f"{task} {score_line(metrics)}" for task, metrics in results.items()))
        return results

    model.train()
    bar = progress(total_steps, "Pre-training", "step", initial=step, disable=not distributed.is_main())
    with bar, run_log, interrupt.deferred() as stop_signal:  # the log is closed on errors too
        window_tokens, window_start = 0, time.perf_counter()
        results: dict[str, dict] = {}
        while stage_index < len(schedule):
            remaining = {task: budget - done.get(task, 0) for task, budget in schedule[stage_index].steps.items()}
            if sum(remaining.values()) == 0:  # a stage without steps
                stage_index, done = stage_index + 1, {}
                continue
            if all_tasks:
                active = [task for task, left in remaining.items() if left > 0]
            else:
                rng = np.random.default_rng([options.seed, stage_index, step])
                active = [sampler(remaining, sizes, mixing.sampling_temperature, rng)]

            torch.manual_seed(_dropout_seed(options.seed, step))
            weighting_before = copy.deepcopy(weighting.state_dict()) if combine else None  # restored if skipped
            losses = dict.fromkeys(active, 0.0)
            step_batches = []
            for micro_batch in range(options.grad_accum_steps):
                last = micro_batch == options.grad_accum_steps - 1
                batches = {task: next(streams[task]) for task in active}
                tokens = sum(int(batch["attention_mask"].sum()) for batch in batches.values())  # on the host
                batches = {task: to_device(batch, device) for task, batch in batches.items()}
                step_batches.append(batches)
                with gradient_sync(forward, last and per_task is None):
                    with autocast():
                        outputs = forward(batches)
                    task_losses, accuracies, tokens = global_losses(outputs, model.heads, tokens)
                    for task, out in outputs.items():
                        if model.heads[task].count(out.labels) == 0:
                            empty_batches[task] = empty_batches.get(task, 0) + 1
                    total = (weighting.combine(task_losses, shared, accuracies) if combine
                             else sum(task_losses.values()))
                    if per_task is not None:
                        per_task.add(task_losses, 1 / options.grad_accum_steps)
                    else:
                        (total / options.grad_accum_steps).backward()
                window_tokens += tokens
                for task, loss in task_losses.items():
                    losses[task] += loss.item() / options.grad_accum_steps
            if per_task is not None:
                per_task.apply(weighting, losses, np.random.default_rng([options.seed, step, WEIGHTING_STREAM]))
            grad_norm = clip_gradients(model, options.max_grad_norm)
            seen = [f"{task} loss {loss}" for task, loss in losses.items() if not math.isfinite(loss)]
            seen += [] if math.isfinite(grad_norm) else [f"gradient norm {grad_norm}"]
            skipped = bool(seen)
            if skipped:
                nonfinite += 1
                if weighting_before is not None:
                    weighting.load_state_dict(weighting_before)
                log.warning("step %d (%s): loss %s, gradient norm %s; step skipped (%d of at most %d)", step + 1,
                            "+".join(active), losses, grad_norm, nonfinite, options.max_nonfinite_steps)
            else:
                optimizer.step()
                if combine and weighting.needs_losses_after_step:  # the same batches and dropout masks
                    torch.manual_seed(_dropout_seed(options.seed, step))
                    weighting.after_step(losses_on(forward, model.heads, step_batches, autocast))
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            for task in active:
                done[task] = done.get(task, 0) + 1
            bar.update(1)
            if combine and not skipped:
                run_log.write("weights", {"step": step, "stage": stage_index, "weights": weighting.last_weights})

            if skipped or step % options.logging_steps == 0 or step == total_steps:
                elapsed = time.perf_counter() - window_start
                tokens_per_s = window_tokens / elapsed if elapsed > 0 else 0.0
                record = {"step": step, "stage": stage_index, "task": "+".join(active), "loss": sum(losses.values()),
                          "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm, "tokens_per_s": tokens_per_s,
                          **memory_record(device),
                          **({"losses": losses} if all_tasks else {}), **({"skipped": True} if skipped else {}),
                          **({"empty_batches": empty_batches} if empty_batches else {})}
                run_log.write("train", record)
                empty_batches = {}
                bar.set_postfix(task=record["task"], loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                window_tokens, window_start = 0, time.perf_counter()
            # Routing means since the last record (every rank takes part), written at every checkpoint too:
            # a resumed run starts from a checkpoint with nothing accumulated, and logs what the whole run logs.
            if step % options.logging_steps == 0 or step % options.save_steps == 0 or step == total_steps:
                for task, weights in model.routing().items():
                    run_log.write("routing", {"step": step, "stage": stage_index, "task": task, "weights": weights})
            if nonfinite > options.max_nonfinite_steps:
                kept = latest_name(run_dir) or "none (none was saved)"
                raise UserError(f"the loss or gradient norm was NaN/inf in {nonfinite} steps (the last: step {step}, "
                                f"{', '.join(seen)}), "
                                f"more than --max-nonfinite-steps {options.max_nonfinite_steps}; the last good "
                                f"checkpoint is {kept}, intact: lower --learning-rate (now {options.learning_rate:g}) "
                                f"and start a new run, or --resume with a higher --max-nonfinite-steps")
            ended_stage = None
            if all(done.get(t, 0) >= n for t, n in schedule[stage_index].steps.items()):  # stage over: score it
                results = run_eval(stage_end=True)
                stage_index, done, ended_stage = stage_index + 1, {}, stage_index + 1
                if mixing.reset_optimizer:
                    optimizer.state.clear()
            elif evaluation.eval_steps and step % evaluation.eval_steps == 0:
                run_eval(stage_end=False)
            saved = ended_stage is not None or step % options.save_steps == 0 or step == total_steps
            if saved:
                checkpoint(ended_stage)  # every stage end is kept: export --stage K
            signum = distributed.any_rank(stop_signal() or 0, device)  # every process stops at the same step
            if signum and step < total_steps:
                if not saved:  # the routing means since the last record, as at every checkpoint
                    for task, weights in model.routing().items():
                        run_log.write("routing", {"step": step, "stage": stage_index, "task": task,
                                                  "weights": weights})
                    checkpoint(None)
                raise interrupt.Interrupted(signum, step, latest_name(run_dir) if distributed.is_main() else None,
                                            "continue with the same command and --resume")
    return results
