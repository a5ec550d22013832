"""The architecture seam: how the tasks' inputs flow through shared and task-specific parameters.

An architecture is an ``nn.Module`` registered by name in ``ARCHITECTURES`` (one file each,
chosen with ``--architecture NAME``), with a one-line ``summary`` and, where it has options of its
own, an ``options_class`` (a dataclass of ``option`` fields, e.g. ``mmoe.MMoEOptions``): it is built
as ``cls(encoder, task_ids, sharing, options)`` from a full ``ErnieModel`` (new, resumed or from
``--init-from``), the seam's ``ArchitectureOptions`` and an instance of its ``options_class`` (None
without one), and decides what the top ``--expert-layers`` layers become; the layers below stay
shared by every task, as in ERNIE. Its capabilities are class attributes: ``options_used`` (the
seam options it reads: ``("expert_layers",)``) and ``folds`` (it is one ``ErnieModel``). It owns:

* ``encode(task, batch)``: the token states (batch, tokens, hidden) and pooled [CLS] state
  (batch, hidden) the task's head sees; ``forward(task, batch)`` adds the head and its loss;
* ``shared_parameters()``: the parameters every task's loss reaches (GradNorm's last shared
  layer is the last of ``shared_layer_weights()``; the gradient-level methods use them all);
* ``routing()``: per task, the mean weight each expert (or column) got since the last call,
  for the logs (empty for hard sharing);
* ``add_task(name, task_id, like)``: routing for a task the architecture was not built with
  (a downstream task in fine-tuning), initialised from the task ``like``;
* ``check_options(sharing, options, tasks)``: the checks of its options against the run's tasks and
  the seam's options (a classmethod, run before any data is read);
* ``ernie_model()``: the one ``ErnieModel`` the architecture is, where it folds exactly
  (hard sharing), else None: export then writes the architecture's own folder;
* optionally ``aux_loss()``: a penalty of the architecture's own (sluice's subspace orthogonality,
  soft sharing's tie between the task columns), a scalar that the trainer adds to every optimizer
  step's loss, once and unweighted; None (the default) where there is none.

The trainer sees only this interface and never names an architecture.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, cast

import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.heads import Head, head_name
from ernie_cpt.modeling.options import ArchitectureOptions
from ernie_cpt.modeling.task_output import TaskOutput
from ernie_cpt.registry import Registry

if TYPE_CHECKING:  # transformers loads in seconds: --help imports this module, building a model loads it
    from transformers import ErnieConfig, ErnieModel


class Architecture(nn.Module, ABC):
    """Tasks on one encoder. ``heads`` maps each task to its head; ``task_ids`` to its row of the
    task embedding; ``sharing`` holds the seam's options, ``options`` the architecture's own (an
    instance of ``options_class``, None without one). A subclass sets ``name`` (its registered
    name), ``summary`` (one line for ``--help``), ``options_class`` where it has options,
    ``options_used`` (the ``ArchitectureOptions`` fields it reads besides the name) and ``folds``."""

    name: ClassVar[str]
    summary: ClassVar[str]
    options_class: ClassVar[type | None] = None
    options_used: ClassVar[tuple[str, ...]] = ()
    folds: ClassVar[bool] = False  # True: ernie_model() is the whole model (export writes one ErnieModel)

    def __init__(self, config: ErnieConfig, task_ids: dict[str, int], sharing: ArchitectureOptions,
                 options: Any = None) -> None:
        super().__init__()
        self.config = config
        self.task_ids = dict(task_ids)
        self.sharing = sharing
        self.options = options if options is not None or self.options_class is None else self.options_class()
        self.check_options(sharing, self.options, list(task_ids))

    @classmethod
    def check_options(cls, sharing: ArchitectureOptions, options: Any, tasks: list[str]) -> None:
        """Raise UserError where the architecture's ``options`` (an ``options_class`` instance, or None)
        cannot work with the seam's ``sharing`` or the run's ``tasks`` (a task graph naming an unknown task,
        more levels than layers); the config checks it before anything is read, the constructor again."""

    def add_head(self, task: str, head: Head) -> None:
        """Give ``task`` its head (the builder calls this after the architecture is made)."""
        if not hasattr(self, "heads"):
            self.heads = nn.ModuleDict()
        self.heads[task] = head

    @property
    def num_labels(self) -> dict[str, int]:
        return {task: cast(Head, head).num_labels for task, head in self.heads.items()}

    def task_type_ids(self, task: str, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.full_like(input_ids, self.task_ids[task])

    @abstractmethod
    def word_embeddings(self) -> nn.Embedding:
        """The word embedding matrix (vocabulary, hidden), which the masked-LM head is tied to."""

    @abstractmethod
    def encode(self, task: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence_output (batch, tokens, hidden), pooled_output (batch, hidden)) for ``task``."""

    @abstractmethod
    def shared_layer_weights(self) -> list[nn.Parameter]:
        """The output weight of each layer every task shares, bottom to top (GradNorm's W is the last)."""

    @abstractmethod
    def shared_parameters(self) -> list[nn.Parameter]:
        """Every parameter all tasks' losses reach (embeddings, shared layers; not heads or experts)."""

    def forward(self, task: str, batch: dict[str, torch.Tensor]) -> TaskOutput:
        sequence_output, pooled_output = self.encode(task, batch)
        return cast(Head, self.heads[task]).task_output(sequence_output, pooled_output, batch)

    def routing(self) -> dict[str, dict[str, float]]:
        """Per task, the mean routing weight of each expert or column since the last call (then reset)."""
        return {}

    def add_task(self, task: str, task_id: int, like: str | None = None) -> None:
        """Route a new task (fine-tuning): it gets ``task_id`` and, where the architecture has
        task-specific routing, a copy of task ``like``'s (or the documented default)."""
        self.task_ids[task] = task_id

    def aux_loss(self) -> torch.Tensor | None:
        """A penalty the architecture adds to the training loss (a scalar with its graph), or None.

        It must be a function of the parameters alone, so that every process computes the same value
        (under DDP its gradient, averaged over the processes, is its own). The trainer calls it in the
        forward pass of every micro-batch (inside DistributedDataParallel, which then sees the
        parameters it reaches), outside autocast, and adds it, divided by the micro-batches of the
        step, to the combined loss: once per optimizer step, not weighted by a loss weighting. With a
        gradient-level weighting its gradient is added to the combined update of every parameter it
        reaches. It is logged as ``aux_loss`` (``train/aux_loss`` in TensorBoard); the logged ``loss``
        stays the tasks' own. Fine-tuning a single downstream task (``finetune --train``) does not add it."""
        return None

    def ernie_model(self) -> ErnieModel | None:
        """The single ErnieModel this architecture equals exactly, or None when it does not fold."""
        return None

    def describe(self) -> dict[str, Any]:
        """Everything besides the weights and the encoder config that ``build_model`` needs to rebuild
        this model (``ernie_cpt.modeling.builder.model_from_description``): the seam's options
        (``architecture``, ``expert_layers``) and the architecture's own (``num_experts``, ...),
        ``task_ids`` (task -> row of the task embedding, in the order the tasks were built or added)
        and ``heads`` (task -> its head's registered name and ``num_labels``). JSON-serialisable;
        export and the run config record it."""
        return {**self.option_values(), "architecture": self.name, "task_ids": dict(self.task_ids),
                "heads": {task: {"head": head_name(head), "num_labels": head.num_labels}
                          for task, head in getattr(self, "heads", {}).items()}}


    def option_values(self) -> dict[str, Any]:
        """The seam's options and the architecture's own, by name (flat, as the flags)."""
        own = dataclasses.asdict(self.options) if self.options is not None else {}
        return {**dataclasses.asdict(self.sharing), **own}


ARCHITECTURES: Registry[type[Architecture]] = Registry("architecture", reserved=("all",))  # compare's "every one"


def check_expert_layers(options: ArchitectureOptions, num_layers: int) -> None:
    """--expert-layers must be between 1 and the encoder's ``num_layers`` where the architecture reads
    it; a UserError otherwise."""
    if "expert_layers" not in ARCHITECTURES.get(options.architecture).options_used:
        return
    if not 1 <= options.expert_layers <= num_layers:
        raise UserError(f"--expert-layers {options.expert_layers} is outside 1..{num_layers}, the encoder's "
                        f"layers; lower it or use a larger --model-size / --num-layers")
