"""One optimizer step: accumulate the gradients of a batch of each task of the step, then apply them or skip.

Accumulate: the step's dropout is seeded per (seed, step, rank), so a resumed run needs no RNG
state; ``grad_accum_steps`` micro-batches of every task are drawn from their streams and run in
one forward pass (``TasksForward``, under DistributedDataParallel with several processes, which
averages the gradients after the last micro-batch only). The tasks' losses are summed or
combined by the loss weighting (``combine``); a gradient-level weighting (PCGrad, CAGrad, MGDA,
Nash-MTL) gets each task's gradient instead (``TaskGradients``).

Apply or skip: the gradients are clipped and AdamW steps, then a weighting that asks for it
(FAMO) sees the losses of the same batches, with the same dropout masks, after the update. A
step whose loss or gradient norm is NaN or infinite is skipped: no parameter moves, and the
weighting is restored to what it was before the step (its state may have moved in ``combine``).
A batch with nothing to score (no target token) is not such a step: its head's loss is 0 and its
gradients are 0; it is counted in ``TrainState.empty_batches``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from ernie_cpt import distributed
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.heads import Head
from ernie_cpt.training.batching import TaskStream
from ernie_cpt.training.device import autocast, to_device
from ernie_cpt.training.task_gradients import TaskGradients
from ernie_cpt.training.task_step import TasksForward, clip_gradients, global_losses, gradient_sync, losses_on
from ernie_cpt.training.train_state import TrainState
from ernie_cpt.weighting import GradientWeighting, LossWeighting, StepContext

WEIGHTING_STREAM = 1  # the RNG key of a weighting's random choices (PCGrad's order)

Batches = dict[str, dict[str, torch.Tensor]]  # a batch of each task of the step


def dropout_seed(seed: int, step: int) -> int:
    """The seed of the dropout masks of optimizer step ``step`` (0-based) on this process."""
    return int(np.random.SeedSequence([seed, step, distributed.rank()]).generate_state(1)[0])


@dataclass
class StepResult:
    """One optimizer step: the ``tasks`` it trained, each task's loss (the mean over the micro-batches;
    over all processes), the gradient norm before clipping, and what was NaN or infinite (the step
    was then skipped)."""

    tasks: list[str]
    losses: dict[str, float]
    grad_norm: float = math.nan
    nonfinite: list[str] = field(default_factory=list)  # e.g. "capitalization loss nan", "gradient norm inf"
    micro_batches: list[Batches] = field(default_factory=list, repr=False)  # until the step is applied
    weighting_before: dict[str, Any] | None = field(default=None, repr=False)  # restored if it is skipped
    context: StepContext = field(default_factory=StepContext, repr=False)  # what the weighting is offered

    @property
    def skipped(self) -> bool:
        return bool(self.nonfinite)


class TrainStep:
    """Takes optimizer steps of ``model`` with ``optimizer``: ``accumulate``, then ``apply_or_skip``.
    ``weighting`` combines the losses of the tasks of a step (None: they are summed); ``amp``: bf16
    autocast on a CUDA device that supports it."""

    def __init__(self, model: Architecture, optimizer: torch.optim.Optimizer, weighting: LossWeighting | None,
                 device: torch.device, *, grad_accum_steps: int = 1, max_grad_norm: float = 1.0, seed: int = 0,
                 amp: bool = True) -> None:
        self.model, self.optimizer, self.weighting, self.device = model, optimizer, weighting, device
        self.grad_accum_steps, self.max_grad_norm, self.seed, self.amp = grad_accum_steps, max_grad_norm, seed, amp
        self.forward = distributed.data_parallel(TasksForward(model), device)
        self.shared = model.shared_layer_weights()[-1]  # the last layer every task shares (GradNorm)
        # A gradient-level weighting combines per-task gradients of the architecture's shared parameters.
        gradient_level = weighting is not None and weighting.level == "gradient"
        self.per_task = TaskGradients(model, model.shared_parameters()) if gradient_level else None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.device, self.amp)

    def accumulate(self, streams: dict[str, TaskStream], tasks: list[str], state: TrainState) -> StepResult:
        """Draw ``grad_accum_steps`` batches of each of ``tasks`` and accumulate the gradients of their
        (combined) losses; the step's tokens and empty batches are counted in ``state``."""
        torch.manual_seed(dropout_seed(self.seed, state.step))
        before = copy.deepcopy(self.weighting.state_dict()) if self.weighting is not None else None
        context = StepContext(step=state.step, shared=self.shared,
                              rng=np.random.default_rng([self.seed, state.step, WEIGHTING_STREAM]))
        result = StepResult(tasks, dict.fromkeys(tasks, 0.0), weighting_before=before, context=context)
        for micro_batch in range(self.grad_accum_steps):
            batches = {task: next(streams[task]) for task in tasks}
            tokens = sum(int(batch["attention_mask"].sum()) for batch in batches.values())  # on the host
            batches = {task: to_device(batch, self.device) for task, batch in batches.items()}
            result.micro_batches.append(batches)
            losses, tokens = self._backward(batches, tokens, micro_batch == self.grad_accum_steps - 1, state,
                                            context)
            state.window_tokens += tokens
            for task, loss in losses.items():
                result.losses[task] += loss.item() / self.grad_accum_steps
        return result

    def _backward(self, batches: Batches, tokens: int, last: bool, state: TrainState,
                  context: StepContext) -> tuple[dict[str, torch.Tensor], int]:
        """One micro-batch: forward, each task's loss (over all processes), and the gradients of their
        combination (``context`` with this micro-batch's accuracies) added to ``.grad`` (or to each
        task's own); the tokens of all processes."""
        with gradient_sync(self.forward, last and self.per_task is None):
            with self.autocast():
                outputs = self.forward(batches)
            losses, accuracies, tokens = global_losses(outputs, self.model.heads, tokens)
            for task, out in outputs.items():
                if cast(Head, self.model.heads[task]).count(out.labels) == 0:
                    state.count_empty(task)
            total = (self.weighting.combine(losses, dataclasses.replace(context, kpis=accuracies))
                     if self.weighting is not None else cast(torch.Tensor, sum(losses.values())))  # not empty
            if self.per_task is not None:
                self.per_task.add(losses, 1 / self.grad_accum_steps)
            else:
                (total / self.grad_accum_steps).backward()
        return losses, tokens

    def apply_or_skip(self, result: StepResult, state: TrainState) -> None:
        """Clip the accumulated gradients and step the optimizer, or skip the step (counted in
        ``state.nonfinite_steps``, the weighting restored) when a loss or the gradient norm is not finite.
        The caller zeroes the gradients and steps the LR schedule either way."""
        if self.per_task is not None:
            self.per_task.apply(cast(GradientWeighting, self.weighting), result.losses, result.context)  # "gradient"
        result.grad_norm = clip_gradients(self.model, self.max_grad_norm)
        result.nonfinite = [f"{task} loss {loss}" for task, loss in result.losses.items() if not math.isfinite(loss)]
        result.nonfinite += [] if math.isfinite(result.grad_norm) else [f"gradient norm {result.grad_norm}"]
        if result.skipped:
            state.nonfinite_steps += 1
            if self.weighting is not None and result.weighting_before is not None:
                self.weighting.load_state_dict(result.weighting_before)
        else:
            self.optimizer.step()
            if self.weighting is not None and self.weighting.needs_losses_after_step:  # same batches and masks
                torch.manual_seed(dropout_seed(self.seed, state.step))
                self.weighting.after_step(losses_on(self.forward, self.model.heads, result.micro_batches,
                                                    self.autocast))
        result.micro_batches, result.weighting_before = [], None  # not kept past the step
        result.context = StepContext()
