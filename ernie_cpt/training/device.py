"""The device a run trains on (:func:`pick_device`), and what training on a CUDA device needs beyond
``model.to(device)``.

* **TF32.** On Ampere and later GPUs, fp32 matrix products (evaluation, fine-tuning, whatever
  bf16 autocast leaves in fp32) run on the tensor cores in TF32: a 10-bit mantissa for the
  products, fp32 accumulation (``torch.backends.cuda.matmul.fp32_precision = "tf32"``, what
  ``TrainingArguments(tf32=True)`` sets). Nothing changes on the CPU.
* **Batches.** A batch is collated on the host; on CUDA it is copied from pinned (page-locked)
  memory with ``non_blocking=True``, so the copy is queued behind the GPU's work instead of
  waiting for it (a copy from pageable memory synchronizes the stream first). The streams pin in
  their loader (``TaskStream.use_pinned_memory``); :func:`to_device` pins what is not pinned yet.
* **Memory.** :func:`memory_record` is ``torch.cuda.max_memory_allocated``, the most memory tensors
  have held on the GPU since the process started (or since ``torch.cuda.reset_peak_memory_stats``),
  in MiB, logged beside tokens/s.
* **Mixed precision.** :func:`autocast` is bf16 autocast where ``--amp`` asks for it and the GPU
  supports bf16; fp32 elsewhere.

Every tensor a training step makes names its device: the training device, or ``"cpu"`` for
arithmetic on Python numbers that stays on the host (``tests/ernie_cpt/training/test_devices.py``
runs the step with every other tensor made on the ``meta`` device, where any use beside a real
tensor fails).
"""

from __future__ import annotations

import contextlib
import os

import torch

from ernie_cpt import distributed
from ernie_cpt.errors import UserError
from ernie_cpt.training.run_environment import autocast_dtype

MIB = 2**20


def pick_device(name: str) -> torch.device:
    """The device ``name`` means; under torchrun, "auto" and "cuda" mean this process's GPU. "auto" is
    the CPU without CUDA, or under ``accelerate launch --cpu`` (ACCELERATE_USE_CPU). Raises UserError
    for a name torch does not know or a GPU this machine does not have."""
    if name == "auto":
        use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
        name = "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"
    try:
        device = torch.device("cuda", distributed.local_rank()) if name == "cuda" else torch.device(name)
    except RuntimeError as e:
        raise UserError(f"--device {name} is not a device torch knows; pass cpu, cuda, cuda:N or auto") from e
    try:
        torch.empty(0, device=device)  # a device torch knows but this machine lacks fails here
    except (RuntimeError, AssertionError) as e:  # torch asserts when it was built without CUDA
        found = f"{torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no usable GPU"
        raise UserError(f"--device {name} is not available on this machine ({found}); pass --device cpu or auto") from e
    enable_tf32(device)  # fp32 matrix products on the tensor cores (Ampere and later); nothing on the CPU
    return device


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports it when ``amp`` (``--amp``); else nothing (fp32)."""
    dtype = autocast_dtype(device, amp)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()


def enable_tf32(device: torch.device) -> None:
    """Let fp32 matrix products on ``device`` use TF32 when it is a CUDA device (no-op elsewhere)."""
    if device.type != "cuda":
        return
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):  # torch >= 2.9; allow_tf32 is deprecated there
        matmul.fp32_precision = "tf32"
    else:
        matmul.allow_tf32 = True


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """``batch`` on ``device``: on CUDA each tensor is copied from pinned memory without waiting
    (``non_blocking``); on the CPU the tensors are returned as they are."""
    if device.type != "cuda":
        return {key: value.to(device) for key, value in batch.items()}
    return {key: (value if value.is_pinned() else value.pin_memory()).to(device, non_blocking=True)
            for key, value in batch.items()}


def memory_record(device: torch.device) -> dict[str, float]:
    """``{"max_memory_allocated_mib": peak}``: the most GPU memory tensors have held on ``device`` so
    far, in MiB (1 MiB = 2**20 bytes); ``{}`` on other devices."""
    if device.type != "cuda":
        return {}
    return {"max_memory_allocated_mib": round(torch.cuda.max_memory_allocated(device) / MIB, 1)}
