"""Per-task gradients for the gradient-level weightings (PCGrad, CAGrad, MGDA, Nash-MTL), also under DDP.

A gradient-level method needs each task's gradient of the shared parameters, not their sum, so
DistributedDataParallel's one all-reduce of the summed gradient (in its backward hooks) cannot
serve it: LibMTL documents that its gradient methods break DDP for that reason. Here the step's
forward passes run under ``no_sync`` (DDP reduces nothing), each task's loss is differentiated on
its own (``torch.autograd.grad``, one backward pass per task), the per-task gradients are summed
over the micro-batches, and then averaged over the processes with one all-reduce per step, so
every process combines the gradients of the whole global batch, exactly as one process would.
The losses are scaled as for DDP (``task_step.global_losses``), so that average is the gradient
of each task's mean loss over the global batch.
"""

from __future__ import annotations

import torch
from torch import nn

from ernie_cpt import distributed
from ernie_cpt.weighting import GradientWeighting, StepContext


class TaskGradients:
    """The per-task gradients of one optimizer step: (tasks, parameters) for the shared parameters
    and, kept apart, for every other parameter. Memory: tasks x all trainable parameters."""

    def __init__(self, model: nn.Module, shared: list[nn.Parameter]) -> None:
        shared_ids = {id(p) for p in shared}
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.is_shared = [id(p) in shared_ids for p in self.params]
        self.sums: dict[str, list[torch.Tensor | None]] = {}

    def add(self, losses: dict[str, torch.Tensor], scale: float) -> None:
        """Add ``scale`` x the gradient of each task's loss (one backward pass per task)."""
        tasks = list(losses)
        for number, task in enumerate(tasks):
            grads = torch.autograd.grad(losses[task] * scale, self.params, retain_graph=number < len(tasks) - 1,
                                        allow_unused=True)
            sums = self.sums.setdefault(task, [None] * len(self.params))
            for i, grad in enumerate(grads):
                if grad is not None:
                    total = sums[i]
                    sums[i] = grad if total is None else total + grad

    def _stacked(self, shared: bool) -> tuple[torch.Tensor, list[bool]]:
        """(tasks, P) gradients of the shared (or the other) parameters, averaged over processes,
        and which parameters any task reached."""
        chosen = [i for i, is_shared in enumerate(self.is_shared) if is_shared == shared]
        reached = [any(self.sums[t][i] is not None for t in self.sums) for i in chosen]
        rows = [torch.cat([(g if (g := self.sums[t][i]) is not None else torch.zeros_like(self.params[i]))
                           .reshape(-1) for i in chosen]) if chosen else self.params[0].new_zeros(0)
                for t in self.sums]
        stacked = torch.stack(rows)
        return distributed.all_reduce_sum(stacked) / distributed.world_size(), reached

    def apply(self, weighting: GradientWeighting, losses: dict[str, float], context: StepContext) -> None:
        """Set every parameter's ``.grad``: the shared ones to the weighting's direction, the others to
        the weighted sum of their task gradients; parameters no task reached keep no gradient."""
        tasks = list(self.sums)
        shared, shared_reached = self._stacked(shared=True)
        direction, weights = weighting.combine_gradients(shared, {t: losses[t] for t in tasks}, context)
        others, others_reached = self._stacked(shared=False)
        specific = torch.as_tensor([weights[t] for t in tasks], dtype=others.dtype, device=others.device) @ others
        for flat, is_shared, reached in ((direction, True, shared_reached), (specific, False, others_reached)):
            params = [p for p, s in zip(self.params, self.is_shared) if s == is_shared]
            if not params:
                continue
            for param, chunk, got in zip(params, torch.split(flat, [p.numel() for p in params]), reached):
                param.grad = chunk.view_as(param).clone() if got else None
        self.sums = {}
