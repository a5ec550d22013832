"""What the weightings built on torchjd's aggregators share (Quinton & Rey 2024, "Jacobian Descent for
Multi-Objective Optimization", https://torchjd.org).

An aggregator maps the (K, P) matrix of the tasks' gradients of the shared parameters (the Jacobian)
to one (P,) update, which is exactly ``GradientWeighting.direction``. Most of torchjd's aggregators
only need the K x K Gramian G = J J^T: a torchjd ``Weighting`` of G gives the K weights of the
rows, so the (K, P) matrix is read twice (G, then weights @ J) and never copied whole.

The trainer gives every process the same all-reduced gradients and the same ``context.rng``, so the
update is the same on every process (DDP equals one process). An aggregator that draws random
numbers (PCGrad's order, GradDrop's threshold, GradVac's order) draws them from torch's global
generator; :func:`seeded` seeds it from ``context.rng`` for that call only, so a resumed run draws
what the uninterrupted one did and the training's own random streams (dropout) are left untouched.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

CHUNK = 2**22  # parameters per block of the Gramian's sum: K x 32 MiB of float64


def gramian(gradients: torch.Tensor) -> torch.Tensor:
    """The (K, K) float64 Gramian of ``gradients`` (K, P) divided by its trace (zero when every gradient
    is zero). Every torchjd weighting used here is invariant to the gradients' scale; dividing first
    makes the absolute epsilons torchjd adds (1e-4 in its QP's normalisation and regularisation,
    1e-8 in GradVac's denominators) relative to the gradients, so small gradients are not mistaken
    for zero ones. It is summed over column blocks of CHUNK parameters, each cast to float64 on its own,
    so no float64 copy of the whole matrix is made."""
    gram = torch.zeros(len(gradients), len(gradients), dtype=torch.float64, device=gradients.device)
    for block in gradients.split(CHUNK, dim=1):
        block = block.double()
        gram += block @ block.T
    trace = gram.trace()
    return gram / trace if trace > 0 else gram


def combine(weights: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """The (P,) update ``weights`` (K,) @ ``gradients`` (K, P), in the gradients' dtype and device."""
    return weights.to(dtype=gradients.dtype, device=gradients.device) @ gradients


@contextmanager
def seeded(rng: np.random.Generator, device: torch.device) -> Iterator[None]:
    """Within the block, torch's global generators (the CPU's, and ``device``'s when it is a CUDA device)
    are seeded from ``rng`` (one draw); they are restored afterwards. The default device is the CPU there:
    torchjd draws its orders with ``torch.randperm(K)`` for a loop on the host."""
    seed = int(rng.integers(2**63 - 1))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.device("cpu"):
        torch.default_generator.manual_seed(seed)
        if device.type == "cuda":
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield
