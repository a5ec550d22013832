"""PLE: Customized Gate Control stacked level by level, with a shared gate feeding each next level.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 4.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
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


@ARCHITECTURES.register()
class PLE(TopLayersArchitecture):
    """Progressive Layered Extraction (Tang et al. 2020) over the top K = ``--expert-layers`` layers,
    one extraction level per layer.

    Level l (l = 1..K) has S = ``--shared-experts`` shared experts and T_e = ``--task-experts``
    experts owned by each task, each a copy of encoder layer L - K + l. Every task t has a gate
    at every level, over the level's shared experts and t's own (its CGC, eq. 2-4 of the paper);
    every level but the top one also has a shared gate over all experts of the level (eq. 5).
    With x_t^l the input of task t's experts at level l and x_s^l that of the shared experts
    (both the trunk's output at level 1), per token:

        x_t^{l+1} = sum_e g_t^l(x_t^l)_e E_e(x^l)    over the shared experts and t's own
        x_s^{l+1} = sum_e g_s^l(x_s^l)_e E_e(x^l)    over every expert of the level (l < K)

    where each expert E_e reads its own input (x_s^l for shared experts, x_u^l for task u's). The
    task's states are x_t^{K+1}. A forward pass of one task runs, below the top level, every
    task's experts (the shared gate mixes them all), and at the top level the shared experts and
    its own.

    ``routing()`` gives per task its gates' mean weights, ``level<l>/shared.<i>`` and
    ``level<l>/<task>.<i>``, and those of the shared gates computed in its forward passes,
    ``level<l>/shared_gate/<owner>.<i>``.

    ``add_task(name, id, like)``: the new task gets copies of ``like``'s experts and gates
    (default ``like``: the model's first task). In each shared gate its experts get copies of
    ``like``'s experts' rows, and both copies' biases are lowered by log 2 (Net2Net's split,
    Chen, Goodfellow & Shlens 2016): their summed weight is ``like``'s before, so every task's
    output is unchanged and the new task's equals ``like``'s.
    """

    name = "ple"
    summary = "CGC stacked over the top --expert-layers layers, one level per layer, a shared gate feeding each " \
              "next level (Tang et al. 2020)"
    options_used = ("expert_layers", "shared_experts", "task_experts")

    def level_depths(self) -> list[int]:
        """How many of the top layers each level's experts hold, bottom level first."""
        return [1] * self.options.expert_layers

    def build_top(self, layers: list[nn.Module]) -> None:
        starts = [sum(self.level_depths()[:i]) for i in range(len(self.level_depths()))]
        stacks = [layers[start:start + depth] for start, depth in zip(starts, self.level_depths())]
        shared, owned = self.options.shared_experts, self.options.task_experts
        self.shared_experts = nn.ModuleList(nn.ModuleList(copies(stack) for _ in range(shared)) for stack in stacks)
        self.task_experts = nn.ModuleDict({task: nn.ModuleList(nn.ModuleList(copies(stack) for _ in range(owned))
                                                               for stack in stacks) for task in self.task_ids})
        self.task_gates = nn.ModuleDict({task: nn.ModuleList(new_gate(self.config, shared + owned) for _ in stacks)
                                         for task in self.task_ids})
        self.shared_gates = nn.ModuleList(new_gate(self.config, shared + owned * len(self.task_ids))
                                          for _ in stacks[:-1])

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        tasks, levels = list(self.task_ids), len(self.shared_experts)
        # torch types a container's items as Module: level -> expert -> its layers, task -> level -> gate
        shared_experts = cast("Sequence[Sequence[nn.ModuleList]]", self.shared_experts)
        task_experts = cast("Mapping[str, Sequence[Sequence[nn.ModuleList]]]", self.task_experts)
        task_gates = cast("Mapping[str, Sequence[nn.Linear]]", self.task_gates)
        shared_in, task_in = hidden, dict.fromkeys(tasks, hidden)
        recorded = []
        for level in range(levels):
            last = level == levels - 1
            experts_of = [task] if last else tasks  # below the top, the shared gate mixes every task's experts
            gated = [task] if level >= levels - 2 else tasks  # the tasks whose input the next level reads
            shared_out = [run_layers(expert, shared_in, mask) for expert in shared_experts[level]]
            task_out = {owner: [run_layers(expert, task_in[owner], mask) for expert in task_experts[owner][level]]
                        for owner in experts_of}
            weights = {owner: gate_weights(task_gates[owner][level], task_in[owner]) for owner in gated}
            recorded.append(weights[task])
            task_in = {owner: mix(weights[owner], shared_out + task_out[owner]) for owner in gated}
            if not last:
                shared_weights = gate_weights(cast(nn.Linear, self.shared_gates[level]), shared_in)
                recorded.append(shared_weights)
                shared_in = mix(shared_weights, shared_out + [out for owner in tasks for out in task_out[owner]])
        self.record_gates(task, recorded, tokens)
        return task_in[task]

    def _experts(self, owners: list[str]) -> list[str]:
        return ([f"shared.{i}" for i in range(self.options.shared_experts)]
                + [f"{owner}.{i}" for owner in owners for i in range(self.options.task_experts)])

    def routing_labels(self, task: str) -> list[str]:
        levels, labels = len(self.shared_experts), []
        for level in range(levels):
            prefix = f"level{level + 1}/" if levels > 1 else ""
            labels += [prefix + expert for expert in self._experts([task])]
            if level < levels - 1:
                labels += [f"{prefix}shared_gate/{expert}" for expert in self._experts(list(self.task_ids))]
        return labels

    def copy_task(self, task: str, like: str) -> None:
        self.task_experts[task] = copy.deepcopy(self.task_experts[like])
        self.task_gates[task] = copy.deepcopy(self.task_gates[like])
        owned, shared = self.options.task_experts, self.options.shared_experts
        start = shared + list(self.task_ids).index(like) * owned
        rows = slice(start, start + owned)
        for level, gate in enumerate(cast("Sequence[nn.Linear]", self.shared_gates)):
            weight, bias = gate.weight.detach().clone(), gate.bias.detach().clone()
            bias[rows] -= math.log(2)
            grown = nn.utils.skip_init(nn.Linear, gate.in_features, gate.out_features + owned,
                                       device=weight.device, dtype=weight.dtype)
            with torch.no_grad():
                grown.weight.copy_(torch.cat([weight, weight[rows]]))
                grown.bias.copy_(torch.cat([bias, bias[rows]]))
            self.shared_gates[level] = grown
