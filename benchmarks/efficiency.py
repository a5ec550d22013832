"""Measure 2: hardware efficiency, the model FLOP/s the trainer achieves on knowledge masking
divided by the fp32 matmul FLOP/s this machine reaches in the same run.

How FLOPs are counted (a multiply-add is 2 FLOPs; backward costs twice the forward, so
forward + backward is 3x the forward). For an encoder of L layers, hidden size H,
feed-forward size I and vocabulary V, and an example of T real (non-padding) tokens:

* weight matmuls: ``6 * N * T`` with ``N = L * (4 H^2 + 2 H I)`` (query, key, value and
  output projections, the two feed-forward layers);
* attention scores and the weighted sum of values: ``12 * L * H * T^2``;
* the MLM head, only at the M masked positions where ours computes it:
  ``6 * (H^2 + H V) * M`` (transform, tied projection onto the vocabulary).

Embedding lookups, LayerNorm, softmax, GELU, dropout, the pooler and the optimizer are not
counted: they are time the trainer spends without doing model FLOPs. Padding is not counted
either, so FLOPs wasted on it lower the efficiency.

The denominator is the best of a few fp32 ``torch.mm`` timings on square matrices using every
thread torch uses (the machine's reachable matmul peak). The matmul rate at the model's own
shapes is reported beside it, as the realistic ceiling of a model this small. With
``--device cuda`` the model trains under bf16 autocast and the denominator is the GPU's bf16
peak, measured the same way on larger square matrices (:data:`GPU_PEAK_SIZES`); the ratio is then
the model FLOP utilisation (MFU).
"""

from __future__ import annotations

import time

import torch
from transformers import ErnieConfig

from benchmarks.common import Recorded, Row, Workload, steady_batches, synchronize

PEAK_SIZES = (512, 1024, 2048)
GPU_PEAK_SIZES = (4096, 8192)


def training_flops(config: ErnieConfig, lengths: list[int], masked: int) -> float:
    """Model FLOPs of one forward + backward pass of knowledge masking over examples of these
    real lengths with ``masked`` target positions in all."""
    h, layers = config.hidden_size, config.num_hidden_layers
    matmul_params = layers * (4 * h * h + 2 * h * config.intermediate_size)
    dense = 6 * matmul_params * sum(lengths)
    attention = 12 * layers * h * sum(t * t for t in lengths)
    head = 6 * (h * h + h * config.vocab_size) * masked
    return float(dense + attention + head)


def matmul_flops_per_second(m: int, k: int, n: int, seconds: float = 0.5, device: str = "cpu",
                            dtype: torch.dtype = torch.float32) -> float:
    """FLOP/s of ``(m x k) @ (k x n)`` in ``dtype`` on ``device``: the best of repeated timings over about
    ``seconds`` (each waits for the GPU to finish)."""
    a, b = torch.randn(m, k, device=device, dtype=dtype), torch.randn(k, n, device=device, dtype=dtype)
    torch.mm(a, b)
    synchronize()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize()
        best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


def measure(workload: Workload, log: list[Recorded]) -> Row:
    """The efficiency row, from the batches of our knowledge-masking throughput run."""
    config = workload.model([]).config
    batches, seconds = steady_batches(log, workload.settings.warmup_steps)
    achieved = sum(training_flops(config, b.lengths, b.targets) for b in batches) / seconds
    device = workload.settings.device
    gpu = device != "cpu"
    dtype, sizes = (torch.bfloat16, GPU_PEAK_SIZES) if gpu else (torch.float32, PEAK_SIZES)
    peak = max(matmul_flops_per_second(n, n, n, device=device, dtype=dtype) for n in sizes)
    rows = workload.settings.batch_size * workload.settings.seq_length
    h, ffn = config.hidden_size, config.intermediate_size
    at_model_shapes = {f"{rows}x{k}x{n}": matmul_flops_per_second(rows, k, n, device=device, dtype=dtype) / 1e9
                       for k, n in ((h, h), (h, ffn), (ffn, h))}
    where = (f"{torch.cuda.get_device_name(device)}, bf16 autocast, {config._attn_implementation} attention" if gpu
             else f"{torch.get_num_threads()} threads")
    return Row(f"2. model FLOP/s / {'bf16' if gpu else 'fp32'} matmul FLOP/s", achieved / 1e9, peak / 1e9,
               "GFLOP/s", 0.6, note=f"{where}; matmul GFLOP/s at the model's shapes: "
               + ", ".join(f"{k} {v:.0f}" for k, v in at_model_shapes.items()),
               details={"matmul_gflops_at_model_shapes": at_model_shapes, "device": device})
