"""Per-task gradients for the gradient-level weightings (PCGrad, MGDA, UPGrad, ...), also under DDP.

A gradient-level method needs each task's gradient of the shared parameters, not their sum, so
DistributedDataParallel's one all-reduce of the summed gradient (in its backward hooks) cannot
serve it: LibMTL documents that its gradient methods break DDP for that reason. Here the step's
forward passes run under ``no_sync`` (DDP reduces nothing), each task's loss is differentiated on
its own (``torch.autograd.grad``, one backward pass per task), the per-task gradients are summed
over the micro-batches, and then averaged over the processes with one all-reduce per step, so
every process combines the gradients of the whole global batch, exactly as one process would.
The losses are scaled as for DDP (``task_step.global_losses``), so that average is the gradient
of each task's mean loss over the global batch.

The architecture's own penalty (``Architecture.aux_loss``) belongs to no task: its gradient is
kept apart, averaged over the processes with the tasks' (it is the same on each), and added once,
unweighted, to the update the weighting combines, on every parameter it reaches (task columns
included). The weighting therefore sees only the tasks' gradients, as its paper defines it, and
the penalty pulls the parameters as it would with summed losses.
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
        self.auxiliary: list[torch.Tensor | None] | None = None  # the penalty's gradient, where there is one

    def add(self, losses: dict[str, torch.Tensor], scale: float, aux_loss: torch.Tensor | None = None) -> None:
        """Add ``scale`` x the gradient of each task's loss (one backward pass per task) and, kept
        apart, of ``aux_loss``."""
        tasks = list(losses)
        for number, task in enumerate(tasks):
            grads = torch.autograd.grad(losses[task] * scale, self.params, retain_graph=number < len(tasks) - 1,
                                        allow_unused=True)
            self._accumulate(self.sums.setdefault(task, [None] * len(self.params)), grads)
        if aux_loss is not None:
            grads = torch.autograd.grad(aux_loss * scale, self.params, allow_unused=True)
            self.auxiliary = self._accumulate(self.auxiliary or [None] * len(self.params), grads)

    @staticmethod
    def _accumulate(sums: list[torch.Tensor | None], grads: tuple[torch.Tensor | None, ...]) -> list:
        for i, grad in enumerate(grads):
            if grad is not None:
                total = sums[i]
                sums[i] = grad if total is None else total + grad
        return sums

    def _stacked(self, shared: bool) -> tuple[torch.Tensor, torch.Tensor | None, list[bool]]:
        """(tasks, P) gradients of the shared (or the other) parameters and the penalty's (P,) (None
        without one), averaged over processes, and which parameters any task or the penalty reached."""
        chosen = [i for i, is_shared in enumerate(self.is_shared) if is_shared == shared]
        sources = [*self.sums.values(), *([self.auxiliary] if self.auxiliary is not None else [])]
        reached = [any(sums[i] is not None for sums in sources) for i in chosen]
        rows = [torch.cat([(g if (g := sums[i]) is not None else torch.zeros_like(self.params[i]))
                           .reshape(-1) for i in chosen]) if chosen else self.params[0].new_zeros(0)
                for sums in sources]
        stacked = distributed.all_reduce_sum(torch.stack(rows)) / distributed.world_size()
        return stacked[:len(self.sums)], stacked[-1] if self.auxiliary is not None else None, reached

    def apply(self, weighting: GradientWeighting, losses: dict[str, float], context: StepContext) -> None:
        """Set every parameter's ``.grad``: the shared ones to the weighting's direction, the others to
        the weighted sum of their task gradients, each plus the penalty's gradient; parameters that no
        task and no penalty reached keep no gradient."""
        tasks = list(self.sums)
        shared, shared_aux, shared_reached = self._stacked(shared=True)
        direction, weights = weighting.combine_gradients(shared, {t: losses[t] for t in tasks}, context)
        others, others_aux, others_reached = self._stacked(shared=False)
        specific = torch.as_tensor([weights[t] for t in tasks], dtype=others.dtype, device=others.device) @ others
        for flat, aux, is_shared, reached in ((direction, shared_aux, True, shared_reached),
                                              (specific, others_aux, False, others_reached)):
            params = [p for p, s in zip(self.params, self.is_shared) if s == is_shared]
            if not params:
                continue
            flat = flat if aux is None else flat + aux
            for param, chunk, got in zip(params, torch.split(flat, [p.numel() for p in params]), reached):
                param.grad = chunk.view_as(param).clone() if got else None
        self.sums, self.auxiliary = {}, None
