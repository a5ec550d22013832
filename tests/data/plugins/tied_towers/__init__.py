"""A plugin architecture: towers of the top layers tied by an l2 penalty in each task's loss.

A test fixture (ernie-cpt's own ``soft_sharing`` is the full method, with its penalty on the seam's
``aux_loss``); this one adds its penalty to each task's loss, as a third-party package could.

Duong, Cohn, Bird & Cook 2015, "Low Resource Dependency Parsing: Cross-lingual Parameter Sharing in a
Neural Network Parser" (ACL): each task has its own parameters, and an l2 penalty on their distance
keeps them close (soft sharing, as opposed to hard sharing). Here each task's tower is a copy of the
encoder's top --expert-layers layers over a shared trunk, and a task's loss gains lambda times the
squared l2 distance of its tower from the towers' mean, lambda = --tied-towers-weight.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from ernie_cpt.modeling.architectures import ARCHITECTURES, TaskOutput
from ernie_cpt.modeling.architectures.top_layers import TopLayersArchitecture, copies, run_layers
from ernie_cpt.options import Range, option


@dataclass
class TiedTowersOptions:
    """Architecture tied_towers"""

    tied_towers_weight: float = option(0.01, "tied_towers: lambda, the weight of the squared l2 distance of a "
                                       "task's tower from the towers' mean in its loss", valid=Range(0, 100))


@ARCHITECTURES.register()
class TiedTowers(TopLayersArchitecture):
    name = "tied_towers"
    summary = "a tower of the top --expert-layers layers per task, kept close by an l2 penalty (Duong et al. 2015)"
    options_class = TiedTowersOptions

    def build_top(self, layers: list[nn.Module]) -> None:
        self.towers = nn.ModuleDict({task: copies(layers) for task in self.task_ids})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        return run_layers(self.towers[task], hidden, mask)

    def distance(self, task: str) -> torch.Tensor:
        """The squared l2 distance of ``task``'s tower from the mean of every task's tower."""
        towers = [list(tower.parameters()) for tower in self.towers.values()]
        own = list(self.towers[task].parameters())
        return sum(((p - torch.stack(same).mean(0)) ** 2).sum() for p, *same in zip(own, *towers))

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        out = super().forward(task, batch)
        return dataclasses.replace(out, loss=out.loss + self.options.tied_towers_weight * self.distance(task))

    def routing_labels(self, task: str) -> list[str]:
        return []

    def copy_task(self, task: str, like: str) -> None:
        self.towers[task] = copy.deepcopy(self.towers[like])
