"""The device a run trains on, and its mixed precision."""

from __future__ import annotations

import contextlib
import os

import torch

from ernie_cpt import distributed
from ernie_cpt.errors import UserError
from ernie_cpt.training.run_environment import autocast_dtype


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
    return device


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on a CUDA device that supports it when ``amp`` (``--amp``); else nothing (fp32)."""
    dtype = autocast_dtype(device, amp)
    return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()
