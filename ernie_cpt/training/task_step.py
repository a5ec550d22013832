"""The pieces of one optimizer step that differ between one process and several.

``TasksForward`` runs a batch of each task of the step in one forward pass, with the
architecture's own penalty (``aux_loss``): that is what ``DistributedDataParallel`` wraps.
``global_losses`` makes the losses of a rank's share of the batches add up to those of the whole
batch. ``gradient_sync`` lets DDP average the gradients only after the last micro-batch of a
step (gradient accumulation).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

from ernie_cpt import distributed
from ernie_cpt.modeling.architectures import Architecture, TaskOutput
from ernie_cpt.modeling.heads import Head


class TasksForward(nn.Module):
    """One forward pass over a batch of each task of a step: each task's output and the architecture's
    ``aux_loss()`` (None without one). The penalty is computed here, inside the module DDP wraps, so
    that DDP (``find_unused_parameters``) counts the parameters it reaches as used even where no task
    of the step reaches them (another task's column); it is computed outside ``autocast``."""

    def __init__(self, model: Architecture) -> None:
        super().__init__()
        self.model = model

    def forward(self, batches: dict[str, dict[str, torch.Tensor]]) -> tuple[dict[str, TaskOutput],
                                                                             torch.Tensor | None]:
        outputs = {task: self.model(task, batch) for task, batch in batches.items()}
        with torch.autocast("cuda", enabled=False):  # the trainer autocasts on CUDA only
            return outputs, self.model.aux_loss()


def gradient_sync(forward: nn.Module, last_micro_batch: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for every micro-batch but the last of a step; nothing in one process."""
    if last_micro_batch or not isinstance(forward, nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return forward.no_sync()


def _accuracy(head: Head, out: TaskOutput) -> float:
    count = head.count(out.labels)
    return head.correct(out.predictions, out.labels) / count if count else 0.0


def global_losses(outputs: dict[str, TaskOutput], heads: nn.ModuleDict,
                  tokens: int) -> tuple[dict[str, torch.Tensor], dict[str, float], int]:
    """Each task's loss to backpropagate and its accuracy over the whole batch, and the batch's tokens.

    One process: the mean loss of its batch. Several: a rank's summed loss (``TaskOutput.loss_sum``, the head's
    loss with ``reduction="sum"``) times ranks / scored items of all ranks, so that DDP's average of the
    gradients is the gradient of the whole batch's mean loss (token-level tasks have different
    numbers of targets on different ranks); its value is replaced by that mean, so every rank,
    and a loss weighting on it, sees the same numbers."""
    task_heads = {task: cast(Head, heads[task]) for task in outputs}  # a ModuleDict's items are typed Module
    if distributed.world_size() == 1:
        return ({task: out.loss for task, out in outputs.items()},
                {task: _accuracy(task_heads[task], out) for task, out in outputs.items()}, tokens)
    summed = {task: out.loss_sum for task, out in outputs.items()}
    device = next(iter(summed.values())).device
    stats = torch.tensor([[summed[task].item(), task_heads[task].count(out.labels),
                           task_heads[task].correct(out.predictions, out.labels)]
                          for task, out in outputs.items()] + [[tokens, 0, 0]], dtype=torch.float64, device=device)
    distributed.all_reduce_sum(stats)
    losses, accuracies = {}, {}
    for (task, loss), (loss_sum, targets, correct) in zip(summed.items(), stats.tolist()):
        scaled = loss * (distributed.world_size() / max(targets, 1))  # no target on any rank: 0, not NaN
        losses[task] = scaled + (loss_sum / max(targets, 1) - scaled).detach()
        accuracies[task] = correct / targets if targets else 0.0
    return losses, accuracies, int(stats[-1, 0])


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """The total norm of the gradients, which are then clipped to ``max_norm`` (0 = not clipped)."""
    norm = torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(model.parameters(), max_norm, norm)
    return norm.item()


@torch.no_grad()
def losses_on(forward: nn.Module, heads: nn.ModuleDict, micro_batches: list[dict[str, dict[str, torch.Tensor]]],
              autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    """Each task's loss over the whole batch (all processes), averaged over ``micro_batches``,
    without gradients: a step's losses again, under the parameters after its update."""
    losses: dict[str, float] = {}
    for batches in micro_batches:
        with autocast():
            outputs, _ = forward(batches)
        for task, loss in global_losses(outputs, heads, 0)[0].items():
            losses[task] = losses.get(task, 0.0) + loss.item() / len(micro_batches)
    return losses
