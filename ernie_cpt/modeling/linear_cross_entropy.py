"""Cross-entropy of a linear projection onto a vocabulary, computed a bounded chunk of rows at a time.

The masked-LM head scores every target position against the whole vocabulary: logits (targets,
vocabulary). Held whole, those logits and what cross-entropy keeps of them for its gradient (the
log-softmax) and the gradient itself are several (targets, vocabulary) float32 buffers: for a
held-out batch of 64 examples of 128 tokens (about 1,200 targets) at a vocabulary of 28,000, 135 MB
each. They grow with the vocabulary, which grows with the corpus (``corpus_vocab_size``).

:func:`linear_cross_entropy` cuts the rows into chunks of at most ``CHUNK_ELEMENTS // vocabulary``
rows, so that one chunk's logits are at most ``CHUNK_ELEMENTS`` float32 numbers (16 MiB), whatever the
vocabulary and the number of targets. Each chunk's logits are made, scored and dropped; with
gradients, each chunk runs under ``torch.utils.checkpoint`` (non-reentrant), which keeps only the
chunk's inputs and recomputes its logits in the backward pass. At most one chunk's (rows,
vocabulary) buffers are then alive at a time, in the forward pass and in the backward pass. This is
the idea of Wijmans et al. 2024, "Cut Your Losses in Large-Vocabulary Language Models" (ICLR 2025):
never materialise the logits of all rows; they fuse it into GPU kernels, this module uses PyTorch's
own checkpointing, so it runs on every device, under autocast, and under DDP. It costs one more
(rows, hidden) x (hidden, vocabulary) product per chunk in the backward pass.

The result is the unchunked one up to float rounding (the chunks' sums are added): each chunk is the
same ``F.linear`` and ``F.cross_entropy`` as the unchunked computation, in float32 as the heads
score. The recomputation is the same arithmetic on the same inputs (no random numbers are drawn), so
a run stays bit-for-bit reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

CHUNK_ELEMENTS = 2**22  # logits per chunk: 16 MiB of float32


def chunk_rows(vocabulary: int, chunk_elements: int = CHUNK_ELEMENTS) -> int:
    """The rows of one chunk: as many as keep its (rows, ``vocabulary``) logits within ``chunk_elements``
    numbers, and at least 1."""
    return max(1, chunk_elements // max(vocabulary, 1))


def _chunk(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One chunk's summed cross-entropy (float32) and the argmax of its logits (the first of equal maxima)."""
    logits = F.linear(hidden, weight, bias).float()
    return F.cross_entropy(logits, labels, reduction="sum"), logits.detach().max(-1).indices


def linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         labels: torch.Tensor,
                         chunk_elements: int = CHUNK_ELEMENTS) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed cross-entropy of ``F.linear(hidden, weight, bias)`` against ``labels``, and the predicted
    class of each row, never holding the logits of more than :func:`chunk_rows` rows at once.

    ``hidden`` (rows, hidden), ``weight`` (vocabulary, hidden), ``bias`` (vocabulary,) or None,
    ``labels`` (rows,) of class ids in [0, vocabulary) (no ignore index: pass the scored rows only).
    Returns the loss summed over the rows (a float32 scalar with its graph; 0 with zero gradients for no
    row) and the predictions (rows,) long, the index of each row's largest logit. Raises what
    ``F.cross_entropy`` raises for a label outside the vocabulary."""
    if len(labels) == 0:
        empty = F.linear(hidden, weight, bias).float()
        return empty.sum() * 0.0, labels.new_zeros(0)
    rows = chunk_rows(weight.shape[0], chunk_elements)
    recompute = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    losses, predictions = [], []
    for start in range(0, len(labels), rows):
        part = (hidden[start:start + rows], weight, bias, labels[start:start + rows])
        if recompute:  # no random numbers drawn inside: no RNG state to keep
            loss, predicted = checkpoint(_chunk, *part, use_reentrant=False, preserve_rng_state=False)
        else:
            loss, predicted = _chunk(*part)
        losses.append(loss)
        predictions.append(predicted)
    return torch.stack(losses).sum(), torch.cat(predictions)
