"""Customized sharing: a shared column and a column per task, fused by a projection of each task's own.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 3.2 and Figure 1c.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.top_layers import (
    TopLayersArchitecture,
    block_shares,
    copies,
    reading_first,
    run_layers,
)

if TYPE_CHECKING:
    from transformers.models.ernie.modeling_ernie import ErnieLayer


@ARCHITECTURES.register()
class Customized(TopLayersArchitecture):
    """Customized sharing (Tang et al. 2020, Fig. 1c) over the top K = ``--expert-layers`` layers.

    The top K layers become a shared column S and one column C_t per task, each a copy of those K
    layers; there are no gates. With x the trunk's output (batch, tokens, hidden), task t's head
    reads, per token,

        h_shared = S(x)        h_t = C_t(x)        y_t = W_t [h_shared; h_t] + b_t

    where W_t (hidden x 2 hidden) and b_t are the task's own projection: the paper's task tower
    reads the shared and the task-specific bottom's outputs together (its "customized" split of
    shared and task-specific parameters). W_t starts as [I, 0] and b_t as 0, so y_t starts as
    h_shared, the encoder's top layers: the model starts equal to the encoder it is built from. A
    forward pass of one task runs 2 x K layers (the shared column and its own); the model holds
    T x K layers more than hard sharing.

    Every task's loss reaches the shared column, so ``shared_parameters()`` are the trunk, the
    shared column and the pooler, and ``shared_layer_weights()`` end with the shared column's top
    layer (GradNorm's W). ``routing()`` gives per task the share of W_t's weight on each half,
    ``shared`` and ``<task>`` (||W_t,half||_F over the sum of both; 1 and 0 at the start), averaged
    over its forward passes: how much the task has moved onto its own column.

    ``add_task(name, id, like)``: the new task gets copies of ``like``'s column and projection
    (default ``like``: the model's first task), so its output starts equal to ``like``'s.
    """

    name = "customized"
    summary = "a shared column and a column per task, each a copy of the top --expert-layers layers; a task's head " \
              "reads W_t [shared; own], started as the shared column (PLE's customized sharing, Tang et al. 2020)"

    def build_top(self, layers: list[nn.Module]) -> None:
        self.shared_column = copies(layers)
        self.columns = nn.ModuleDict({task: copies(layers) for task in self.task_ids})
        self.projections = nn.ModuleDict({task: reading_first(self.config, 2) for task in self.task_ids})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        columns = cast("Mapping[str, nn.ModuleList]", self.columns)  # torch types a container's items as Module
        projection = cast(nn.Linear, self.projections[task])
        shared, own = run_layers(self.shared_column, hidden, mask), run_layers(columns[task], hidden, mask)
        if self.training:
            self.record(task, block_shares(projection, 2), torch.ones((), device=hidden.device))
        return projection(torch.cat([shared, own], dim=-1))

    def shared_layer_weights(self) -> list[nn.Parameter]:
        """The output weight of each trunk layer, then of each layer of the shared column."""
        column = [cast("ErnieLayer", layer).output.dense.weight for layer in self.shared_column]
        trunk = super().shared_layer_weights() if len(self.trunk.encoder.layer) else []
        return [*trunk, *cast("list[nn.Parameter]", column)]  # torch types a Linear's weight as a Tensor

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trunk, the shared column and the pooler."""
        return [*self.trunk.parameters(), *self.shared_column.parameters(), *self.pooler.parameters()]

    def routing_labels(self, task: str) -> list[str]:
        return ["shared", task]

    def copy_task(self, task: str, like: str) -> None:
        self.columns[task] = copy.deepcopy(self.columns[like])
        self.projections[task] = copy.deepcopy(self.projections[like])
