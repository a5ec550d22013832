"""Data-parallel training over several processes with ``torch.distributed``, launched by torchrun.

``torchrun --nproc_per_node N -m ernie_cpt pretrain ...`` starts N processes with the
environment variables RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; :func:`init`
joins them into one process group (gloo on CPU, nccl on CUDA). Without them (a plain
``ernie-cpt pretrain``) nothing changes: every helper here is a no-op for a single process.

Every rank annotates its shard of the corpus (:mod:`ernie_cpt.data.sharded_annotation`), and rank
0 combines the shards. Rank 0 (the main process) does everything else that writes: the tokenizer
cache first (the other ranks wait, then read it), the run directory, logs and checkpoints. Every
rank trains on its share of each global batch, and ``DistributedDataParallel`` averages the
gradients. A UserError that rank 0 meets while the others wait is raised on every rank, so all
exit with code 2 (only rank 0 prints it). The others raise it only after a grace of
:data:`FOLLOWER_GRACE` seconds: torchrun stops every worker as soon as one exits, and a rank that
exited first would have rank 0 stopped before it printed the message; the grace costs nothing, as
torchrun stops the waiting ranks once rank 0 has exited.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ernie_cpt.errors import UserError

T = TypeVar("T")

TIMEOUT = datetime.timedelta(minutes=60)  # ranks wait for the slowest annotation shard and for rank 0's caches


def init(device: torch.device) -> None:
    """Join the process group that torchrun's environment describes, once per process, and leave it when
    the process exits (as accelerate's ``PartialState`` does); a no-op without it or when the caller has
    joined one. A Python caller's later calls use the same group: leaving it and joining again in the
    same process is not reliable (under torchrun the new group may read the old one's addresses from
    the launcher's store and fail to connect)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)  # nccl collectives (barriers, object broadcasts) use the current device
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        atexit.register(shutdown)


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


FOLLOWER_GRACE = 30.0  # seconds a rank other than 0 waits before raising rank 0's UserError


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's LOCAL_RANK): its CUDA device."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def main_result(compute: Callable[[], T]) -> T:
    """``compute()`` run on rank 0 only; its result, or its UserError, on every rank."""
    if not active():
        return compute()
    if is_main():
        try:
            result = compute()
        except UserError as e:
            broadcast((None, str(e)))
            raise
        return broadcast((result, None))[0]
    result, error = broadcast(None)
    if error is not None:
        time.sleep(FOLLOWER_GRACE)  # rank 0 prints the message and exits first (see the module's docstring)
        raise UserError(error)
    return result


def gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    if not active():
        return [value]
    values: list[Any] = [None] * world_size()
    dist.all_gather_object(values, value)
    return values


def every_rank(compute: Callable[[], T]) -> T:
    """``compute()`` run on every rank at once; returns when all are done (a barrier). A UserError on any
    rank is raised on every rank: the lowest such rank's message, prefixed with that rank when others
    did not fail (a file one machine lacks, say)."""
    if not active():
        return compute()
    result, error = None, None
    try:
        result = compute()
    except UserError as e:
        error = e
    errors = gather(None if error is None else str(error))
    failed = [r for r, e in enumerate(errors) if e is not None]
    if not failed:
        return result  # type: ignore[return-value]
    if len(failed) == len(errors):
        raise error if error is not None else UserError(errors[failed[0]])
    raise UserError(f"on rank {failed[0]} of {len(errors)} only: {errors[failed[0]]}")


def local_world_size() -> int:
    """How many processes of the job run on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if active() else 1


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others (rank 0 fills caches the others then read);
    a UserError of rank 0's is raised on the others instead."""
    if not active():
        yield
        return
    if not is_main():
        _, error = broadcast(None)
        if error is not None:
            raise UserError(error)
        yield
        return
    try:
        yield
    except UserError as e:
        broadcast((None, str(e)))
        raise
    broadcast((None, None))


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (in place; unchanged for one process)."""
    if active():
        dist.all_reduce(tensor)
    return tensor


def any_rank(value: int, device: torch.device) -> int:
    """The largest of every rank's ``value`` (a signal number, 0 for none), on every rank; ``value``
    for one process. A tensor on ``device``, as nccl needs."""
    if not active():
        return value
    flag = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over all ranks (a new tensor; ``tensor`` for one process)."""
    if not active():
        return tensor
    return all_reduce_sum(tensor.detach().clone()) / world_size()


def data_parallel(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``module`` wrapped in DistributedDataParallel when there are several processes. Heads of
    tasks a step does not train get no gradient, hence ``find_unused_parameters``."""
    if not active():
        return module
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def shutdown() -> None:
    if active():
        dist.destroy_process_group()
