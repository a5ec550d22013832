"""MMoE: experts shared by all tasks, mixed by a softmax gate of each task's own.

Ma, Zhao, Yi, Chen, Hong & Chi 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts" (KDD), eq. 5-6.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.top_layers import (
    TopLayersArchitecture,
    copies,
    gate_weights,
    mix,
    new_gate,
    run_layers,
)
from ernie_cpt.options import Range, check_ranges, option


@dataclass
class MMoEOptions:
    """Architecture mmoe: its experts"""

    num_experts: int = option(4, "mmoe: experts, each a copy of the top --expert-layers layers", valid=Range(1, 64))

    def __post_init__(self) -> None:
        check_ranges(self)


@ARCHITECTURES.register()
class MMoE(TopLayersArchitecture):
    """Multi-gate Mixture-of-Experts (Ma et al. 2018) over the top K = ``--expert-layers`` layers.

    The top K layers become E = ``--num-experts`` experts f_1..f_E, each a copy of those K layers
    (see ``top_layers``), shared by all tasks; every task t has its own gate g_t. For the state
    x (hidden) of each token of the trunk's output (batch, tokens, hidden):

        y_t(x) = sum_e g_t(x)_e f_e(x)        g_t(x) = softmax(W_t x + b_t)     (paper eq. 5-6)

    where f_e(x) is expert e's K layers applied to the whole sequence (its attention sees every
    token) read at x's position. The paper's gate reads an example's input; here an example is a
    sequence, and the gate reads each token's state, so it weighs the experts per token. Every
    expert runs on every batch: a forward pass costs E x K layers above the trunk, and the model
    holds (E - 1) x K layers more than hard sharing.

    The experts start as identical copies; the gates start near uniform but differ per token and
    task, so the experts get different gradients and move apart. ``routing()`` gives per task the
    mean gate weight of each expert (``expert.0`` ...) over its tokens.

    ``add_task(name, id, like)``: the new task's gate is a copy of ``like``'s (default: the model's
    first task), so the new task starts mixing the experts exactly as ``like`` does.
    """

    name = "mmoe"
    summary = "the top --expert-layers layers become --num-experts experts; each task mixes them with its own " \
              "softmax gate, per token (Ma et al. 2018)"
    options_class = MMoEOptions
    options: MMoEOptions

    def build_top(self, layers: list[nn.Module]) -> None:
        self.experts = nn.ModuleList(copies(layers) for _ in range(self.options.num_experts))
        self.gates = nn.ModuleDict({task: new_gate(self.config, self.options.num_experts) for task in self.task_ids})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        weights = gate_weights(cast(nn.Linear, self.gates[task]), hidden)
        self.record_gates(task, [weights], tokens)
        return mix(weights, [run_layers(cast(nn.ModuleList, expert), hidden, mask) for expert in self.experts])

    def routing_labels(self, task: str) -> list[str]:
        return [f"expert.{e}" for e in range(len(self.experts))]

    def copy_task(self, task: str, like: str) -> None:
        self.gates[task] = copy.deepcopy(self.gates[like])
