"""The training child of measure 7 (:mod:`benchmarks.contention`), started as the command line starts.

``python -m benchmarks.contention_child --corpus P --cache-dir D --steps N --warmup W --phases K
[--threads T]`` trains a tiny knowledge-masking model for ``W + K * N + 1`` steps. Before each
phase boundary (after the warm-up, after each phase) it prints ``phase`` and waits for a line on
stdin, so the parent can start or stop busy processes; at the end it prints one JSON line: the
tokens/s of every phase and the torch threads it used.
"""
# ruff: noqa: E402  (the OpenMP settings must be made before torch is imported, as the command line does)

from ernie_cpt import threads

threads.configure_process()

import argparse
import json
import sys
from pathlib import Path

import datasets
import torch

from benchmarks.common import Recorded, RecordingStream, Settings, Workload
from benchmarks.contention import TASK, phase_rates
from ernie_cpt.training.batching import TaskStream


class PhasedStream(RecordingStream):
    """A recording stream that, before each phase boundary (a batch count), tells the parent on stdout
    and waits for its go-ahead on stdin."""

    def __init__(self, stream: TaskStream, log: list[Recorded], boundaries: list[int]) -> None:
        super().__init__(stream, log)
        self.boundaries = set(boundaries)

    def __next__(self) -> dict[str, torch.Tensor]:
        if len(self.log) in self.boundaries:
            print("phase", flush=True)
            sys.stdin.readline()
        return super().__next__()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--cache-dir", required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    parser.add_argument("--phases", type=int, required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    workload = Workload.load("contention", Path(args.corpus), args.cache_dir, Settings(quick=True, model_size="tiny"))
    boundaries = [args.warmup + k * args.steps for k in range(args.phases + 1)]
    with threads.torch_threads(*threads.torch_thread_count(args.threads)) as threads_used:
        _, log = workload.train({TASK: boundaries[-1] + 1},
                                record=lambda stream, log: PhasedStream(stream, log, boundaries))
    print(json.dumps({"rates": phase_rates(log, boundaries), "threads": threads_used}), flush=True)


if __name__ == "__main__":
    main()
