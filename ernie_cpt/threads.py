"""CPU threads that degrade gracefully when other processes share the CPUs.

torch's OpenMP threads meet at a barrier after every parallel operation, and by default a thread
that arrives first spins for up to 300,000 iterations (GNU OpenMP's ``GOMP_SPINCOUNT``; a few
milliseconds) before it sleeps. When another process takes a core, the thread it displaces
makes the others spin away their time slices: a tiny model trained 16x slower on 2 cores with two
busy processes. So, unless the user has chosen:

* the OpenMP spin is cut to ``SPIN_COUNT`` = 2,000 iterations (``GOMP_SPINCOUNT``, set by
  :func:`configure_process` at the very start of the command line, before torch loads; unset
  when ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is given): long enough to bridge the gaps
  between the operations of a training step, short enough that a waiting thread soon yields;
* the thread count (:func:`torch_thread_count`, set for a command's training by a
  :func:`torch_threads` block) is the CPUs this process may use (its affinity mask,
  ``os.sched_getaffinity``, and its cgroup CPU quota) minus the data-loader workers, at least 1,
  and never more than torch would use anyway (``OMP_NUM_THREADS``, ``torch.set_num_threads``,
  torchrun's 1); ``--num-threads N`` sets it outright. It depends on the machine and the options
  only, not on the load of the moment: the thread count changes the last digits of the results
  (the order of summation), and the same command must give the same numbers;
* where a cgroup quota allows fewer CPUs than the affinity mask, ``OMP_NUM_THREADS`` and
  ``RAYON_NUM_THREADS`` (the tokenizers' pool) default to that many.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

# GOMP_SPINCOUNT: about 50 us of spinning where a PAUSE takes 25 ns (AMD Zen 5; the default 300,000: 7.6 ms).
# Measured on 2 cores, tiny model (benchmarks.contention): 300,000 trains alone at 27.9k tokens/s, 2,000 at
# 26.8k (0.96), PASSIVE at 25.2k; with 1 / 2 busy processes 300,000 keeps 0.34x / 0.05x, 2,000 0.58x / 0.62x.
SPIN_COUNT = "2000"


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")) -> float | None:
    """The CPUs the CPU quota of this process's cgroup allows (the smallest on its path up to the root;
    cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None without a quota."""
    quotas = []
    for line in membership.read_text().splitlines() if membership.is_file() else []:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "0::/path"
            folders, name = [root], "cpu.max"
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            folders, name = [root / controllers, root / "cpu"], "cpu.cfs_quota_us"
        else:
            continue
        for folder in folders:
            for level in [folder / path.lstrip("/"), *(folder / path.lstrip("/")).parents]:
                if level == folder.parent:
                    break
                quota = _quota_in(level, name)
                if quota is not None:
                    quotas.append(quota)
    return min(quotas) if quotas else None


def _quota_in(folder: Path, name: str) -> float | None:
    """The CPUs one cgroup folder's quota file allows, or None (no file, no quota)."""
    file = folder / name
    if not file.is_file():
        return None
    if name == "cpu.max":  # "max 100000" or "150000 100000"
        quota, _, period = file.read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100_000)
    cfs_quota = int(file.read_text())
    return None if cfs_quota <= 0 else cfs_quota / int((folder / "cpu.cfs_period_us").read_text())


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (all of them where affinity masks do not exist)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """How many CPUs this process may keep busy: its affinity mask, capped by its cgroup quota."""
    cpus = len(allowed_cpus())
    try:
        quota = _cgroup_quota()
    except (OSError, ValueError):
        quota = None
    return max(1, min(cpus, math.floor(quota)) if quota else cpus)


def configure_process() -> None:
    """Call first thing, before torch loads: the OpenMP spin and, under a cgroup quota, the OpenMP and
    tokenizer pools (only what the user has not set; nothing once torch is loaded)."""
    if "torch" in sys.modules:
        return
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
    cpus = available_cpus()
    if cpus < len(allowed_cpus()):  # a cgroup quota: OpenMP and rayon would count the CPUs
        os.environ.setdefault("OMP_NUM_THREADS", str(cpus))
        os.environ.setdefault("RAYON_NUM_THREADS", str(cpus))


def choose_threads(requested: int, reserved: int, current: int) -> tuple[int, str]:
    """The torch thread count and why: ``requested`` if above 0, else the available CPUs minus
    ``reserved`` (worker processes), between 1 and ``current`` (the count torch would use)."""
    if requested:
        return requested, "--num-threads"
    cpus = available_cpus()
    threads = max(1, min(current, cpus - reserved))
    why = f"{cpus} CPU{'s' * (cpus != 1)} available" + (f", {reserved} for workers" if reserved else "")
    return threads, why + ("" if threads == cpus - reserved else f", {current} set by OMP_NUM_THREADS or the caller")


def torch_thread_count(requested: int = 0, reserved: int = 0) -> tuple[int, str]:
    """:func:`choose_threads` with torch's current count as the cap."""
    import torch

    return choose_threads(requested, reserved, torch.get_num_threads())


@contextlib.contextmanager
def torch_threads(count: int, why: str = "") -> Iterator[int]:
    """Run the block with ``count`` torch intra-op threads (logged with ``why``); the count before it
    is restored after, so a process that runs several commands (a test, a notebook) keeps its own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    log.info("Using %d torch thread%s (%s--num-threads N to choose)", count, "s" * (count != 1),
             f"{why}; " if why else "")
    try:
        yield count
    finally:
        torch.set_num_threads(before)
