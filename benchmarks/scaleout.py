"""Measure 10: annotation scale-out, words/s of 2 torchrun ranks with 1 spaCy worker each against
1 rank with 1 worker, on the same corpus in the same run.

Each side is ``torchrun --standalone --nproc_per_node N`` running :mod:`benchmarks.scaleout_child`
(gloo), which times :func:`ernie_cpt.data.sharded_annotation.annotate_on_all_ranks` with
``--num-proc 1`` into an empty cache of its own, from a barrier after start-up (imports and the
process group are not timed; loading the spaCy pipeline is) to the annotations loaded on rank 0.
With 2 ranks that is both shards parsed and rank 0's combination; with 1 rank it is the plain
:func:`ernie_cpt.data.annotate.annotate`. Both count the corpus's whitespace-separated words. The
sides alternate, ``Settings.rounds`` times, and each keeps its fastest run.

``python -m benchmarks.scaleout CORPUS --nodes 2 [--rounds N]`` measures the same across "machines":
the 2 ranks are two torchrun agents (``--nnodes 2 --nproc_per_node 1``, c10d rendezvous), as on two
hosts that share the cache's file system, here both on this host.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Row, Settings

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _launcher(ranks: int, nodes: int) -> list[str]:
    """torchrun's arguments for ``ranks`` processes: on one agent, or spread over ``nodes`` agents (c10d)."""
    if nodes == 1:
        return ["--standalone", "--nproc_per_node", str(ranks)]
    return ["--nnodes", str(nodes), "--nproc_per_node", str(ranks // nodes), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"localhost:{_free_port()}", "--rdzv-id", "bench-scaleout"]


def annotation_seconds(corpus: Path, ranks: int, nodes: int = 1) -> dict[str, float]:
    """One timed annotation of ``corpus`` by ``ranks`` torchrun processes (1 spaCy worker each) over ``nodes``
    torchrun agents, into a new cache: rank 0's JSON line (seconds, words)."""
    nodes = min(nodes, ranks)
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as cache_dir:
        command = [sys.executable, "-m", "torch.distributed.run", *_launcher(ranks, nodes),
                   "-m", "benchmarks.scaleout_child", "--corpus", str(corpus), "--cache-dir", cache_dir]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        agents = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd=ROOT) for _ in range(nodes)]
        outputs = [agent.communicate(timeout=3600) for agent in agents]
    if any(agent.returncode for agent in agents):
        raise RuntimeError(f"the {ranks}-rank annotation over {nodes} torchrun agent(s) failed:\n"
                           + "".join(out + err for out, err in outputs))
    lines = [line for out, _ in outputs for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def measure(name: str, corpus: Path, settings: Settings, nodes: int = 1, rounds: int | None = None) -> Row:
    """Row 10: 2 ranks x 1 worker against 1 rank x 1 worker (best of ``rounds``, default ``settings.rounds``,
    each); with ``nodes`` 2 the 2 ranks are two torchrun agents."""
    rounds = rounds or settings.rounds
    best: dict[int, dict[str, float]] = {}
    for _ in range(rounds):
        for ranks in (2, 1):
            run = annotation_seconds(corpus, ranks, nodes)
            if ranks not in best or run["seconds"] < best[ranks]["seconds"]:
                best[ranks] = run
    words = best[1]["words"]
    where = "2 torchrun agents (--nnodes 2, c10d)" if nodes > 1 else "2 ranks"
    return Row(f"10. annotation words/s, {where} x 1 worker vs 1 rank x 1 worker", words / best[2]["seconds"],
               words / best[1]["seconds"], "words/s", 1.8,
               note=f"{name}, {words:,.0f} words; torchrun (gloo), --num-proc 1 per rank, best of "
                    f"{rounds}: {best[2]['seconds']:.1f} s vs {best[1]['seconds']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    from benchmarks.run import machine, table

    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="the corpus (any --corpus path)")
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 2),
                        help="torchrun agents the 2 ranks run in: 1 (--standalone) or 2 (--nnodes 2)")
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of each side, alternating (default 2)")
    args = parser.parse_args(argv)
    row = measure(args.corpus.name, args.corpus, Settings(quick=False), args.nodes, args.rounds)
    print(json.dumps({"date": datetime.date.today().isoformat(), "command": " ".join(
        ["python -m benchmarks.scaleout", *(argv if argv is not None else sys.argv[1:])]), **machine()}))
    print(table([row]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
