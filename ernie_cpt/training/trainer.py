"""The training loop: stages in order, checkpoints that resume bit-exactly.

Read it top to bottom: set-up (optimizer, LR schedule, resume), then for every optimizer step
choose the tasks it trains - one task drawn by the sampler (``--task-mixing sample``) or every
task of the stage with steps left (``--task-mixing all``, losses combined by the loss
weighting) - accumulate gradients over micro-batches, clip, step, and now and then log,
evaluate and checkpoint. At a stage boundary the stage is scored, and AdamW's moments are
reset if ``--reset-optimizer`` asks for it; parameters always carry over. The learning rate
follows one warm-up + linear-decay schedule over the whole curriculum. Where the architecture
routes tasks (gates, cross-stitch units), ``model.routing()`` gives per task the mean routing
weights since its last call; they go to ``logs/routing.jsonl`` every ``--logging-steps`` and at
every checkpoint.

A step whose loss or gradient norm is NaN or infinite is skipped: no parameter moves, a warning
and a ``"skipped": true`` record are logged, and the step still counts (its batches and its
place in the schedules are used up, so budgets and resumption are unchanged). After more than
``--max-nonfinite-steps`` such steps in a run, training stops before writing another checkpoint.

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
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ernie_cpt import distributed
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.options import option
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.checkpoint import Checkpoint, latest_name, save_checkpoint
from ernie_cpt.training.evaluate import EvaluationOptions, evaluate
from ernie_cpt.training.run_log import RunLog
from ernie_cpt.training.task_step import TasksForward, clip_gradients, global_losses, gradient_sync
from ernie_cpt.weighting import LossWeighting
from schedules.options import ScheduleOptions
from schedules.sampling import get_sampler
from schedules.stage import Stage

log = logging.getLogger(__name__)


@dataclass
class TrainingOptions:
    """Training: optimisation, checkpoints and logging"""

    max_steps: int = option(1000, "Task steps in total, shared evenly by the tasks unless --steps-per-task is set "
                            "(a task step trains one batch of a task; --task-mixing all trains several per "
                            "optimizer step)")
    batch_size: int = option(32, "Examples per micro-batch, over all processes when run with torchrun (each "
                             "process takes batch_size / processes of them)")
    grad_accum_steps: int = option(1, "Micro-batches accumulated per optimizer step")
    learning_rate: float = option(5e-4, "Peak learning rate of AdamW")
    weight_decay: float = option(0.01, "AdamW weight decay (not applied to biases and LayerNorm)")
    warmup_ratio: float = option(0.06, "Fraction of the steps with linear warm-up; then linear decay to 0")
    max_grad_norm: float = option(1.0, "Gradient clipping norm (0 = off)")
    seed: int = option(42, "Seed of everything: model init, data order, masks, dropout, evaluation split")
    save_steps: int = option(500, "Checkpoint every N steps (and at the end)")
    save_total_limit: int = option(2, "Keep the last K checkpoints")
    logging_steps: int = option(10, "Log loss, learning rate and tokens/s every N steps")
    device: str = option("auto", "cpu, cuda, cuda:N or auto (CUDA when available)")
    amp: bool = option(True, "bf16 autocast where the device supports it (CUDA); fp32 on CPU")
    dataloader_workers: int = option(0, "DataLoader worker processes per task (0 = main process)")
    max_nonfinite_steps: int = option(10, "Steps with a NaN/inf loss or gradient norm are skipped (no update); "
                                      "training stops when more than this many occur in a run")


def pick_device(name: str) -> torch.device:
    """The device ``name`` means; under torchrun, "auto" and "cuda" mean this process's GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device("cuda", distributed.local_rank()) if name == "cuda" else torch.device(name)


