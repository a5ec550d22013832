"""The loss-weighting interface, its registry and options.

When a stage trains all of its active tasks in every optimizer step, each task's loss is computed
on its own batch and a loss weighting combines them into the one loss that is backpropagated. The
layout follows LibMTL's ``weighting/`` package (Lin & Zhang 2023, "LibMTL: A Python Library for
Multi-Task Learning", JMLR): one short module per method behind one small base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ernie_cpt.options import Range, option
from ernie_cpt.registry import Registry

WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting")


@dataclass
class WeightingOptions:
    """Loss weighting: how the losses of tasks trained in the same step are combined"""

    loss_weighting: str = option("equal", "How the losses of all active tasks are combined when --task-mixing all: "
                                 "equal, manual, uncertainty, gradnorm, dwa, dtp")
    task_weights: list[str] = option([], "manual: TASK=WEIGHT for each task to weigh, e.g. capitalization=0.5; "
                                         "tasks not listed get 1.0")
    gradnorm_alpha: float = option(1.5, "gradnorm: asymmetry alpha, how strongly tasks that train slower are favoured",
                                   valid=Range(0, 10))
    gradnorm_lr: float = option(0.025, "gradnorm: learning rate of the Adam optimizer of the task weights",
                                valid=Range(0, 1, low_open=True))
    dwa_temperature: float = option(2.0, "dwa: softmax temperature T (larger = weights closer to equal)",
                                    valid=Range(0, 100, low_open=True))
    dwa_window: int = option(20, "dwa: steps per window; loss ratios of the last two windows replace epochs",
                             valid=Range(1))
    dtp_gamma: float = option(2.0, "dtp: focusing exponent gamma of the focal weights", valid=Range(0, 10))
    dtp_momentum: float = option(0.9, "dtp: momentum of the moving average of each task's KPI (accuracy)",
                                 valid=Range(0, 1, high_open=True))

    def __post_init__(self) -> None:
        WEIGHTINGS.get(self.loss_weighting)  # checked when the options are read, before anything loads


class LossWeighting(nn.Module, ABC):
    """Combines the losses of the tasks present in a step into the loss to backpropagate.

    Learned weightings keep their parameters as ``nn.Parameter``s of this module (the trainer
    optimizes them with the model); any other state is in ``state_dict()`` (buffers or extra
    state of plain tensors, dicts, lists and numbers), so a weighting restored from it continues
    exactly as the original would.
    """

    name: ClassVar[str]

    def __init__(self, tasks: list[str], options: WeightingOptions) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.options = options
        self.last_weights: dict[str, float] = {}

    def combine(self, losses: dict[str, torch.Tensor], shared: nn.Parameter, kpis: dict[str, float]) -> torch.Tensor:
        """The total loss of this step: sum over the tasks present of weight * loss.

        ``losses`` holds the scalar loss (with graph) of any non-empty subset of ``tasks``, and
        the weights are computed over that subset. ``shared`` is the weight of the last shared
        layer (GradNorm); ``kpis`` is each present task's accuracy in [0, 1] on its batch (DTP).
        The weights used are left in ``last_weights``.
        """
        unknown = set(losses) - set(self.tasks)
        if not losses or unknown:
            raise ValueError(f"{self.name} weighting needs losses of some of {self.tasks}, got {list(losses)}")
        weights = self.weigh(losses, shared, kpis)
        self.last_weights = {task: weight.item() if isinstance(weight, torch.Tensor) else float(weight)
                             for task, weight in weights.items()}
        return sum(weights[task] * loss for task, loss in losses.items())

    @abstractmethod
    def weigh(self, losses: dict[str, torch.Tensor], shared: nn.Parameter,
              kpis: dict[str, float]) -> dict[str, torch.Tensor | float]:
        """The weight of each task in ``losses`` for this step (a tensor if gradients flow through it)."""


register = WEIGHTINGS.register()  # class decorator: a loss weighting available under ``cls.name``


def build_weighting(options: WeightingOptions, tasks: list[str]) -> LossWeighting:
    """The weighting named by ``options.loss_weighting`` over ``tasks``; an unknown name is a user error."""
    return WEIGHTINGS.get(options.loss_weighting)(tasks, options)
