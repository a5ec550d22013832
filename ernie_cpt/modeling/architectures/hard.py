"""Hard parameter sharing: every task goes through the whole shared encoder to its own head.

Caruana 1997, "Multitask Learning" (Machine Learning 28): the hidden layers are shared by all
tasks and only the output layers are task-specific. This is ERNIE 2.0 as published (Sun et al.
2020): one encoder, a task embedding row per task (``task_type_ids``), one head per task. It
folds into one ``ErnieModel`` exactly, so export writes a Hugging Face folder.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from ernie_cpt.modeling.architectures.base import ARCHITECTURES, Architecture

if TYPE_CHECKING:
    from transformers import ErnieModel
    from transformers.models.ernie.modeling_ernie import ErnieLayer

    from ernie_cpt.modeling.architectures import ArchitectureOptions


@ARCHITECTURES.register()
class HardSharing(Architecture):
    name = "hard"
    summary = "every layer shared by all tasks, a head per task (ERNIE 2.0 as published; exports as one ErnieModel)"
    folds = True

    def __init__(self, encoder: ErnieModel, task_ids: dict[str, int], sharing: ArchitectureOptions,
                 options: None = None) -> None:
        super().__init__(encoder.config, task_ids, sharing, options)
        self.encoder = encoder

    def word_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def encode(self, task: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"],
                           task_type_ids=self.task_type_ids(task, batch["input_ids"]))
        return out.last_hidden_state, out.pooler_output

    def shared_layer_weights(self) -> list[nn.Parameter]:
        weights = [cast("ErnieLayer", layer).output.dense.weight for layer in self.encoder.encoder.layer]
        return cast("list[nn.Parameter]", weights)  # torch types a Linear's weight as a Tensor

    def shared_parameters(self) -> list[nn.Parameter]:
        return list(self.encoder.parameters())

    def ernie_model(self) -> ErnieModel:
        return self.encoder
