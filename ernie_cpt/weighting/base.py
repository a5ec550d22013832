"""The multi-task weighting interface and its registry (``--loss-weighting`` is in ``options``).

When a stage trains all of its active tasks in every optimizer step, each task's loss is computed
on its own batch, and a weighting turns them into one update. It acts at one of two levels:

* **loss level** (``LossWeighting``): ``combine(losses, context)`` returns the one loss that is
  backpropagated (equal, manual, uncertainty, GradNorm, DWA, DTP, FAMO);
* **gradient level** (``GradientWeighting``): the trainer computes each task's gradient of the
  shared parameters (which the architecture names), all-reduced over processes, and
  ``direction(gradients, losses, context)`` combines them into the update of the shared
  parameters (PCGrad, CAGrad, MGDA, Nash-MTL).

The :class:`StepContext` holds what a step offers besides the losses. A weighting declares, next to
its code, ``name``, a one-line ``summary``, its own ``options_class`` (a dataclass of ``option``
fields, e.g. ``dwa.DWAOptions``; it is built as ``cls(tasks, options)``) and its capabilities:
``level``, ``needs_kpis`` (it reads ``context.kpis``: tasks without an accuracy, such as regression,
cannot use it) and ``needs_losses_after_step`` (the trainer calls ``after_step``). No command or
trainer names a weighting.

The layout follows LibMTL's ``weighting/`` package (Lin & Zhang 2023, "LibMTL: A Python Library
for Multi-Task Learning", JMLR): one short module per method behind one small base class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from ernie_cpt.registry import Registry
from ernie_cpt.weighting.options import WeightingOptions

WEIGHTINGS: Registry[type[LossWeighting]] = Registry("loss weighting")


@dataclass(frozen=True)
class StepContext:
    """What one optimizer step offers a weighting besides the losses.

    ``step``: the 0-based optimizer step; ``shared``: the weight of the last layer every task
    shares (GradNorm's W), None where the caller has no model; ``kpis``: each present task's
    accuracy in [0, 1] on its batch of this micro-batch (DTP; only for tasks that have one);
    ``rng``: a generator seeded per (seed, step), so a resumed run draws what the uninterrupted
    one did (PCGrad's order)."""

    step: int = 0
    shared: nn.Parameter | None = None
    kpis: dict[str, float] = field(default_factory=dict)
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class LossWeighting(nn.Module, ABC):
    """Combines the losses of the tasks present in a step into the loss to backpropagate.

    Learned weightings keep their parameters as ``nn.Parameter``s of this module (the trainer
    optimizes them with the model); any other state is in ``state_dict()`` (buffers or extra
    state of plain tensors, dicts, lists and numbers), so a weighting restored from it continues
    exactly as the original would.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    options_class: ClassVar[type | None] = None  # the dataclass of its own options
    level: ClassVar[str] = "loss"  # "gradient": the trainer calls ``direction`` with per-task gradients
    needs_kpis: ClassVar[bool] = False  # True: it weighs by ``context.kpis``, each task's accuracy (DTP)
    needs_losses_after_step: ClassVar[bool] = False  # True: the trainer calls ``after_step`` (FAMO)

    def __init__(self, tasks: list[str], options: Any = None) -> None:
        super().__init__()
        self.tasks = list(tasks)
        self.options = options if options is not None or self.options_class is None else self.options_class()
        self.last_weights: dict[str, float] = {}

    def combine(self, losses: dict[str, torch.Tensor], context: StepContext) -> torch.Tensor:
        """The total loss of this step: sum over the tasks present of weight * loss.

        ``losses`` holds the scalar loss (with graph) of any non-empty subset of ``tasks``, and
        the weights are computed over that subset, with what ``context`` offers. The weights used
        are left in ``last_weights``. Raises ValueError for losses of no task or of an unknown one.
        """
        unknown = set(losses) - set(self.tasks)
        if not losses or unknown:
            raise ValueError(f"{self.name} weighting needs losses of some of {self.tasks}, got {list(losses)}")
        weights = self.weigh(losses, context)
        self.last_weights = {task: weight.item() if isinstance(weight, torch.Tensor) else float(weight)
                             for task, weight in weights.items()}
        return cast(torch.Tensor, sum(weights[task] * loss for task, loss in losses.items()))  # losses is not empty

    @abstractmethod
    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        """The weight of each task in ``losses`` for this step (a tensor if gradients flow through it)."""

    def after_step(self, losses_after: dict[str, float]) -> None:
        """With ``needs_losses_after_step``: each task's loss on this step's batches (same dropout
        masks) under the parameters after the optimizer step; not called for a skipped step."""


class GradientWeighting(LossWeighting):
    """A gradient-level method: it combines the tasks' gradients of the shared parameters.

    The trainer computes, for every task of the step, the gradient of its loss with respect to
    every parameter (one backward pass per task), sums them over micro-batches, averages them over
    processes (so every process combines the gradients of the whole batch), and calls
    ``direction``. The shared parameters are then updated along the returned direction; every
    other parameter (heads, task columns, experts) along the sum over tasks of weight x its task
    gradient. ``combine`` gives the plain sum of the losses, which is only logged.
    """

    level = "gradient"

    def weigh(self, losses: dict[str, torch.Tensor], context: StepContext) -> dict[str, torch.Tensor | float]:
        return dict.fromkeys(losses, 1.0)

    def combine_gradients(self, gradients: torch.Tensor, losses: dict[str, float],
                          context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """``direction`` with its task weights recorded in ``last_weights``."""
        update, weights = self.direction(gradients, losses, context)
        self.last_weights = dict(weights)
        return update, weights

    @abstractmethod
    def direction(self, gradients: torch.Tensor, losses: dict[str, float],
                  context: StepContext) -> tuple[torch.Tensor, dict[str, float]]:
        """The update direction of the shared parameters, shape (P,), from ``gradients`` (K, P):
        row k the gradient of the k-th task of ``losses`` (whose values are the step's losses),
        and each task's weight on its task-specific gradients. ``context.rng`` is seeded per step."""


register = WEIGHTINGS.register()  # class decorator: a loss weighting available under ``cls.name``


def build_weighting(name: str, tasks: list[str], options: Any = None) -> LossWeighting:
    """The weighting registered as ``name`` (``--loss-weighting``) over ``tasks``, with ``options`` (an
    instance of its ``options_class``; its defaults when None). An unknown name is a UserError suggesting
    the closest."""
    return WEIGHTINGS.get(name)(tasks, options)


def weighting_from(groups: Mapping[type, Any], tasks: list[str]) -> LossWeighting:
    """The weighting that option instances keyed by class choose (``WeightingOptions`` and the chosen
    weighting's own options; defaults where absent), over ``tasks``."""
    name = (groups.get(WeightingOptions) or WeightingOptions()).loss_weighting
    return build_weighting(name, tasks, WEIGHTINGS.options_for(name, groups))
