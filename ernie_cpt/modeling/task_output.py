"""What one task's forward pass gives the trainer and the evaluator (``Architecture.forward``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class TaskOutput:
    """One task's forward pass: ``loss``, a scalar, the mean over the scored items; ``labels`` of the
    scored items; ``predictions``, what the head's metrics compare with them (``Head.predictions``: the
    predicted classes, or a ranking head's score grid). ``logits`` (scored items, classes) and
    ``loss_sum`` (the summed loss, with its graph, for DDP's global mean) are computed when read: a
    masked-LM head never holds the logits of all its targets at once while training or evaluating
    (:mod:`ernie_cpt.modeling.linear_cross_entropy`), and makes them, (targets, vocabulary), only for
    a caller that reads ``logits``."""

    loss: torch.Tensor
    labels: torch.Tensor
    predictions: torch.Tensor
    make_logits: Callable[[], torch.Tensor] = field(repr=False)
    make_loss_sum: Callable[[], torch.Tensor] = field(repr=False)

    @property
    def logits(self) -> torch.Tensor:
        return self.make_logits()

    @property
    def loss_sum(self) -> torch.Tensor:
        return self.make_loss_sum()