def _optimizer(model: torch.nn.Module, weighting: LossWeighting | None, options: TrainingOptions,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model (no decay on biases and LayerNorm) and a learned loss weighting's parameters."""
    decay, no_decay = [], list(weighting.parameters()) if weighting is not None else []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over each tensor) is much faster than the per-tensor loop on CPU too.
    return torch.optim.AdamW(groups, lr=options.learning_rate, fused=device.type in ("cuda", "cpu"))


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
    if weighting is not None:
        weighting.to(device)
    optimizer = _optimizer(model, weighting, options, device)
    all_tasks = mixing.task_mixing == "all"
    combine = weighting is not None and all_tasks
    sampler = get_sampler(mixing.task_sampling)
    sizes = {task: len(stream.rows) for task, stream in streams.items()}
    shared = model.shared_layer_weights()[-1]  # the last layer every task shares (GradNorm)
    total_steps = sum(stage.optimizer_steps(mixing.task_mixing) for stage in schedule)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(options.warmup_ratio * total_steps), total_steps)
    use_bf16 = options.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
    run_log = RunLog(run_dir)

    # Where we are: global step, stage, steps done per task in the stage, steps skipped as non-finite.
    step, stage_index, done, nonfinite = 0, 0, {}, 0
    if resume_from is not None:
        path, (weights, training_state, trainer_state) = resume_from
        model.load_state_dict(weights)
        optimizer.load_state_dict(training_state["optimizer"])
        scheduler.load_state_dict(training_state["scheduler"])
        if weighting is not None:
            weighting.load_state_dict(training_state["weighting"])
        step, stage_index, done = trainer_state["step"], trainer_state["stage"], trainer_state["done"]
        nonfinite = trainer_state.get("nonfinite_steps", 0)
        for task, state in trainer_state["streams"].items():
            streams[task].load_state(state)
        run_log.truncate_after(step)
        log.info("Resumed from %s at step %d", path, step)
    forward = distributed.data_parallel(TasksForward(model), device)

    def checkpoint() -> None:
        if not distributed.is_main():
            return
        save_checkpoint(
            run_dir, step, model,
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             **({"weighting": weighting.state_dict()} if weighting is not None else {})},
            {"step": step, "stage": stage_index, "done": done, "nonfinite_steps": nonfinite,
             "streams": {task: stream.state() for task, stream in streams.items()}},
            keep=options.save_total_limit)

    def run_eval(stage_end: bool) -> dict[str, dict]:
        trained = {task for stage in schedule[:stage_index + 1] for task, n in stage.steps.items() if n > 0}
        scored = {task: batches for task, batches in eval_batches.items()
                  if evaluation.eval_untrained_tasks or task in trained}
        results = evaluate(model, scored, device)
        for task, metrics in results.items():
            run_log.write("eval", {"step": step, "stage": stage_index, "task": task, "stage_end": stage_end,
                                   "trained": task in trained, **metrics})
        return results

    model.train()
    # Only other ranks pass disable=: an explicit argument would override TQDM_DISABLE=1.
    bar = tqdm(total=total_steps, initial=step, desc="Pre-training", unit="step",
               **({} if distributed.is_main() else {"disable": True}))
    with bar, contextlib.closing(run_log):  # closed on errors too: the error line starts a line of its own
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
            for micro_batch in range(options.grad_accum_steps):
                last = micro_batch == options.grad_accum_steps - 1
                batches = {task: {k: v.to(device, non_blocking=True) for k, v in next(streams[task]).items()}
                           for task in active}
                tokens = sum(int(batch["attention_mask"].sum()) for batch in batches.values())
                autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
                with gradient_sync(forward, last):
                    with autocast:
                        outputs = forward(batches)
                    task_losses, accuracies, tokens = global_losses(outputs, model.heads, tokens)
                    total = (weighting.combine(task_losses, shared, accuracies) if combine
                             else sum(task_losses.values()))
                    (total / options.grad_accum_steps).backward()
                window_tokens += tokens
                for task, loss in task_losses.items():
                    losses[task] += loss.item() / options.grad_accum_steps
            grad_norm = clip_gradients(model, options.max_grad_norm)
            skipped = not (math.isfinite(grad_norm) and all(math.isfinite(loss) for loss in losses.values()))
            if skipped:
                nonfinite += 1
                if weighting_before is not None:
                    weighting.load_state_dict(weighting_before)
                log.warning("step %d (%s): loss %s, gradient norm %s; step skipped (%d of at most %d)", step + 1,
                            "+".join(active), losses, grad_norm, nonfinite, options.max_nonfinite_steps)
            else:
                optimizer.step()
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
                          **({"losses": losses} if all_tasks else {}), **({"skipped": True} if skipped else {})}
                run_log.write("train", record)
                bar.set_postfix(task=record["task"], loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                window_tokens, window_start = 0, time.perf_counter()
            # Routing means since the last record (every rank takes part), written at every checkpoint too:
            # a resumed run starts from a checkpoint with nothing accumulated, and logs what the whole run logs.
            if step % options.logging_steps == 0 or step % options.save_steps == 0 or step == total_steps:
                for task, weights in model.routing().items():
                    run_log.write("routing", {"step": step, "stage": stage_index, "task": task, "weights": weights})
            if nonfinite > options.max_nonfinite_steps:
                kept = latest_name(run_dir) or "none (none was saved)"
                raise UserError(f"the loss or gradient norm was NaN/inf in {nonfinite} steps (the last: step {step}), "
                                f"more than --max-nonfinite-steps {options.max_nonfinite_steps}; the last good "
                                f"checkpoint is {kept}, intact: lower --learning-rate (now {options.learning_rate:g}) "
                                f"and start a new run, or --resume with a higher --max-nonfinite-steps")
            if all(done.get(t, 0) >= n for t, n in schedule[stage_index].steps.items()):  # stage over: score it
                results = run_eval(stage_end=True)
                stage_index, done = stage_index + 1, {}
                if mixing.reset_optimizer:
                    optimizer.state.clear()
            elif evaluation.eval_steps and step % evaluation.eval_steps == 0:
                run_eval(stage_end=False)
            if step % options.save_steps == 0 or step == total_steps:
                checkpoint()
    return results
