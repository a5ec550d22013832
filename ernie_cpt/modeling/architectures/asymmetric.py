"""Asymmetric sharing: a column per task; a task also reads the outputs of the tasks it names.

Tang, Liu, Zhao & Gong 2020, "Progressive Layered Extraction (PLE): A Novel Multi-Task Learning
(MTL) Model for Personalized Recommendations" (RecSys), section 3.2 and Figure 1b: the bottom
layers are shared asymmetrically, which task's representation another reads follows the tasks'
relationship, and the outputs are fused by concatenation, sum- or average-pooling.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.base import ARCHITECTURES
from ernie_cpt.modeling.architectures.top_layers import (
    TopLayersArchitecture,
    block_shares,
    copies,
    reading_first,
    run_layers,
)
from ernie_cpt.modeling.options import ArchitectureOptions
from ernie_cpt.options import check_ranges, option

FUSIONS = ("mean", "sum", "concat")


@dataclass
class AsymmetricOptions:
    """Architecture asymmetric: which tasks' outputs each task reads, and how they are fused"""

    asymmetric_sources: list[str] = option([], "asymmetric: the outputs each task also reads, as READER:SOURCE "
                                           "pairs (capitalization:knowledge_masking,sentence_reordering:"
                                           "capitalization; a reader of several sources is listed once per source; "
                                           "READER: alone says it reads none). A task reads its sources' outputs "
                                           "after their own fusion, so the pairs must not form a cycle; a task not "
                                           "named as a reader reads only its own column. Default: every task but "
                                           "the first reads the first task's column")
    asymmetric_fusion: str = option("mean", "asymmetric: how a task fuses its own column's output with its sources' "
                                    "outputs: mean or sum (of the states), or concat (the states concatenated, "
                                    "then a learned projection to the hidden size, started as the own column)",
                                    choices=FUSIONS)

    def __post_init__(self) -> None:
        check_ranges(self)
        pairs(self.asymmetric_sources)


def pairs(items: list[str]) -> list[tuple[str, str | None]]:
    """The (reader, source) pairs of --asymmetric-sources items (source None for ``READER:``). Raises
    UserError for an item that is not READER:SOURCE or that is listed twice."""
    found: list[tuple[str, str | None]] = []
    for item in items:
        reader, colon, source = (part.strip() for part in item.partition(":"))
        if not colon or not reader or ":" in source:
            raise UserError(f"--asymmetric-sources item '{item}' is not READER:SOURCE; write e.g. "
                            f"capitalization:knowledge_masking (task capitalization reads knowledge_masking's output)")
        if (reader, source or None) in found:
            raise UserError(f"--asymmetric-sources lists {item} twice; list every pair once")
        found.append((reader, source or None))
    return found


def sources_of(items: list[str], tasks: list[str]) -> dict[str, list[str]]:
    """Each of ``tasks`` -> the tasks whose outputs it reads, in the order given (the default without
    ``items``: every task but the first reads the first). Raises UserError for a task that is not one of
    ``tasks`` or for a cycle, naming the fix."""
    given = pairs(items)
    graph: dict[str, list[str]] = {task: [] for task in tasks}
    if not given:
        return {task: tasks[:1] if i else [] for i, task in enumerate(tasks)}
    for reader, source in given:
        for name in (reader, source):
            if name is not None and name not in graph:
                raise UserError(f"--asymmetric-sources names {name}, which is not a task of this run "
                                f"({', '.join(tasks)}); name the run's tasks")
        if source is not None:
            graph[reader].append(source)
    if cycle := find_cycle(graph):
        raise UserError(f"--asymmetric-sources has a cycle: {' reads '.join(cycle)} (a task reads its sources' "
                        f"fused outputs, which cannot include its own); remove one of these pairs")
    return graph


def find_cycle(graph: Mapping[str, list[str]]) -> list[str]:
    """A cycle of ``graph`` (task -> the tasks it reads) as [a, b, ..., a], or [] when it has none."""
    done: set[str] = set()

    def visit(task: str, path: list[str]) -> list[str]:
        if task in path:
            return [*path[path.index(task):], task]
        if task in done:
            return []
        for source in graph[task]:
            if cycle := visit(source, [*path, task]):
                return cycle
        done.add(task)
        return []

    return next((cycle for task in graph if (cycle := visit(task, []))), [])


def explicit(graph: Mapping[str, list[str]]) -> list[str]:
    """--asymmetric-sources items that give exactly ``graph`` (a graph without pairs: ``FIRST:``)."""
    items = [f"{reader}:{source}" for reader, sources in graph.items() for source in sources]
    return items or [f"{next(iter(graph))}:"]


