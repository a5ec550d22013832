"""The training loop: stages in order, checkpoints that resume bit-exactly.

Read it top to bottom: set-up (optimizer, LR schedule, resume), then for every optimizer step
choose the tasks it trains - one task drawn by the sampler (``--task-mixing sample``) or every
task of the stage with steps left (``--task-mixing all``, losses combined by the loss
weighting) - accumulate gradients over micro-batches, clip, step, and now and then log,
evaluate and checkpoint. At a stage boundary the stage is scored, and AdamW's moments are
reset if ``--reset-optimizer`` asks for it; parameters always carry over. The learning rate
follows one warm-up + linear-decay schedule over the whole curriculum.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from ernie_cpt.batching import TaskStream
from ernie_cpt.checkpoint import latest_checkpoint, save_checkpoint
from ernie_cpt.errors import UserError
from ernie_cpt.evaluate import EvaluationOptions, evaluate
from ernie_cpt.model import ErnieMultiTask
from ernie_cpt.options import option
from ernie_cpt.run_log import RunLog
from schedules.options import ScheduleOptions
from schedules.sampling import get_sampler
from schedules.stage import Stage
from schedules.weighting import LossWeighting

log = logging.getLogger(__name__)


@dataclass
class TrainingOptions:
    """Training: optimisation, checkpoints and logging"""

    max_steps: int = option(1000, "Task steps in total, shared evenly by the tasks unless --steps-per-task is set "
                            "(a task step trains one batch of a task; --task-mixing all trains several per "
                            "optimizer step)")
    batch_size: int = option(32, "Examples per micro-batch")
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


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _optimizer(model: torch.nn.Module, weighting: LossWeighting | None, options: TrainingOptions,
               device: torch.device) -> torch.optim.AdamW:
    """AdamW over the model (no decay on biases and LayerNorm) and a learned loss weighting's parameters."""
    decay, no_decay = [], list(weighting.parameters()) if weighting is not None else []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.learning_rate, fused=device.type == "cuda")


def _rng_state(device: torch.device) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    state: dict[str, torch.Tensor | list[torch.Tensor]] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item() if len(labels) else 0.0


def train(model: ErnieMultiTask, streams: dict[str, TaskStream], eval_batches: dict[str, DataLoader],
          schedule: list[Stage], options: TrainingOptions, mixing: ScheduleOptions,
          weighting: LossWeighting | None, evaluation: EvaluationOptions, run_dir: Path,
          resume: bool) -> dict[str, dict]:
    """Run every stage of ``schedule``; returns the final evaluation. ``weighting`` combines the
    losses when ``mixing.task_mixing == "all"``. Evaluations score the tasks trained so far (all
    tasks with ``evaluation.eval_untrained_tasks``); those at the end of a stage are marked
    ``stage_end``: they make the accuracy matrix."""
    device = pick_device(options.device)
    model.to(device)
    if weighting is not None:
        weighting.to(device)
    optimizer = _optimizer(model, weighting, options, device)
    all_tasks = mixing.task_mixing == "all"
    sampler = get_sampler(mixing.task_sampling)
    sizes = {task: len(stream.rows) for task, stream in streams.items()}
    shared = model.encoder.encoder.layer[-1].output.dense.weight  # the last shared layer (GradNorm)
    total_steps = sum(stage.optimizer_steps(mixing.task_mixing) for stage in schedule)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(options.warmup_ratio * total_steps), total_steps)
    use_bf16 = options.amp and device.type == "cuda" and torch.cuda.is_bf16_supported()
    run_log = RunLog(run_dir)

    # Where we are: global step, stage, steps done per task in the stage.
    step, stage_index, done = 0, 0, {}
    if resume:
        found = latest_checkpoint(run_dir)
        if found is None:
            raise UserError(f"--resume: no readable checkpoint in {run_dir}; start a new run without --resume")
        path, (weights, training_state, trainer_state) = found
        model.load_state_dict(weights)
        optimizer.load_state_dict(training_state["optimizer"])
        scheduler.load_state_dict(training_state["scheduler"])
        _set_rng_state(training_state["rng"], device)
        if weighting is not None:
            weighting.load_state_dict(training_state["weighting"])
        step, stage_index, done = trainer_state["step"], trainer_state["stage"], trainer_state["done"]
        for task, state in trainer_state["streams"].items():
            streams[task].load_state(state)
        run_log.truncate_after(step)
        log.info("Resumed from %s at step %d", path, step)

    def checkpoint() -> None:
        save_checkpoint(
            run_dir, step, model,
            {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": _rng_state(device),
             **({"weighting": weighting.state_dict()} if weighting is not None else {})},
            {"step": step, "stage": stage_index, "done": done,
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
    bar = tqdm(total=total_steps, initial=step, desc="Pre-training", unit="step")
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

        losses = dict.fromkeys(active, 0.0)
        for _ in range(options.grad_accum_steps):
            outputs = {}
            for task in active:
                batch = {k: v.to(device, non_blocking=True) for k, v in next(streams[task]).items()}
                autocast = torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()
                with autocast:
                    outputs[task] = model(task, batch)
                window_tokens += int(batch["attention_mask"].sum())
            if weighting is not None and all_tasks:
                total = weighting.combine({t: out.loss for t, out in outputs.items()}, shared,
                                          {t: _accuracy(out.logits, out.labels) for t, out in outputs.items()})
            else:
                total = sum(out.loss for out in outputs.values())
            (total / options.grad_accum_steps).backward()
            for task, out in outputs.items():
                losses[task] += out.loss.item() / options.grad_accum_steps
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), options.max_grad_norm).item()
                     if options.max_grad_norm > 0 else float("nan"))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        for task in active:
            done[task] = done.get(task, 0) + 1
        bar.update(1)
        if weighting is not None and all_tasks:
            run_log.write("weights", {"step": step, "stage": stage_index, "weights": weighting.last_weights})

        if step % options.logging_steps == 0 or step == total_steps:
            elapsed = time.perf_counter() - window_start
            tokens_per_s = window_tokens / elapsed if elapsed > 0 else 0.0
            record = {"step": step, "stage": stage_index, "task": "+".join(active), "loss": sum(losses.values()),
                      "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm, "tokens_per_s": tokens_per_s}
            run_log.write("train", {**record, "losses": losses} if all_tasks else record)
            bar.set_postfix(task=record["task"], loss=f"{record['loss']:.3f}", tok_s=f"{tokens_per_s:,.0f}")
            window_tokens, window_start = 0, time.perf_counter()
        if all(done.get(t, 0) >= n for t, n in schedule[stage_index].steps.items()):  # stage over: score it
            results = run_eval(stage_end=True)
            stage_index, done = stage_index + 1, {}
            if mixing.reset_optimizer:
                optimizer.state.clear()
        elif evaluation.eval_steps and step % evaluation.eval_steps == 0:
            run_eval(stage_end=False)
        if step % options.save_steps == 0 or step == total_steps:
            checkpoint()
    bar.close()
    run_log.close()
    return results
