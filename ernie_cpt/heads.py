"""Task heads on the shared encoder. Each takes the encoder's outputs and the batch (its
``labels``, and for pair heads its ``token_type_ids`` and ``attention_mask``) and returns
``(logits, labels)`` of what it scores only."""

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
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
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
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        targets = labels != IGNORE_INDEX
        return self.classifier(self.dropout(sequence_output[targets])), labels[targets]


class SequenceClassificationHead(nn.Module):
    """Dropout and a linear classifier on the pooled [CLS] state (BERT's sequence classifier)."""

    def __init__(self, config: ErnieConfig, num_labels: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(self.dropout(pooled_output)), batch["labels"]


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


class SentencePairHead(nn.Module):
    """A classifier on the pooled [CLS] state and on the two segments compared: with u and v the
    mean token states of segment A (token type 0, [CLS] left out) and segment B (token type 1),
    the features are ``[cls, u, v, |u - v|, u * v]``, the pair features of InferSent (Conneau et
    al. 2017, "Supervised Learning of Universal Sentence Representations from Natural Language
    Inference Data") and Sentence-BERT (Reimers & Gurevych 2019). The [CLS] state alone must
    learn, through attention, which tokens of A recur in B before it can tell related segments
    from unrelated ones, and a randomly initialised encoder does not learn that in a short run;
    ``u * v`` gives that comparison from the first step."""

    def __init__(self, config: ErnieConfig, num_labels: int) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(5 * config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        real = batch["attention_mask"].bool()
        first = real & (batch["token_type_ids"] == 0)
        first[:, 0] = False
        u = _masked_mean(sequence_output, first)
        v = _masked_mean(sequence_output, real & (batch["token_type_ids"] == 1))
        features = torch.cat([pooled_output, u, v, (u - v).abs(), u * v], dim=-1)
        return self.classifier(self.dropout(features)), batch["labels"]
