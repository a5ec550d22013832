"""Measure 10: annotation scale-out, words/s of 2 torchrun ranks with 1 spaCy worker each against
1 rank with 1 worker, on the same corpus in the same run.

Each side is ``torchrun --standalone --nproc_per_node N`` running :mod:`benchmarks.scaleout_child`
(gloo), which times :func:`ernie_cpt.data.sharded_annotation.annotate_on_all_ranks` with
``--num-proc 1`` into an empty cache of its own, from a barrier after start-up (imports and the
process group are not timed; loading the spaCy pipeline is) to the annotations loaded on rank 0.
With 2 ranks that is both shards parsed and rank 0's combination; with 1 rank it is the plain
:func:`ernie_cpt.data.annotate.annotate`. Both count the corpus's whitespace-separated words. The
sides alternate, ``Settings.rounds`` times, and each keeps its fastest run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import Row, Settings


def annotation_seconds(corpus: Path, ranks: int) -> dict[str, float]:
    """One timed annotation of ``corpus`` by ``ranks`` torchrun processes (1 spaCy worker each) into a new
    cache: the child's JSON line (seconds, words)."""
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as cache_dir:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks),
                   "-m", "benchmarks.scaleout_child", "--corpus", str(corpus), "--cache-dir", cache_dir]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600,
                                cwd=Path(__file__).resolve().parents[1])
    if result.returncode != 0:
        raise RuntimeError(f"the {ranks}-rank annotation failed:\n{result.stdout}{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(name: str, corpus: Path, settings: Settings) -> Row:
    """Row 10: 2 ranks x 1 worker against 1 rank x 1 worker (best of ``settings.rounds`` each)."""
    best: dict[int, dict[str, float]] = {}
    for _ in range(settings.rounds):
        for ranks in (2, 1):
            run = annotation_seconds(corpus, ranks)
            if ranks not in best or run["seconds"] < best[ranks]["seconds"]:
                best[ranks] = run
    words = best[1]["words"]
    return Row("10. annotation words/s, 2 ranks x 1 worker vs 1 rank x 1 worker", words / best[2]["seconds"],
               words / best[1]["seconds"], "words/s", 1.8,
               note=f"{name}, {words:,.0f} words; torchrun (gloo), --num-proc 1 per rank, best of "
                    f"{settings.rounds}: {best[2]['seconds']:.1f} s vs {best[1]['seconds']:.1f} s")
