"""The shared trunk and the top layers that the gated and cross-stitched architectures take over.

An architecture derived from :class:`TopLayersArchitecture` splits the encoder it is built from
(L layers; K = ``--expert-layers``) in two:

* the **trunk**: an ``ErnieModel`` of the bottom L - K layers with the encoder's embeddings
  (the task embedding included), shared by every task as in ERNIE;
* the **top K layers** (``transformers``' ``ErnieLayer``), which the subclass copies into experts
  or task columns. Every copy starts as the layer it copies, so the model starts from the built
  (or ``--init-from``) encoder, as sparse upcycling starts a mixture of experts from a dense
  checkpoint (Komatsuzaki et al. 2022, "Sparse Upcycling: Training Mixture-of-Experts from Dense
  Checkpoints", arXiv:2212.05055, ICLR 2023).

The encoder's pooler (``ErniePooler``: dense + tanh on the first token) stays one, shared, on the
states the task's head reads. The top layers use the trunk's attention mask
(``transformers.masking_utils.create_bidirectional_mask``).

Gates (MMoE, CGC, PLE) are linear maps of a token state to one logit per expert, then a softmax
(the papers' ``softmax(W x)``, with a bias as LibMTL's gates have), initialised as the encoder
initialises a linear layer: W ~ N(0, initializer_range), bias 0. Routing weights are summed per
task over the real (not padding) tokens of every training forward pass and averaged in
:meth:`TopLayersArchitecture.routing` over every process.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from ernie_cpt import distributed
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.base import Architecture, check_expert_layers

if TYPE_CHECKING:
    from transformers import ErnieConfig, ErnieModel
    from transformers.models.ernie.modeling_ernie import ErnieLayer

    from ernie_cpt.modeling.architectures import ArchitectureOptions


def copies(layers: list[nn.Module]) -> nn.ModuleList:
    """A new stack of deep copies of ``layers`` (same weights, own parameters)."""
    return nn.ModuleList(copy.deepcopy(layer) for layer in layers)


def run_layers(layers: nn.ModuleList, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``hidden`` (batch, tokens, hidden) through ``layers`` in turn, each called as ``layer(hidden, mask)``."""
    for layer in layers:
        hidden = layer(hidden, mask)
    return hidden


def new_gate(config: ErnieConfig, experts: int) -> nn.Linear:
    """A gate: hidden -> one logit per expert, W ~ N(0, initializer_range), bias 0."""
    gate = nn.Linear(config.hidden_size, experts)
    nn.init.normal_(gate.weight, std=config.initializer_range)
    nn.init.zeros_(gate.bias)
    return gate


def gate_weights(gate: nn.Linear, selector: torch.Tensor) -> torch.Tensor:
    """softmax(gate(x)) for every token state x of ``selector``: (batch, tokens, experts)."""
    return torch.softmax(gate(selector), dim=-1)


def mix(weights: torch.Tensor, outputs: list[torch.Tensor]) -> torch.Tensor:
    """sum_e weights[..., e] * outputs[e]: weights (batch, tokens, E), E outputs (batch, tokens, hidden)."""
    return torch.einsum("bte,ebth->bth", weights, torch.stack(outputs))