@ARCHITECTURES.register()
class Asymmetric(TopLayersArchitecture):
    """Asymmetric sharing (Tang et al. 2020, Fig. 1b) over the top K = ``--expert-layers`` layers.

    Every task t has its own column C_t, a copy of the top K layers, on the trunk's output x
    (batch, tokens, hidden). Task t also reads the outputs r_s of its sources s in S_t
    (``--asymmetric-sources``; default: every task but the first reads the first task), fused
    with its own column's by ``--asymmetric-fusion``, per token:

        mean:    r_t = (C_t(x) + sum_{s in S_t} r_s) / (1 + |S_t|)
        sum:     r_t = C_t(x) + sum_{s in S_t} r_s
        concat:  r_t = W_t [C_t(x); r_s1; ...; r_s|S_t|] + b_t      (W_t: hidden x (1 + |S_t|) hidden)

    and the task's head reads r_t (r_t = C_t(x) for a task without sources). A task reads its
    sources' fused outputs, so what it reads follows the graph transitively and the graph must be
    acyclic (a cycle, or a task that is not the run's, is a UserError naming the fix). W_t starts
    as [I, 0, ...] and b_t as 0; every column starts as the encoder's top layers, so with mean or
    concat the model starts equal to the encoder, and with sum task t's states start at (number of
    columns it reads, transitively) times the encoder's. A forward pass of t runs the columns of t
    and of every task it reads (K layers each); the model holds (T - 1) x K layers more than hard
    sharing. Gradients flow from t's loss into its sources' columns, never back: the asymmetry.

    ``routing()`` gives per task the weight of each output it fuses, ``<task>`` (its own column) and
    ``<source>``: 1 / (1 + |S_t|) each for mean, 1 for sum, and for concat the share of W_t's weight
    on each block (||W_t,block||_F over their sum), averaged over its forward passes.

    ``add_task(name, id, like)``: the new task gets a copy of ``like``'s column and projection and
    reads ``like``'s sources (default ``like``: the model's first task), so its output starts equal
    to ``like``'s; ``--asymmetric-sources`` in ``describe()`` becomes the whole graph, new task included.
    """

    name = "asymmetric"
    summary = "a column per task, each a copy of the top --expert-layers layers; a task also reads the outputs of " \
              "the tasks --asymmetric-sources names, fused by mean, sum or concat (PLE's asymmetric sharing)"
    options_class = AsymmetricOptions
    options: AsymmetricOptions

    @classmethod
    def check_options(cls, sharing: ArchitectureOptions, options: Any, tasks: list[str]) -> None:
        sources_of(cast(AsymmetricOptions, options or AsymmetricOptions()).asymmetric_sources, tasks)

    def build_top(self, layers: list[nn.Module]) -> None:
        self.sources = sources_of(self.options.asymmetric_sources, list(self.task_ids))
        self.columns = nn.ModuleDict({task: copies(layers) for task in self.task_ids})
        self.projections = nn.ModuleDict({task: reading_first(self.config, 1 + len(sources))
                                          for task, sources in self.sources.items()
                                          if sources and self.options.asymmetric_fusion == "concat"})

    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        columns = cast("Mapping[str, nn.ModuleList]", self.columns)  # torch types a container's items as Module
        fused: dict[str, torch.Tensor] = {}

        def output(reader: str) -> torch.Tensor:  # r_reader, each task's computed once
            if reader not in fused:
                reads = [run_layers(columns[reader], hidden, mask), *(output(s) for s in self.sources[reader])]
                fused[reader] = self.fuse(reader, reads)
            return fused[reader]

        if self.training:
            self.record(task, self.read_weights(task), torch.ones((), device=hidden.device))
        return output(task)

    def fuse(self, reader: str, reads: list[torch.Tensor]) -> torch.Tensor:
        """``reader``'s output from its own column's and its sources' (each (batch, tokens, hidden))."""
        if len(reads) == 1:
            return reads[0]
        fusion = self.options.asymmetric_fusion
        if fusion == "concat":
            return cast(nn.Linear, self.projections[reader])(torch.cat(reads, dim=-1))
        total = torch.stack(reads).sum(0)
        return total / len(reads) if fusion == "mean" else total

    def read_weights(self, task: str) -> torch.Tensor:
        """The weight of each output ``task`` fuses, in :meth:`routing_labels` order."""
        blocks = 1 + len(self.sources[task])
        device = self.pooler.dense.weight.device
        if self.options.asymmetric_fusion == "concat" and blocks > 1:
            return block_shares(cast(nn.Linear, self.projections[task]), blocks)
        return torch.full((blocks,), 1 / blocks if self.options.asymmetric_fusion == "mean" else 1.0, device=device)

    def routing_labels(self, task: str) -> list[str]:
        return [task, *self.sources[task]]

    def copy_task(self, task: str, like: str) -> None:
        self.columns[task] = copy.deepcopy(self.columns[like])
        self.sources[task] = list(self.sources[like])
        if like in self.projections:
            self.projections[task] = copy.deepcopy(self.projections[like])
        self.options = dataclasses.replace(self.options, asymmetric_sources=explicit(self.sources))
