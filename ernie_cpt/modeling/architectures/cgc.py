"""CGC: shared experts and experts owned by each task; a task's gate mixes its own and the shared.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 4.2 (Customized Gate Control). The
experts and gates are built level by level, so PLE (``ple``, section 4.3) is CGC stacked: the same
code with one level per layer, and the same options.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from ernie_cpt.errors import UserError
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
class CGCOptions:
    """Architectures cgc and ple: their experts"""

    shared_experts: int = option(2, "cgc/ple: experts shared by all tasks (per level)", valid=Range(0, 64))
    task_experts: int = option(1, "cgc/ple: experts owned by each task (per level)", valid=Range(0, 64))

    def __post_init__(self) -> None:
        check_ranges(self)
        if self.shared_experts + self.task_experts < 1:
            raise UserError("--shared-experts and --task-experts are both 0: a gate needs at least one expert; "
                            "raise either")


@ARCHITECTURES.register()
class CGC(TopLayersArchitecture):
    """Customized Gate Control (Tang et al. 2020, eq. 2-4): the single-level form of PLE.

    The top K = ``--expert-layers`` layers become S = ``--shared-experts`` shared experts and
    T_e = ``--task-experts`` experts owned by each task, each a copy of those K layers. Task t's
    gate weighs only the shared experts and t's own, per token state x of the trunk's output:

        y_t(x) = sum_e g_t(x)_e E_e(x)    over e in shared + t's,    g_t(x) = softmax(W_t x + b_t)

    Another task's experts never reach t: a forward pass runs S + T_e expert stacks. ``routing()``
    gives per task the mean gate weight of ``shared.<i>`` and ``<task>.<i>``.

    ``add_task(name, id, like)``: the new task gets copies of ``like``'s experts and gate (default
    ``like``: the model's first task), so its output starts equal to ``like``'s.
    """

    name = "cgc"
    summary = "--shared-experts experts shared by all tasks and --task-experts owned by each, each a copy of the " \
              "top --expert-layers layers; a task's gate mixes its own and the shared (Tang et al. 2020)"
    options_class = CGCOptions
    options: CGCOptions

    def level_depths(self) -> list[int]:
        """How many of the top layers each level's experts hold, bottom level first: one level of all K."""
        return [self.sharing.expert_layers]

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
