"""Sluice networks: cross-stitch units over subspaces, layer-stitch units, orthogonal subspaces.

Ruder, Bingel, Augenstein & Søgaard 2019, "Latent Multi-task Architecture Learning" (AAAI),
section 2; the authors' code (github.com/sebastianruder/sluice-networks, ``predictors.py``:
``CrossStitchLayer``, ``LayerStitchLayer``; ``sluice_net.py``: the subspace penalty).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.cross_stitch import SAME_TASK
from ernie_cpt.modeling.architectures.top_layers import TopLayersArchitecture, copies
from ernie_cpt.options import Range, check_ranges, option

if TYPE_CHECKING:
    from transformers.models.ernie.modeling_ernie import ErnieLayer


@dataclass
class SluiceOptions:
    """Architecture sluice: its subspaces and their orthogonality"""

    subspaces: int = option(2, "sluice: S, the subspaces each task column's hidden states are split into, mixed "
                            "by the alpha units (1: cross-stitch units with layer-stitch units); must divide the "
                            "hidden size", valid=Range(1, 64))
    orthogonality_weight: float = option(0.1, "sluice: lambda, the weight of the subspace orthogonality penalty "
                                         "sum ||W_s W_s'^T||_F^2 in the loss (0: none; the authors' example uses "
                                         "0.1). The penalty grows with the hidden size", valid=Range(0, 1e6))

    def __post_init__(self) -> None:
        check_ranges(self)


def initial_block(task: int, tasks: int, subspaces: int) -> torch.Tensor:
    """The S rows of the initial alpha matrix for the subspaces of column ``task`` of ``tasks``: 0.9
    on the diagonal (the authors' ``imbalanced`` initialisation), the other 0.1 of each row shared
    equally by the same subspace of the other columns (1 alone for a single task); (S, T S)."""
    block = torch.zeros(subspaces, tasks * subspaces)
    for s in range(subspaces):
        same = block[s, s::subspaces]  # subspace s of every column
        same.fill_((1 - SAME_TASK) / (tasks - 1) if tasks > 1 else 0.0)
        same[task] = SAME_TASK if tasks > 1 else 1.0
    return block


def orthogonality(weight: torch.Tensor, subspaces: int) -> torch.Tensor:
    """sum over pairs s < s' of ||W_s W_s'^T||_F^2, W_s the rows of ``weight`` (hidden, in) that write
    subspace s of the hidden state (hidden / S rows each): 0 when the subspaces' weight vectors are
    orthogonal. The paper's ||G_1^T G_2||_F^2, with G = W^T (in, hidden / S)."""
    parts = weight.unflatten(0, (subspaces, -1))  # (S, hidden / S, in)
    grams = torch.einsum("sui,rvi->sruv", parts, parts)  # (S, S, hidden / S, hidden / S)
    pairs = torch.triu_indices(subspaces, subspaces, offset=1, device=weight.device)
    return (grams[pairs[0], pairs[1]] ** 2).sum()


@ARCHITECTURES.register()
class Sluice(TopLayersArchitecture):
    """A sluice network (Ruder et al. 2019) over the top K = ``--expert-layers`` layers.

    Every task t has its own column, a copy of the top K layers. The hidden state h (hidden,) of
    each token that a column's layer outputs is split into S = ``--subspaces`` subspaces of
    hidden / S contiguous dimensions, h = [h_{t,1}; ...; h_{t,S}]. After each layer l, an alpha
    unit (a T S x T S matrix) mixes every subspace of every column (per token):

        [h~_{1,1}, ..., h~_{T,S}]^T = alpha^l [h_{1,1}, ..., h_{T,S}]^T

    and column t's next layer reads h~_t = [h~_{t,1}; ...; h~_{t,S}]; the first layer reads the
    trunk's output. A beta unit per task (K weights) gives the states its head reads:

        x_t = sum_l beta_t[l] h~_t^l             (batch, tokens, hidden)

    The paper's unit is a layer of a task network: here one of the top K transformer layers of a
    task's column, with a token's hidden state in place of the paper's per-word LSTM state.

    The model is trained with the tasks' losses plus lambda * L_c (``--orthogonality-weight``;
    the paper's subspace orthogonality constraint, as the authors' code computes it), added by
    :meth:`aux_loss`:

        L_c = sum_t sum_l sum_W sum_{s < s'} ||W_{t,l,s} W_{t,l,s'}^T||_F^2

    over the two matrices of layer l of column t that write its hidden state (the attention output
    and the feed-forward output projections, weight (hidden, in)), W_s the hidden / S rows that
    write subspace s (:func:`orthogonality`; the authors constrain two LSTM matrices).

    Initialisation: each alpha row gives 0.9 to its own subspace (the authors' ``imbalanced``
    scheme) and shares the other 0.1 equally among the same subspace of the other columns, so the
    columns, identical at the start, mix identical states; beta starts uniform, 1/K (the authors'
    ``balanced`` scheme; their default gives the top layer 0.9): at the start a task's states are
    the mean of the encoder's top K layer outputs. With S = 1 and beta one-hot on the top layer,
    this is ``cross_stitch`` (whose parameters it then loads). The S rows of task t's alpha are a
    1-D parameter ``stitches.<l>.<task>`` (S x T S, row by row), its beta ``betas.<task>`` (K,), so
    AdamW applies no weight decay to either, as to cross-stitch units. A forward pass of one task runs every column
    (T x K layers); the model holds (T - 1) x K layers more than hard sharing.

    ``routing()`` gives per task the mean of its alpha rows over its forward passes,
    ``layer<n>/<s>/<column>.<s'>`` (the weight of ``column``'s subspace s' in subspace s of the
    task's column, after encoder layer n), and of its beta, ``beta/layer<n>``.

    ``add_task(name, id, like)``: the new task's column, alpha rows and beta are copies of
    ``like``'s (default: the model's first task), its alpha rows reading the new column where
    ``like``'s read ``like``'s own; every other row gives the new column 0. Every task's output is
    unchanged and the new task's equals ``like``'s. Raises UserError when S does not divide the
    hidden size.
    """

    name = "sluice"
    summary = "a column per task over the top --expert-layers layers, their --subspaces mixed after every layer " \
              "by learned alpha units, the layers mixed by beta units, the subspaces kept orthogonal (Ruder et " \
              "al. 2019)"
    options_class = SluiceOptions
    options: SluiceOptions

    def build_top(self, layers: list[nn.Module]) -> None:
        tasks, subspaces = list(self.task_ids), self.options.subspaces
        if self.config.hidden_size % subspaces:
            raise UserError(f"--subspaces {subspaces} does not divide the hidden size {self.config.hidden_size}; "
                            f"choose a divisor of it (2 is the paper's)")
        self.columns = nn.ModuleDict({task: copies(layers) for task in tasks})
        self.stitches = nn.ModuleList(
            nn.ParameterDict({task: nn.Parameter(initial_block(i, len(tasks), subspaces).flatten())
                              for i, task in enumerate(tasks)}) for _ in layers)
        self.betas = nn.ParameterDict({task: nn.Parameter(torch.full((len(layers),), 1 / len(layers)))
                                       for task in tasks})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        tasks, subspaces = list(self.task_ids), self.options.subspaces
        states = dict.fromkeys(tasks, hidden)
        # torch types a container's items as Module: task -> its column's layers; layer -> task -> its rows
        columns = cast("Mapping[str, Sequence[nn.Module]]", self.columns)
        stitches = cast("Sequence[nn.ParameterDict]", self.stitches)
        mixed = []
        for index, stitch in enumerate(stitches):
            outputs = torch.stack([columns[column][index](states[column], mask) for column in tasks])
            parts = outputs.unflatten(-1, (subspaces, -1)).movedim(-2, 1).flatten(0, 1)  # (T S, b, n, hidden / S)
            rows = [task] if index == len(stitches) - 1 else tasks  # the top unit: only the task's own rows
            states = {row: torch.einsum("sq,qbnd->bnsd", stitch[row].view(subspaces, -1), parts).flatten(-2)
                      for row in rows}
            mixed.append(states[task])
        beta = cast(torch.Tensor, self.betas[task])
        if self.training:
            weights = torch.cat([*(stitch[task] for stitch in stitches), beta])
            self.record(task, weights, torch.ones((), device=hidden.device))
        return torch.einsum("l,lbnh->bnh", beta, torch.stack(mixed))

    def aux_loss(self) -> torch.Tensor | None:
        """lambda * L_c (see the class); None with one subspace or lambda 0."""
        if self.options.subspaces == 1 or self.options.orthogonality_weight == 0:
            return None
        layers = [cast("ErnieLayer", layer) for column in self.columns.values()
                  for layer in cast(nn.ModuleList, column)]
        weights = [weight for layer in layers for weight in (layer.attention.output.dense.weight,
                                                             layer.output.dense.weight)]
        penalty = sum(orthogonality(weight, self.options.subspaces) for weight in weights)
        return self.options.orthogonality_weight * cast(torch.Tensor, penalty)

    def routing_labels(self, task: str) -> list[str]:
        first, subspaces = self.config.num_hidden_layers - len(self.stitches) + 1, self.options.subspaces
        alphas = [f"layer{first + index}/{s}/{column}.{source}" for index in range(len(self.stitches))
                  for s in range(subspaces) for column in self.task_ids for source in range(subspaces)]
        return alphas + [f"beta/layer{first + index}" for index in range(len(self.stitches))]

    def copy_task(self, task: str, like: str) -> None:
        tasks, subspaces = list(self.task_ids), self.options.subspaces  # the new task last
        own = slice(tasks.index(like) * subspaces, (tasks.index(like) + 1) * subspaces)
        self.columns[task] = copy.deepcopy(self.columns[like])
        self.betas[task] = nn.Parameter(self.betas[like].detach().clone())
        for stitch in cast("Sequence[nn.ParameterDict]", self.stitches):
            for row in tasks[:-1]:
                block = stitch[row].detach().view(subspaces, -1)
                stitch[row] = nn.Parameter(torch.cat([block, block.new_zeros(subspaces, subspaces)], 1).flatten())
            block = stitch[like].detach().view(subspaces, -1).clone()
            block[:, -subspaces:], block[:, own] = block[:, own].clone(), 0.0
            stitch[task] = nn.Parameter(block.flatten())
