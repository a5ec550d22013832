"""The optimizer and the learning-rate schedule of a run: AdamW, warm-up and linear decay.

The learning rate follows one warm-up + linear-decay schedule over the whole curriculum
(``--lr-schedule whole``, ``transformers.get_linear_schedule_with_warmup``), or warms up and
decays again in every stage (``--lr-schedule per-stage``, :func:`per_stage_factor`).
"""

from __future__ import annotations

from bisect import bisect_right
from functools import partial

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from transformers import get_linear_schedule_with_warmup

from ernie_cpt.training.options import TrainingOptions
from schedules.stage import Stage


def build_optimizer(model: torch.nn.Module, extra: list[torch.nn.Parameter], options: TrainingOptions,
                    device: torch.device) -> torch.optim.AdamW:
    """AdamW (``options.learning_rate``) over ``model``'s parameters, with ``options.weight_decay`` on
    every matrix but none on biases and LayerNorm, and over ``extra`` (a learned loss weighting's
    parameters) without decay. The fused kernel (one pass over each tensor) on CUDA and CPU."""
    decay: list[torch.nn.Parameter] = []
    no_decay = list(extra)
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": options.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over each tensor) is much faster than the per-tensor loop on CPU too.
    return torch.optim.AdamW(groups, lr=options.learning_rate, fused=device.type in ("cuda", "cpu"))


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


def build_lr_scheduler(optimizer: torch.optim.Optimizer, schedule: list[Stage], options: TrainingOptions,
                       task_mixing: str) -> LambdaLR:
    """Warm-up + linear decay over the optimizer steps of the whole ``schedule``, or in every stage
    (``options.lr_schedule``; ``task_mixing`` says how many optimizer steps a stage takes)."""
    lengths = [stage.optimizer_steps(task_mixing) for stage in schedule]
    if options.lr_schedule == "whole":
        return get_linear_schedule_with_warmup(optimizer, round(options.warmup_ratio * sum(lengths)), sum(lengths))
    ends = np.cumsum(lengths).tolist()
    return LambdaLR(optimizer, partial(per_stage_factor, ends=ends, warmup_ratio=options.warmup_ratio))
