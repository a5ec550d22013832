"""The loss-weighting interface and its registry (the options are in ``options``).

When a stage trains all of its active tasks in every optimizer step, each task's loss is computed
on its own batch and a loss weighting combines them into the one loss that is backpropagated. The
layout follows LibMTL's ``weighting/`` package (Lin & Zhang 2023, "LibMTL: A Python Library for
Multi-Task Learning", JMLR): one short module per method behind one small base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn

from ernie_cpt.registry import Registry
from ernie_cpt.weighting.options import WeightingOptions

WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting")


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