class TopLayersArchitecture(Architecture):
    """Tasks sharing the bottom L - K layers (``trunk``) and ``pooler``; a subclass decides what
    the top K layers become (:meth:`build_top`) and how a task's states flow through them
    (:meth:`top`). Raises UserError when K is outside 1..L."""

    options_used = ("expert_layers",)

    def __init__(self, encoder: ErnieModel, task_ids: dict[str, int], sharing: ArchitectureOptions,
                 options: Any = None) -> None:
        from transformers import ErnieModel

        super().__init__(encoder.config, task_ids, sharing, options)
        check_expert_layers(sharing, encoder.config.num_hidden_layers)
        kept = encoder.config.num_hidden_layers - sharing.expert_layers
        trunk_config = copy.deepcopy(encoder.config)
        trunk_config.num_hidden_layers = kept
        with torch.random.fork_rng(devices=[]):  # its random weights are replaced next: the run's RNG is untouched
            self.trunk = ErnieModel(trunk_config, add_pooling_layer=False)
        self.trunk.embeddings = encoder.embeddings
        self.trunk.encoder.layer = nn.ModuleList(encoder.encoder.layer[:kept])
        assert encoder.pooler is not None, "the encoder is built with its pooler"
        self.pooler = encoder.pooler
        self._routing_sums: dict[str, torch.Tensor] = {}
        self.build_top(list(encoder.encoder.layer[kept:]))

    @abstractmethod
    def build_top(self, layers: list[nn.Module]) -> None:
        """Make the experts or columns (copies of the encoder's top K ``layers``) and any gates."""

    @abstractmethod
    def top(self, task: str, hidden: torch.Tensor, mask: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor:
        """``task``'s states (batch, tokens, hidden) from the trunk's output ``hidden`` (same shape);
        ``mask`` is the layers' attention mask, ``tokens`` the attention mask (batch, tokens) of
        real tokens, for :meth:`record`."""

    @abstractmethod
    def routing_labels(self, task: str) -> list[str]:
        """The names of the routing weights :meth:`record` adds up for ``task``, in order."""

    @abstractmethod
    def copy_task(self, task: str, like: str) -> None:
        """Give the newly added ``task`` (already in ``task_ids``, last) the routing of ``like``."""

    def encode(self, task: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.masking_utils import create_bidirectional_mask

        hidden = self.trunk(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            token_type_ids=batch["token_type_ids"],
                            task_type_ids=self.task_type_ids(task, batch["input_ids"])).last_hidden_state
        mask = create_bidirectional_mask(config=self.trunk.config, inputs_embeds=hidden,
                                         attention_mask=batch["attention_mask"])
        states = self.top(task, hidden, mask, batch["attention_mask"])
        return states, self.pooler(states)

    def word_embeddings(self) -> nn.Embedding:
        return self.trunk.get_input_embeddings()

    def shared_layer_weights(self) -> list[nn.Parameter]:
        """The output weight of each trunk layer; the word embeddings when K = L (no layer is shared)."""
        layers = self.trunk.encoder.layer
        weights = [cast("ErnieLayer", layer).output.dense.weight for layer in layers] if len(layers) \
            else [self.word_embeddings().weight]
        return cast("list[nn.Parameter]", weights)  # torch types a Linear's weight as a Tensor

    def shared_parameters(self) -> list[nn.Parameter]:
        """The trunk (embeddings and bottom layers) and the pooler."""
        return [*self.trunk.parameters(), *self.pooler.parameters()]

    def record_gates(self, task: str, weights: list[torch.Tensor], tokens: torch.Tensor) -> None:
        """Add the gate weights (each (batch, tokens, experts)) of one forward pass of ``task``,
        summed over its real tokens (``tokens``: (batch, tokens), 1 = real); training only."""
        if self.training:
            real = tokens.unsqueeze(-1).double()
            self.record(task, torch.cat([(w.detach().double() * real).sum((0, 1)) for w in weights]), real.sum())

    def record(self, task: str, sums: torch.Tensor, count: torch.Tensor) -> None:
        """Add ``sums`` (1-D, in :meth:`routing_labels` order) over ``count`` items to ``task``'s
        running routing sums (training forward passes only)."""
        if not self.training:
            return
        entry = torch.cat([sums.detach().double(), count.detach().double().reshape(1)])
        self._routing_sums[task] = self._routing_sums[task] + entry if task in self._routing_sums else entry

    def routing(self) -> dict[str, dict[str, float]]:
        """Per task trained since the last call, the mean of each routing weight over its items
        (tokens for gates, forward passes for cross-stitch weights), over every process; then
        reset. Every process must call it at the same step (one all-reduce)."""
        tasks = list(self.task_ids)
        sizes = [len(self.routing_labels(task)) + 1 for task in tasks]
        device = self.pooler.dense.weight.device
        flat = torch.cat([self._routing_sums.get(task, torch.zeros(size, dtype=torch.float64, device=device))
                          for task, size in zip(tasks, sizes)])
        self._routing_sums = {}
        distributed.all_reduce_sum(flat)
        means = {}
        for task, chunk in zip(tasks, flat.split(sizes)):
            *sums, count = chunk.tolist()
            if count > 0:
                means[task] = {label: value / count for label, value in zip(self.routing_labels(task), sums)}
        return means

    def add_task(self, task: str, task_id: int, like: str | None = None) -> None:
        """Route the new ``task`` as ``like`` (default: the first task of the model) is routed; see
        the subclass's docstring. Raises UserError when ``task`` is routed already or ``like`` is not."""
        if task in self.task_ids:
            raise UserError(f"task {task} is already in this model ({', '.join(self.task_ids)}); give the new "
                            f"task another name")
        like = next(iter(self.task_ids)) if like is None else like
        if like not in self.task_ids:
            raise UserError(f"cannot route the new task {task} like {like}: the model's tasks are "
                            f"{', '.join(self.task_ids)}")
        super().add_task(task, task_id, like)
        self.copy_task(task, like)
        self._routing_sums = {}
