"""Peak anonymous memory of a command: RssAnon summed over its process tree, sampled from ``/proc``.

``python -m benchmarks.anon_memory [--interval S] -- COMMAND ...`` runs COMMAND and prints one JSON line:
``{"peak_mib": ..., "main_peak_mib": ..., "seconds": ..., "samples": ..., "processes": ...}`` (the
peak of the sum of ``RssAnon`` of the process and all its descendants, in MiB; that of the process
alone; the most processes seen at once).

Anonymous memory is what a process allocates for itself (Python objects, numpy arrays, the
allocator's heap, in-memory Arrow tables). Memory-mapped files (an Arrow cache entry, a model's
safetensors) are file-backed and left out: the kernel can drop those pages and read them again,
so they do not limit how large a corpus fits. Forked workers count their copy-on-write pages once
each, as RssAnon does, which overstates a forked tree; it is the same at every corpus size.

``/proc/PID/status`` is cheap to read (no page-table walk, unlike ``smaps_rollup``), so the tree
is sampled every 20 ms by default: a peak held for 20 ms is seen (a held-out evaluation's batch, a
training step's backward pass; every 100 ms missed some of them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

INTERVAL = 0.02


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (threads' children included)."""
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                stack.extend(int(c) for c in children.read_text().split())
            except OSError:  # the task ended meanwhile
                continue
    return found


def rss_anon(pid: int) -> int:
    """Bytes of anonymous resident memory of a process (0 once it has ended)."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith("RssAnon:")), 0)


@dataclass
class Peak:
    """What :func:`peak_anonymous` measured."""

    peak_mib: float
    seconds: float
    samples: int
    processes: int  # the most processes of the tree seen at once
    main_peak_mib: float  # the peak of the command's own process alone
    stderr: str = ""  # what the command wrote to its standard error


def peak_anonymous(command: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None,
                   interval: float = INTERVAL, stdout: int | None = subprocess.DEVNULL) -> Peak:
    """Run ``command``; the peak of RssAnon summed over its process tree (and what it wrote to stderr).
    Raises RuntimeError with the end of its stderr when it fails."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=stdout, stderr=errors)
        peak, main, samples, most = 0, 0, 0, 0
        while process.returncode is None:
            tree = descendants(process.pid)
            sizes = [rss_anon(pid) for pid in tree]
            peak, main = max(peak, sum(sizes)), max(main, sizes[0])
            most, samples = max(most, len(tree)), samples + 1
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=interval)
        seconds = time.perf_counter() - start
        errors.seek(0)
        log = errors.read().decode(errors="replace")
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{log[-3000:]}")
    return Peak(peak / 2**20, seconds, samples, most, main / 2**20, log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.anon_memory", description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds between samples (default 0.02)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    try:
        peak = peak_anonymous(command, dict(os.environ), interval=args.interval, stdout=None)
        sys.stderr.write(peak.stderr)
    except RuntimeError as e:
        print(f"python -m benchmarks.anon_memory: error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"peak_mib": round(peak.peak_mib, 1), "main_peak_mib": round(peak.main_peak_mib, 1),
                      "seconds": round(peak.seconds, 1), "samples": peak.samples, "processes": peak.processes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
