"""GradNorm: task weights trained so that the tasks' gradient norms match their training rates."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ernie_cpt.distributed import mean_over_ranks
from ernie_cpt.options import Range, check_ranges, option
from ernie_cpt.weighting.base import LossWeighting, StepContext, register

# Weights are kept positive: at w_i <= 0 the norm |w_i| * ||grad L_i|| would pull w_i further down.
MIN_WEIGHT = 1e-3


@dataclass
class GradNormOptions:
    """Loss weighting gradnorm"""

    gradnorm_alpha: float = option(1.5, "gradnorm: asymmetry alpha, how strongly tasks that train slower are favoured",
                                   valid=Range(0, 10))
    gradnorm_lr: float = option(0.025, "gradnorm: learning rate of the Adam optimizer of the task weights",
                                valid=Range(0, 1, low_open=True))

    def __post_init__(self) -> None:
        check_ranges(self)


@register
class GradNorm(LossWeighting):
    """Chen, Badrinarayanan, Lee & Rabinovich 2018, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks" (ICML), Algorithm 1, on the last shared layer W.

    Each step, over the K tasks present, with weights w_i (initialised to 1):

        G_i = ||grad_W (w_i L_i)||            r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0))
        L_grad = sum_i |G_i - mean_j(G_j) * r_i^alpha|     (the target term is a constant)

    where L_i(0) is the task's first loss. Before use, the w_i of the tasks present are kept
    >= MIN_WEIGHT and renormalised to sum to K (the paper renormalises after each update; doing it
    before use is the same while the tasks present stay the same, and also holds when they change).
    The total returned is sum_i w_i L_i with these weights *before* this step's update (the w_i whose
    G_i were measured, as in the paper). Then the w_i alone take one step of their own Adam (lr
    ``gradnorm_lr``) on L_grad. The trainer's optimizer never moves them: they get no gradient from
    the total, only from L_grad, and that gradient is cleared here.

    Since w_i > 0, G_i = w_i ||grad_W L_i||, so dG_i/dw_i = ||grad_W L_i|| exactly, and the
    first-order gradients of L_i (autograd.grad without create_graph, so the model's .grad is
    untouched) give the same update as differentiating through the gradient, at no second-order cost.
    With several processes, grad_W L_i is averaged over them first: the gradient of the whole batch.
    """

    name = "gradnorm"
    options_class = GradNormOptions
    options: GradNormOptions
    summary = "weights trained so that the tasks' gradient norms follow their training rates (Chen et al. 2018)"

    def __init__(self, tasks: list[str], options: GradNormOptions | None = None) -> None:
        super().__init__(tasks, options)
        self.loss_weights = nn.ParameterDict({task: nn.Parameter(torch.ones(())) for task in self.tasks})
        self.optimizer = torch.optim.Adam(list(self.loss_weights.values()), lr=self.options.gradnorm_lr)
        self.initial_losses: dict[str, float] = {}

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        tasks = list(losses)
        params = [self.loss_weights[task] for task in tasks]
        with torch.no_grad():
            for param in params:
                param.clamp_(min=MIN_WEIGHT)
            scale = len(tasks) / sum(param.item() for param in params)
            for param in params:
                param.mul_(scale)
        for task in tasks:
            self.initial_losses.setdefault(task, losses[task].item())

        weights = torch.stack(params)
        if context.shared is None:
            raise ValueError("gradnorm needs context.shared, the weight of the last layer every task shares")
        gradients = [mean_over_ranks(torch.autograd.grad(losses[task], context.shared, retain_graph=True)[0])
                     for task in tasks]
        grad_norms = torch.stack([gradient.norm() for gradient in gradients]).to(weights)
        ratios = torch.tensor([losses[task].item() / self.initial_losses[task] for task in tasks],
                              dtype=weights.dtype, device=weights.device)
        norms = weights * grad_norms  # G_i
        targets = (norms.mean() * (ratios / ratios.mean()) ** self.options.gradnorm_alpha).detach()
        balance_loss = (norms - targets).abs().sum()
        used = {task: param.item() for task, param in zip(tasks, params)}

        for param, grad in zip(params, torch.autograd.grad(balance_loss, params)):
            param.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return used

    def get_extra_state(self) -> dict[str, Any]:
        return {"initial_losses": dict(self.initial_losses), "optimizer": self.optimizer.state_dict()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.initial_losses = dict(state["initial_losses"])
        self.optimizer.load_state_dict(state["optimizer"])
