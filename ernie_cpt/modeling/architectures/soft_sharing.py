"""Soft parameter sharing: a column of layers per task, no weight shared, tied by a penalty.

Mean-regularised multi-task learning (Evgeniou & Pontil 2004, "Regularized Multi-Task Learning",
KDD; in a neural network, Duong, Cohn, Bird & Cook 2015, "Low Resource Dependency Parsing:
Cross-lingual Parameter Sharing in a Neural Network Parser", ACL) and the tensor trace norm (Yang
& Hospedales 2017, "Trace Norm Regularised Deep Multi-Task Learning", ICLR workshop), by default of
the columns' deviations from their mean (the centring of Jacob, Bach & Vert 2008, "Clustered
Multi-Task Learning: A Convex Formulation", NeurIPS).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.top_layers import TopLayersArchitecture, copies, run_layers
from ernie_cpt.options import Range, check_ranges, option

# An eigenvalue of the Gram matrix below this fraction of the largest is a zero singular value: it adds
# nothing to the trace norm and no gradient (float64; identical columns leave rounding noise of ~1e-16).
ZERO_EIGENVALUE = 1e-12
NORMS = ("l2", "trace", "trace_uncentered")


@dataclass
class SoftSharingOptions:
    """Architecture soft_sharing: the penalty that ties the task columns"""

    soft_sharing_norm: str = option("l2", "soft_sharing: the penalty on the task columns' parameters: l2, the "
                                    "squared distance of each column from the columns' mean (Evgeniou & Pontil "
                                    "2004; Duong et al. 2015); trace, the trace norm of each parameter's "
                                    "deviations from that mean, stacked over the tasks (Yang & Hospedales 2017, "
                                    "centred as in Jacob et al. 2008; 0 while the columns agree); "
                                    "trace_uncentered, the paper's trace norm of the parameters themselves, which "
                                    "also shrinks the weights the columns share", choices=NORMS)
    soft_sharing_weight: float = option(0.01, "soft_sharing: lambda, the weight of the penalty in the loss (0: "
                                        "independent columns)", valid=Range(0, 1e6))

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.soft_sharing_norm not in NORMS:  # options made in code, which argparse does not check
            raise UserError(f"--soft-sharing-norm must be one of {', '.join(NORMS)}, got {self.soft_sharing_norm!r}")


def l2_distances(stacks: list[torch.Tensor]) -> torch.Tensor:
    """||theta_t - theta_bar||^2 for each task t: (T,), from each parameter stacked over the tasks
    (``stacks``: tensors of shape (T, ...)); theta_bar is the mean over the tasks."""
    return cast(torch.Tensor, sum(((w - w.mean(0)) ** 2).flatten(1).sum(1) for w in stacks))


def trace_norm(stack: torch.Tensor, centred: bool = True) -> torch.Tensor:
    """||W_(T)||_*, the trace norm (sum of singular values) of ``stack`` (T, ...) flattened to (T, rest),
    the tensor's last-axis flattening with the task axis last (Yang & Hospedales 2017): the sum of
    the square roots of the eigenvalues of the T x T Gram matrix W_(T) W_(T)^T, computed in float64.
    ``centred``: of W_(T) minus its mean row, the tasks' deviations from their mean (Jacob et al. 2008's
    centring), 0 when the rows agree. Eigenvalues below ``ZERO_EIGENVALUE`` times the largest count as
    0 and carry no gradient (at a zero singular value the trace norm has no gradient; 0 is in its
    subdifferential)."""
    flat = stack.flatten(1).double()
    if centred:
        flat = flat - flat.mean(0)
    eigenvalues = torch.linalg.eigvalsh(flat @ flat.T)
    kept = eigenvalues > ZERO_EIGENVALUE * eigenvalues.max().clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(kept, eigenvalues, torch.ones_like(eigenvalues)).sqrt().mul(kept).sum().to(stack.dtype)


@ARCHITECTURES.register()
class SoftSharing(TopLayersArchitecture):
    """Soft parameter sharing over the top K = ``--expert-layers`` layers: each task t has its own
    column theta_t, a copy of those K layers (every parameter of them); no column is shared, and
    a task's states are its own column's output on the trunk's output (batch, tokens, hidden). The
    columns are tied by a penalty lambda * Omega (lambda = ``--soft-sharing-weight``) that
    :meth:`aux_loss` adds to the training loss, over each parameter p of the columns, stacked over
    the T tasks into W_p (T, ...):

    * ``--soft-sharing-norm l2`` (mean-regularised MTL, Evgeniou & Pontil 2004; Duong et al. 2015's
      l2 tie, with the tasks' mean as the point the columns are tied to):
      Omega = sum_t ||theta_t - theta_bar||^2,  theta_bar = (1/T) sum_t theta_t;
    * ``--soft-sharing-norm trace`` (tensor trace norm, last-axis flattening; Yang & Hospedales
      2017, of the centred stack): Omega = sum_p ||W_p,(T) - 1 w_bar_p^T||_*, each W_p flattened
      to (T, rest) with the task axis kept, minus its mean row w_bar_p, the sum of the singular
      values: sqrt of the eigenvalues of the T x T Gram matrix of the deviations
      (:func:`trace_norm`). It favours deviations of low rank: columns that differ from their
      mean along a few shared directions. The centring is Jacob, Bach & Vert 2008's (the mean
      weight is not penalised), so that, as with l2, Omega measures how far the columns disagree;
    * ``--soft-sharing-norm trace_uncentered``: the paper's Omega = sum_p ||W_p,(T)||_*, of the
      weights themselves. At the start, with identical columns, it is sqrt(T) sum_p ||w_p|| and its
      gradient shrinks every column toward 0: in continual pre-training, a decay of the pre-trained
      top layers. Measured on Austen (3 tasks, 60 steps a task, lambda 0.01): sentence_reordering
      stayed at its majority class (docs/results/architectures.md).

    The columns start as copies of the encoder's top layers, so the model starts as the encoder
    and Omega starts at its minimum, 0, for l2 and trace. A forward
    pass of one task runs its own column only (K layers above the trunk); the model holds (T - 1)
    x K layers more than hard sharing, and computing Omega costs O(T^2) passes over the columns'
    parameters per micro-batch.

    ``routing()`` gives per task, the mean over its training forward passes: ``distance``, its
    column's ||theta_t - theta_bar||^2 (its term of the l2 penalty, whichever norm is used), and
    ``penalty``, lambda * Omega at the time.

    ``add_task(name, id, like)``: the new task's column is a copy of ``like``'s (default: the
    model's first task), so its output starts equal to ``like``'s; Omega then covers it too.
    """

    name = "soft_sharing"
    summary = "a column per task, each a copy of the top --expert-layers layers, none shared, tied by an l2 or " \
              "trace-norm penalty (Duong et al. 2015; Yang & Hospedales 2017)"
    options_class = SoftSharingOptions
    options: SoftSharingOptions

    def build_top(self, layers: list[nn.Module]) -> None:
        self.columns = nn.ModuleDict({task: copies(layers) for task in self.task_ids})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                stacks = self.stacks()
                distance = l2_distances(stacks)[list(self.columns).index(task)]
                self.record(task, torch.stack([distance, self.penalty(stacks)]), torch.ones((), device=hidden.device))
        return run_layers(cast(nn.ModuleList, self.columns[task]), hidden, mask)

    def stacks(self) -> list[torch.Tensor]:
        """Each parameter of the columns stacked over the tasks (in ``task_ids`` order): (T, ...) each."""
        columns = cast("Mapping[str, nn.ModuleList]", self.columns)
        return [torch.stack(same) for same in zip(*(column.parameters() for column in columns.values()))]

    def penalty(self, stacks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """lambda * Omega, a scalar (see the class), of the columns' parameters (or of ``stacks``, as
        :meth:`stacks` gives them)."""
        stacks = self.stacks() if stacks is None else stacks
        if self.options.soft_sharing_norm == "l2":
            omega = l2_distances(stacks).sum()
        else:
            centred = self.options.soft_sharing_norm == "trace"
            omega = cast(torch.Tensor, sum(trace_norm(stack, centred) for stack in stacks))
        return self.options.soft_sharing_weight * omega

    def aux_loss(self) -> torch.Tensor | None:
        """The penalty lambda * Omega; None when lambda is 0."""
        return self.penalty() if self.options.soft_sharing_weight > 0 else None

    def routing_labels(self, task: str) -> list[str]:
        return ["distance", "penalty"]

    def copy_task(self, task: str, like: str) -> None:
        self.columns[task] = copy.deepcopy(self.columns[like])
