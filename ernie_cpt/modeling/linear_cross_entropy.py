"""Cross-entropy of a linear projection onto a vocabulary, computed a bounded chunk of rows at a time.

The masked-LM head scores every target position against the whole vocabulary: logits (targets,
vocabulary). Held whole, those logits and what cross-entropy keeps of them for its gradient (the
log-softmax) and the gradient itself are several (targets, vocabulary) float32 buffers: for a
batch of 64 examples of 128 tokens (about 1,200 targets) at a vocabulary of 28,000, 135 MB
each. They grow with the vocabulary, which grows with the corpus (``corpus_vocab_size``).

:func:`linear_cross_entropy` cuts the rows into chunks of at most ``CHUNK_ELEMENTS // vocabulary``
rows, so that one chunk's logits are at most ``CHUNK_ELEMENTS`` float32 numbers (16 MiB), whatever the
vocabulary and the number of targets. Each chunk's logits are made in one buffer, which is then
turned in place into the loss's gradient with respect to them (softmax minus the one-hot label);
with gradients, that chunk's share of the gradients of the hidden states, the weight and the bias
is added up in the forward pass, and the buffer is dropped. At most one chunk's (rows, vocabulary)
buffer is alive at a time, and the backward pass only scales the gradients kept (by the gradient of
the loss, a weighting's factor for instance). This is the idea of Wijmans et al. 2024, "Cut Your
Losses in Large-Vocabulary Language Models" (ICLR 2025): never materialise the logits of all rows.
They fuse it into GPU kernels and recompute the logits in the backward pass; computing the
gradients in the forward pass, a chunk at a time, is the Liger Kernel's fused linear cross-entropy
(Hsu et al. 2024, "Liger Kernel: Efficient Triton Kernels for LLM Training"), here in PyTorch's own
operators, so it runs on every device and under autocast (the products then in its precision, the
softmax and the summed gradients in float32). It takes three (rows, hidden) x (hidden, vocabulary)
products per chunk, as autograd's unchunked backward does, and keeps the weight's gradient
(vocabulary, hidden) from the forward pass to the backward pass.

The result is the unchunked one up to float rounding (the same log-sum-exp, the chunks' sums added).
The gradient is exact for a loss used once per backward pass and scaled by any factor; it is not
differentiable twice (nothing in the project asks for that). No random numbers are drawn, so a run
stays bit-for-bit reproducible.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2**22  # logits per chunk: 16 MiB of float32


def chunk_rows(vocabulary: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """The rows of one chunk: as many as keep its (rows, ``vocabulary``) logits within ``chunk_elements``
    numbers, and at least 1."""
    return max(1, chunk_elements // max(vocabulary, 1))


def _scored(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed cross-entropy of float32 ``logits`` (rows, vocabulary) against ``labels`` (rows,) and the
    argmax of each row (the first of equal maxima); ``logits`` is overwritten, in place, with the gradient
    of that sum with respect to them: softmax(logits) - one_hot(labels)."""
    largest, predictions = logits.max(-1)
    target = logits.gather(1, labels[:, None]).squeeze(1)
    logits.sub_(largest[:, None]).exp_()
    total = logits.sum(-1)
    logits.div_(total[:, None])
    logits.scatter_add_(1, labels[:, None], logits.new_full((len(labels), 1), -1.0))
    return (total.log() + largest - target).sum(), predictions


def _add_gradients(gradient: torch.Tensor, part: torch.Tensor, weight: torch.Tensor, grad_hidden: torch.Tensor | None,
                   grad_weight: torch.Tensor | None, grad_bias: torch.Tensor | None, start: int) -> None:
    """Add one chunk's share of the gradients: ``gradient`` (rows, vocabulary) of the summed loss with respect
    to the chunk's logits, ``part`` (rows, hidden) its hidden states. The weight's share is added in place
    (no (vocabulary, hidden) buffer per chunk), except under autocast, where the product is made in its
    precision, as autograd's backward of the autocast projection makes it, and then added."""
    if grad_hidden is not None:
        grad_hidden[start:start + len(gradient)] = gradient @ weight
    if grad_weight is not None and torch.is_autocast_enabled(part.device.type):
        grad_weight += gradient.t() @ part.to(weight.dtype)
    elif grad_weight is not None:
        grad_weight.addmm_(gradient.t(), part.to(weight.dtype))
    if grad_bias is not None:
        grad_bias += gradient.sum(0)


class _LinearCrossEntropy(torch.autograd.Function):
    """The summed cross-entropy and the predictions of ``F.linear(hidden, weight, bias)``, chunk by chunk,
    with the inputs' gradients added up in the forward pass and scaled in the backward pass."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                labels: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        want_hidden, want_weight, want_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = torch.zeros_like(weight) if want_weight else None
        grad_bias = torch.zeros_like(bias) if want_bias and bias is not None else None
        losses, predictions = [], []
        for start in range(0, len(labels), rows):
            part = hidden[start:start + rows]
            logits = F.linear(part, weight, bias).float()
            loss, predicted = _scored(logits, labels[start:start + rows])
            losses.append(loss)
            predictions.append(predicted)
            gradient = logits.to(weight.dtype)
            _add_gradients(gradient, part, weight, grad_hidden, grad_weight, grad_bias, start)
            del logits, gradient  # one chunk's (rows, vocabulary) buffer at a time
        ctx.gradients = (grad_hidden, grad_weight, grad_bias)
        predicted_all = torch.cat(predictions)
        ctx.mark_non_differentiable(predicted_all)
        return torch.stack(losses).sum(), predicted_all

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor, grad_predictions: Any) -> tuple[torch.Tensor | None, ...]:
        scaled = tuple(None if g is None else g * grad_loss.to(g.dtype) for g in ctx.gradients)
        return (*scaled, None, None)


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         labels: torch.Tensor,
                         chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed cross-entropy of ``F.linear(hidden, weight, bias)`` against ``labels``, and the predicted
    class of each row, never holding the logits of more than :func:`chunk_rows` rows at once.

    ``hidden`` (rows, hidden), ``weight`` (vocabulary, hidden), ``bias`` (vocabulary,) or None,
    ``labels`` (rows,) of class ids in [0, vocabulary) (no ignore index: pass the scored rows only).
    Returns the loss summed over the rows (a float32 scalar with its graph; 0 with zero gradients for no
    row) and the predictions (rows,) long, the index of each row's largest logit. Raises RuntimeError
    (an index out of bounds) for a label outside the vocabulary."""
    if len(labels) == 0:
        empty = F.linear(hidden, weight, bias).float()
        return empty.sum() * 0.0, labels.new_zeros(0)
    rows = chunk_rows(weight.shape[0], chunk_elements)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias)):
        loss, predictions = _LinearCrossEntropy.apply(hidden, weight, bias, labels, rows)
        return loss, predictions
    scored = [_scored(F.linear(hidden[start:start + rows], weight, bias).float(), labels[start:start + rows])
              for start in range(0, len(labels), rows)]
    return torch.stack([loss for loss, _ in scored]).sum(), torch.cat([predicted for _, predicted in scored])
