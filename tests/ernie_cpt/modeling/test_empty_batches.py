"""A batch with nothing to score (no target token, no labelled word) costs nothing: every head's loss
on it is 0 with zero gradients, never the NaN of a mean over no item, and evaluation stays finite."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import ErnieConfig

from ernie_cpt.modeling.heads import HEADS, build_head
from pretasks.base import IGNORE_INDEX

CONFIG = ErnieConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32)


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_every_head_costs_nothing_on_an_empty_batch(name, reduction):
    head = build_head(name, CONFIG, 3, torch.nn.Embedding(50, 16))
    logits = torch.zeros(0, head.num_labels, requires_grad=True)

    loss = head.loss(logits, torch.zeros(0, dtype=torch.long), reduction=reduction)
    loss.backward()

    assert loss.item() == 0.0 and math.isfinite(loss.item())
    assert head.count(torch.zeros(0, dtype=torch.long)) == 0


def test_a_masked_lm_batch_without_targets_has_zero_loss_and_zero_gradients():
    embeddings = torch.nn.Embedding(50, 16)
    head = build_head("masked_lm", CONFIG, 50, embeddings)
    states = torch.randn(2, 5, 16, requires_grad=True)
    batch = {"labels": torch.full((2, 5), IGNORE_INDEX)}

    logits, labels = head(states, states[:, 0], batch)
    loss = head.loss(logits, labels)
    loss.backward()

    assert logits.shape == (0, 50) and loss.item() == 0.0
    assert torch.count_nonzero(states.grad) == 0
    assert all(p.grad is None or torch.count_nonzero(p.grad) == 0 for p in head.parameters())
