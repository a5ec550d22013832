"""FAMO: loss weights that make every task's loss fall at the same rate, at O(1) cost (Liu et al. 2023)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import LossWeighting, StepContext, register

EPSILON = 1e-8  # keeps log(loss) finite at a zero loss, as in the authors' code


@dataclass
class FAMOOptions:
    """Loss weighting famo"""

    famo_lr: float = option(0.025, "famo: learning rate of the Adam optimizer of the task logits",
                            valid=Range(0, 1, low_open=True))
    famo_gamma: float = option(0.01, "famo: weight decay gamma of the task logits (regularises toward equal weights)",
                               valid=Range(0, 1))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class FAMO(LossWeighting):
    """Liu, Liu, Stone & Liu 2023, "FAMO: Fast Adaptive Multitask Optimization" (NeurIPS),
    Algorithm 1.

    Each task i has a logit xi_i (initialised to 0) and the weights z = softmax(xi) over the tasks
    present. The update follows the gradient of

        sum_i z_i log(L_i + eps) / c,    c = sum_i z_i / (L_i + eps)  (a constant),

    which is sum_i w_i grad L_i with w_i = z_i / (c (L_i + eps)): so the weighting is the loss
    sum_i w_i L_i with those constant weights (logged as the weights), which makes the log-losses
    fall at rates set by z. After the optimizer step, each task's loss
    L_i' on the same batches under the new parameters gives its log-loss decrease
    delta_i = log(L_i + eps) - log(L_i' + eps), and xi takes one Adam step (learning rate
    ``famo_lr``, weight decay ``famo_gamma``) along the gradient (dz/dxi)^T delta. A task whose
    loss fell least then gains weight. Only the losses are needed, never per-task gradients: O(1)
    memory and one extra forward pass per step (no backward), the cheap member of the family.
    """

    name = "famo"
    options_class = FAMOOptions
    options: FAMOOptions
    summary = "weights that make every task's loss fall at the same rate, at O(1) cost (Liu et al. 2023)"
    needs_losses_after_step = True
    logits: torch.Tensor  # a buffer: the task logits xi, one per task

    def __init__(self, tasks: list[str], options: FAMOOptions | None = None) -> None:
        super().__init__(tasks, options)
        self.register_buffer("logits", torch.zeros(len(self.tasks)))
        self.optimizer = torch.optim.Adam([self.logits], lr=self.options.famo_lr,
                                          weight_decay=self.options.famo_gamma)
        self.losses_before: dict[str, float] = {}

    def _softmax(self, tasks: list[str]) -> torch.Tensor:
        return torch.softmax(self.logits[[self.tasks.index(task) for task in tasks]], dim=0)

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        """w_i = z_i / (c (L_i + eps)): sum_i w_i L_i has the gradient of sum_i z_i log(L_i + eps) / c."""
        z = self._softmax(list(losses)).tolist()
        shifted = [loss.item() + EPSILON for loss in losses.values()]
        c = sum(z_i / loss for z_i, loss in zip(z, shifted))
        self.losses_before = {task: loss.item() for task, loss in losses.items()}
        return {task: z_i / (c * loss) for task, z_i, loss in zip(losses, z, shifted)}

    def after_step(self, losses_after: dict[str, float]) -> None:
        tasks = [task for task in self.losses_before if task in losses_after]
        delta = torch.tensor([math.log(self.losses_before[t] + EPSILON) - math.log(losses_after[t] + EPSILON)
                              for t in tasks], dtype=self.logits.dtype, device=self.logits.device)
        index = [self.tasks.index(task) for task in tasks]
        with torch.enable_grad():
            logits = self.logits.detach().clone().requires_grad_(True)
            (gradient,) = torch.autograd.grad(torch.softmax(logits[index], dim=0), logits, grad_outputs=delta)
        self.logits.grad = gradient
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def get_extra_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "losses_before": dict(self.losses_before)}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.losses_before = dict(state["losses_before"])
