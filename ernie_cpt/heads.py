"""Task heads on the shared encoder. Each returns ``(logits, labels)`` of what it scores only."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import ErnieConfig
from transformers.models.ernie.modeling_ernie import ErniePredictionHeadTransform

IGNORE_INDEX = -100


class MaskedLMHead(nn.Module):
    """BERT's MLM head (dense + activation + LayerNorm, then the vocabulary projection) with the
    projection tied to the word embeddings (Devlin et al. 2019). Logits are computed only at
    target positions, never over the whole sequence."""

    def __init__(self, config: ErnieConfig, word_embeddings: nn.Embedding) -> None:
        super().__init__()
        self.transform = ErniePredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # A tuple keeps the tied embedding out of this module's parameters and state dict.
        self._tied = (word_embeddings,)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor | None,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = labels != IGNORE_INDEX
        hidden = self.transform(sequence_output[targets])
        return F.linear(hidden, self._tied[0].weight, self.bias), labels[targets]


class TokenClassificationHead(nn.Module):
    """Dropout and a linear classifier on every labelled token (BERT's token classifier)."""

    def __init__(self, config: ErnieConfig, num_labels: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor | None,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        targets = labels != IGNORE_INDEX
        return self.classifier(self.dropout(sequence_output[targets])), labels[targets]


class SequenceClassificationHead(nn.Module):
    """Dropout and a linear classifier on the pooled [CLS] state (BERT's sequence classifier)."""

    def __init__(self, config: ErnieConfig, num_labels: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(self.dropout(pooled_output)), labels
