"""Cross-stitch networks: a column of layers per task, mixed after each layer by learned weights.

Misra, Shrivastava, Gupta & Hebert 2016, "Cross-stitch Networks for Multi-task Learning" (CVPR),
section 3.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import cast

import torch
from torch import nn

from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.top_layers import TopLayersArchitecture, copies

SAME_TASK = 0.9  # the paper's initialisation: (alpha_S, alpha_D) = (0.9, 0.1)


def initial_row(index: int, tasks: int) -> torch.Tensor:
    """Row ``index`` of the initial cross-stitch matrix of ``tasks`` columns: 0.9 on the diagonal and
    the other 0.1 shared equally (1 alone for a single task), so every row sums to 1."""
    if tasks == 1:
        return torch.ones(1)
    row = torch.full((tasks,), (1 - SAME_TASK) / (tasks - 1))
    row[index] = SAME_TASK
    return row


@ARCHITECTURES.register()
class CrossStitch(TopLayersArchitecture):
    """Cross-stitch units (Misra et al. 2016) over the top K = ``--expert-layers`` layers.

    Every task t has its own column: a copy of the top K layers. After each layer l, a
    cross-stitch unit mixes the columns' outputs, T tasks by T learned weights alpha^l:

        x_t^{l+1} = sum_s alpha^l[t, s] * layer_s^l(x_s^l)       (paper eq. 1, for T tasks)

    with every x_s^1 the trunk's output, and the task's states are x_t^{K+1}. alpha^l starts at
    0.9 on the diagonal and shares the remaining 0.1 of each row equally among the other columns,
    the paper's initialisation for two tasks (0.9, 0.1); a single task's alpha is 1. Each row
    alpha^l[t] is a 1-D parameter ``stitches.<l>.<task>``, so AdamW applies no weight decay to it
    (the paper instead trains the units with a 10^2-10^3 times larger learning rate, which this
    trainer does not do). A forward pass of one task runs every column (T x K layers); the model
    holds (T - 1) x K layers more than hard sharing.

    ``routing()`` gives per task the mean of its row of each unit over its forward passes,
    ``layer<n>/<column>`` with n the encoder layer (1..L) the unit follows.

    ``add_task(name, id, like)``: the new task's column is a copy of ``like``'s (default: the
    model's first task). Its row is ``like``'s with ``like``'s own weight moved to the new column
    (which computes what ``like``'s does), and the other rows give the new column 0, so every
    task's output is unchanged and the new task's equals ``like``'s.
    """

    name = "cross_stitch"
    summary = "a column per task, each a copy of the top --expert-layers layers, mixed after every layer by " \
              "learned cross-stitch units initialised near identity (Misra et al. 2016)"

    def build_top(self, layers: list[nn.Module]) -> None:
        tasks = list(self.task_ids)
        self.columns = nn.ModuleDict({task: copies(layers) for task in tasks})
        self.stitches = nn.ModuleList(
            nn.ParameterDict({task: nn.Parameter(initial_row(i, len(tasks))) for i, task in enumerate(tasks)})
            for _ in layers)

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        tasks = list(self.task_ids)
        states = dict.fromkeys(tasks, hidden)
        # torch types a container's items as Module: task -> its column's layers; layer -> task -> its row
        columns = cast("Mapping[str, Sequence[nn.Module]]", self.columns)
        stitches = cast("Sequence[nn.ParameterDict]", self.stitches)
        for index, stitch in enumerate(stitches):
            outputs = torch.stack([columns[column][index](states[column], mask) for column in tasks])
            rows = [task] if index == len(stitches) - 1 else tasks  # the top unit: only the task's own row
            states = {row: torch.einsum("s,sbth->bth", stitch[row], outputs) for row in rows}
        if self.training:
            self.record(task, torch.cat([stitch[task] for stitch in stitches]), torch.ones((), device=hidden.device))
        return states[task]

    def routing_labels(self, task: str) -> list[str]:
        first = self.config.num_hidden_layers - len(self.stitches) + 1
        return [f"layer{first + index}/{column}" for index in range(len(self.stitches)) for column in self.task_ids]

    def copy_task(self, task: str, like: str) -> None:
        tasks = list(self.task_ids)  # the new task last
        source = tasks.index(like)
        self.columns[task] = copy.deepcopy(self.columns[like])
        for stitch in cast("Sequence[nn.ParameterDict]", self.stitches):
            for row in tasks[:-1]:
                stitch[row] = nn.Parameter(torch.cat([stitch[row].detach(), stitch[row].new_zeros(1)]))
            new_row = stitch[like].detach().clone()
            new_row[-1], new_row[source] = new_row[source].clone(), 0.0
            stitch[task] = nn.Parameter(new_row)
