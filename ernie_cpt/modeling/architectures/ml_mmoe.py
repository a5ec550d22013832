"""ML-MMoE: MMoE stacked over levels, the gates of each level mixing its experts for every next-level expert.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 5.1.2 (the multi-level MMoE
baseline of its Table 1), built on Ma et al. 2018, "Modeling Task Relationships in Multi-task
Learning with Multi-gate Mixture-of-Experts" (KDD), eq. 5-6.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.mmoe import MMoEOptions
from ernie_cpt.modeling.architectures.top_layers import (
    TopLayersArchitecture,
    copies,
    gate_weights,
    mix,
    new_gate,
    run_layers,
)
from ernie_cpt.modeling.options import ArchitectureOptions


def level_depths(layers: int, levels: int) -> list[int]:
    """How many of the top ``layers`` each of ``levels`` levels holds, bottom level first: equal shares,
    the lower levels one more where they do not divide (5 layers, 2 levels: [3, 2])."""
    return [layers // levels + (1 if level < layers % levels else 0) for level in range(levels)]


@ARCHITECTURES.register()
class MLMMoE(TopLayersArchitecture):
    """Multi-level MMoE (PLE's section 5.1.2 baseline) over the top K = ``--expert-layers`` layers.

    The top K layers are split into L = ``--levels`` levels (L <= K), bottom to top, each holding an
    equal share of the layers (the lower levels one more where K / L is not whole). Level l has
    E = ``--num-experts`` experts f_1^l..f_E^l, each a copy of the level's layers. With x the trunk's
    output (batch, tokens, hidden), every gate reads x, the block's input (the one selector all
    levels share, as in the paper and facebookresearch/AdaTT's ``MLMMoE``), per token:

        x_e^1     = x                                          every level-1 expert reads the block's input
        x_j^{l+1} = sum_e g_j^l(x)_e f_e^l(x_e^l)              l < L: one gate per next-level expert j
        y_t       = sum_e g_t(x)_e f_e^L(x_e^L)                the task's gate over the top level
        g(x)      = softmax(W x + b)                           (MMoE eq. 5-6 at every gate)

    where f_e^l(x_e^l) is expert e's layers applied to the whole sequence x_e^l (its attention sees
    every token) read at the token's position. The task's states are y_t. With L = 1 this is MMoE
    exactly (``mmoe``: the same experts and task gates, the same outputs). Every expert of every
    level runs on every batch: a forward pass costs E x K layers above the trunk, as MMoE's does,
    plus (L - 1) x E gates; the model holds (E - 1) x K layers more than hard sharing.

    The experts start as identical copies of the encoder's layers and every gate's weights sum to
    one, so the model starts equal to the encoder. ``routing()`` gives per task the mean weight of
    its gate over the top level's experts (``level<L>/expert.<e>``) and those of the lower levels'
    gates computed in its forward passes (``level<l>/gate.<j>/expert.<e>``), over its tokens; with
    one level, MMoE's ``expert.<e>``.

    ``add_task(name, id, like)``: the new task's gate is a copy of ``like``'s (default: the model's
    first task), so it starts with ``like``'s output. Raises UserError when ``--levels`` is more
    than ``--expert-layers`` (a level needs a layer).
    """

    name = "ml_mmoe"
    summary = "MMoE stacked over --levels levels of --num-experts experts in the top --expert-layers layers; each " \
              "lower level's gates mix its experts into every next-level expert (PLE's ML-MMoE, Tang et al. 2020)"
    options_class = MMoEOptions
    options: MMoEOptions

    @classmethod
    def check_options(cls, sharing: ArchitectureOptions, options: Any, tasks: list[str]) -> None:
        levels = cast(MMoEOptions, options or MMoEOptions()).levels
        if levels > sharing.expert_layers:
            raise UserError(f"--levels {levels} is more than --expert-layers {sharing.expert_layers}: every level "
                            f"of ml_mmoe holds at least one layer; lower --levels or raise --expert-layers")

    def build_top(self, layers: list[nn.Module]) -> None:
        experts, depths = self.options.num_experts, level_depths(len(layers), self.options.levels)
        starts = [sum(depths[:level]) for level in range(len(depths))]
        self.experts = nn.ModuleList(nn.ModuleList(copies(layers[start:start + depth]) for _ in range(experts))
                                     for start, depth in zip(starts, depths))
        self.expert_gates = nn.ModuleList(nn.ModuleList(new_gate(self.config, experts) for _ in range(experts))
                                          for _ in depths[1:])
        self.gates = nn.ModuleDict({task: new_gate(self.config, experts) for task in self.task_ids})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        # torch types a container's items as Module: level -> expert -> its layers; level -> next expert -> gate
        levels = cast("Sequence[Sequence[nn.ModuleList]]", self.experts)
        expert_gates = cast("Sequence[Sequence[nn.Linear]]", self.expert_gates)
        inputs = [hidden] * len(levels[0])
        recorded = []
        for level, experts in enumerate(levels[:-1]):
            outputs = [run_layers(expert, x, mask) for expert, x in zip(experts, inputs)]
            weights = [gate_weights(gate, hidden) for gate in expert_gates[level]]
            recorded += weights
            inputs = [mix(w, outputs) for w in weights]
        own = gate_weights(cast(nn.Linear, self.gates[task]), hidden)
        self.record_gates(task, [own, *recorded], tokens)
        return mix(own, [run_layers(expert, x, mask) for expert, x in zip(levels[-1], inputs)])

    def routing_labels(self, task: str) -> list[str]:
        levels, experts = len(self.experts), self.options.num_experts
        if levels == 1:
            return [f"expert.{e}" for e in range(experts)]
        return [f"level{levels}/expert.{e}" for e in range(experts)] + [
            f"level{level + 1}/gate.{j}/expert.{e}" for level in range(levels - 1) for j in range(experts)
            for e in range(experts)]

    def copy_task(self, task: str, like: str) -> None:
        self.gates[task] = copy.deepcopy(self.gates[like])
