"""The chunked linear + cross-entropy of the masked-LM head is the unchunked one (value, gradients,
predictions), and never makes a (rows, vocabulary) tensor of more rows than one chunk."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import ErnieConfig

from ernie_cpt.modeling.heads import build_head
from ernie_cpt.modeling.linear_cross_entropy import chunk_rows, linear_cross_entropy
from pretasks.base import IGNORE_INDEX

VOCAB, HIDDEN = 97, 6  # HIDDEN below the rows of a chunk: the transposed weight (HIDDEN, VOCAB) is no logits


def _inputs(rows: int, seed: int = 0, bias: bool = True) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, HIDDEN, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(VOCAB, HIDDEN, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(VOCAB, generator=g, dtype=torch.float64, requires_grad=True) if bias else None
    return hidden, weight, b, torch.randint(VOCAB, (rows,), generator=g)


def _gradients(loss: torch.Tensor, *tensors: torch.Tensor | None) -> list[torch.Tensor]:
    used = [t for t in tensors if t is not None]
    return list(torch.autograd.grad(loss, used))


class LargestLogits(TorchDispatchMode):
    """Records the most rows of any tensor with ``VOCAB`` columns that an operator makes (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor) and t.dim() == 2 and t.shape[1] == VOCAB:
                self.rows = max(self.rows, t.shape[0])
        return out


@pytest.mark.parametrize("rows", [1, 7, 40, 41])
@pytest.mark.parametrize("chunk_elements", [1, VOCAB * 3, VOCAB * 40, 10**9])
@pytest.mark.parametrize("bias", [True, False])
def test_value_gradients_and_predictions_are_the_unchunked_ones(rows, chunk_elements, bias):
    hidden, weight, b, labels = _inputs(rows, seed=rows, bias=bias)
    logits = F.linear(hidden, weight, b)
    expected = F.cross_entropy(logits, labels, reduction="sum")

    loss, predictions = linear_cross_entropy(hidden, weight, b, labels, chunk_elements)

    torch.testing.assert_close(loss, expected.float())
    assert predictions.tolist() == logits.argmax(-1).tolist()
    for ours, theirs in zip(_gradients(loss, hidden, weight, b), _gradients(expected, hidden, weight, b)):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-5, atol=1e-6)


def test_the_mean_loss_and_its_gradients_through_the_masked_lm_head_are_those_of_its_logits():
    config = ErnieConfig(vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=12)
    embeddings = torch.nn.Embedding(VOCAB, HIDDEN)
    head = build_head("masked_lm", config, VOCAB, embeddings)
    torch.nn.init.normal_(head.bias)
    states = torch.randn(3, 40, HIDDEN, requires_grad=True)
    labels = torch.randint(VOCAB, (3, 40)).masked_fill(torch.rand(3, 40) < 0.5, IGNORE_INDEX)
    batch = {"labels": labels}

    out = head.task_output(states, states[:, 0], batch)
    logits, scored = head(states, states[:, 0], batch)
    expected = F.cross_entropy(logits, scored)

    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.loss_sum, expected * len(scored))
    assert out.predictions.tolist() == logits.argmax(-1).tolist() and torch.equal(out.logits, logits)
    assert head.correct(out.predictions, out.labels) == int((logits.argmax(-1) == scored).sum())
    parameters = [states, embeddings.weight, head.bias, *head.transform.parameters()]
    for ours, theirs in zip(torch.autograd.grad(out.loss, parameters), torch.autograd.grad(expected, parameters)):
        torch.testing.assert_close(ours, theirs)
    with torch.no_grad():  # evaluation: no gradients kept, the same numbers
        torch.testing.assert_close(head.task_output(states, states[:, 0], batch).loss, expected)


def test_the_gradients_kept_from_the_forward_pass_are_scaled_by_the_loss_s_own_gradient():
    """A weighting scales a task's loss, and gradient-level methods take one backward pass per task, keeping
    the graph: the gradients made in the forward pass are those of the scaled loss, every time."""
    hidden, weight, b, labels = _inputs(41, seed=3)
    expected = F.cross_entropy(F.linear(hidden, weight, b), labels, reduction="sum")
    loss, _ = linear_cross_entropy(hidden, weight, b, labels, VOCAB * 5)
    for scale in (0.3, -2.0):
        ours = torch.autograd.grad(loss * scale, (hidden, weight, b), retain_graph=True)
        theirs = torch.autograd.grad(expected * scale, (hidden, weight, b), retain_graph=True)
        for mine, exact in zip(ours, theirs):
            torch.testing.assert_close(mine, exact, rtol=1e-5, atol=1e-6)


def test_under_autocast_the_products_take_its_precision_and_the_gradients_stay_close():
    """bfloat16 autocast (on the CPU here, as the trainer's on CUDA): the loss and gradients are autograd's
    through the same autocast projection, to bfloat16's precision, and have the inputs' dtypes."""
    g = torch.Generator().manual_seed(5)
    hidden = torch.randn(37, 16, generator=g, requires_grad=True)
    weight = (torch.randn(VOCAB, 16, generator=g) / 4).requires_grad_()
    b = torch.zeros(VOCAB, requires_grad=True)
    labels = torch.randint(VOCAB, (37,), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = linear_cross_entropy(hidden, weight, b, labels, VOCAB * 8)
        expected = F.cross_entropy(F.linear(hidden, weight, b).float(), labels, reduction="sum")
    torch.testing.assert_close(loss, expected)
    ours, theirs = torch.autograd.grad(loss, (hidden, weight, b)), torch.autograd.grad(expected, (hidden, weight, b))
    for mine, exact in zip(ours, theirs):
        assert mine.dtype == torch.float32
        torch.testing.assert_close(mine, exact, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("grad", [True, False])
def test_no_operator_makes_the_logits_of_more_rows_than_a_chunk(grad):
    hidden, weight, b, labels = _inputs(50)
    chunk = VOCAB * 8
    assert chunk_rows(VOCAB, chunk) == 8
    with torch.set_grad_enabled(grad), LargestLogits() as chunked:
        loss, _ = linear_cross_entropy(hidden, weight, b, labels, chunk)
        if grad:
            loss.backward()
    with torch.set_grad_enabled(grad), LargestLogits() as whole:  # the recorder sees the whole logits
        loss = F.cross_entropy(F.linear(hidden, weight, b), labels, reduction="sum")
        if grad:
            loss.backward()
    assert chunked.rows == 8 and whole.rows == 50


def test_chunks_hold_a_fixed_number_of_logits_whatever_the_vocabulary():
    assert chunk_rows(7_552) == 555 and chunk_rows(28_193) == 148 and chunk_rows(30_522) == 137
    assert all(chunk_rows(v) * v <= 2**22 for v in (7_552, 28_193, 30_522)) and chunk_rows(2**23) == 1


def test_no_row_costs_nothing_with_zero_gradients():
    hidden, weight, b, labels = _inputs(0)
    loss, predictions = linear_cross_entropy(hidden, weight, b, labels)
    loss.backward()
    assert loss.item() == 0.0 and predictions.shape == (0,)
    assert weight.grad is not None and not weight.grad.any() and b is not None and not b.grad.any()
