"""The weightings built on torchjd's aggregators in pre-training: each trains 12 steps of three tasks with
``--task-mixing all``, along a direction that is not the plain sum's, and 2-process DDP (torchrun, gloo)
gives the losses, gradient norms and weights of one process.

One torchrun launch trains every aggregator (``python -m torch.distributed.run ... THIS_FILE``: the
process group is joined once and ``ernie_cpt.api.pretrain`` runs one after another in it), so the cost
is one launch, not seven. The model is the tiny preset at hidden size 64, 4 examples of 64 tokens a
step, dropout 0 (each process draws dropout masks for its share of the batch only), so a run is a few
seconds. Summation order differs between one process and two (the all-reduce), so the numbers agree
to TOLERANCE (relative), as in tests/test_distributed.py.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ernie_cpt.training.run_log import read_records

pytestmark = pytest.mark.slow

AGGREGATORS = ["upgrad", "dualproj", "aligned_mtl", "config", "imtl_g", "graddrop", "gradvac"]
TASKS = ["knowledge_masking", "capitalization", "sentence_reordering"]
STEPS = 12
TOLERANCE = 1e-5


def _config(corpus: list[str], run_dir: Path, weighting: str) -> dict:
    return {"corpus": corpus, "output_dir": str(run_dir), "tasks": TASKS, "task_mixing": "all",
            "loss_weighting": weighting, "model_size": "tiny", "hidden_size": 64, "steps_per_task": STEPS,
            "batch_size": 4, "max_seq_length": 64, "eval_max_examples": 16, "learning_rate": 1e-3,
            "logging_steps": 1, "eval_steps": 0, "save_steps": 100, "vocab_size": 3000, "seed": 7, "dropout": 0.0,
            "attention_dropout": 0.0}


def _train_all(corpus: list[str], root: Path, weightings: list[str]) -> None:
    from ernie_cpt.api import pretrain

    for weighting in weightings:
        pretrain(**_config(corpus, root / weighting, weighting))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOLERANCE * max(abs(a), abs(b))


@pytest.fixture(scope="module")
def corpus(sample_dir) -> list[str]:
    return [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory, one_torch_thread) -> Path:
    """Every aggregator's run, and equal weighting's, in this process."""
    root = tmp_path_factory.mktemp("single")
    _train_all(corpus, root, [*AGGREGATORS, "equal"])
    return root


@pytest.mark.parametrize("weighting", AGGREGATORS)
def test_each_aggregator_trains_along_its_own_direction(single, weighting):
    equal, own = read_records(single / "equal", "train"), read_records(single / weighting, "train")
    assert [r["step"] for r in own] == list(range(1, STEPS + 1))
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in own)
    first, last = (sum(r["loss"] for r in part) / 4 for part in (own[:4], own[-4:]))
    assert last < first  # it learns
    if weighting == "dualproj":  # the sum conflicted with no task in these steps, so DualProj kept it
        assert [r["grad_norm"] for r in own] == pytest.approx([r["grad_norm"] for r in equal], rel=1e-5)
        return
    # Step 1 starts from the same weights and batches: a different gradient norm is a different direction
    # (the plain sum's is equal weighting's), and the runs then part.
    assert abs(own[0]["grad_norm"] - equal[0]["grad_norm"]) > 1e-3 * equal[0]["grad_norm"]
    assert any(abs(a["loss"] - b["loss"]) > 1e-4 for a, b in zip(own[2:], equal[2:]))


def test_two_processes_match_one_for_every_aggregator(single, corpus, tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", __file__,
               str(tmp_path), *corpus]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = tmp_path / "ddp.log"
    with open(log, "w") as out:
        result = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=600)
    assert result.returncode == 0, log.read_text()
    for weighting in AGGREGATORS:
        one, two = read_records(single / weighting, "train"), read_records(tmp_path / weighting, "train")
        assert [r["step"] for r in two] == [r["step"] for r in one] == list(range(1, STEPS + 1)), weighting
        for a, b in zip(one, two):
            assert _close(a["loss"], b["loss"]) and _close(a["grad_norm"], b["grad_norm"]), (weighting, a, b)
            assert all(_close(a["losses"][task], b["losses"][task]) for task in TASKS), (weighting, a, b)
        for a, b in zip(read_records(single / weighting, "weights"), read_records(tmp_path / weighting, "weights"),
                        strict=True):
            assert all(_close(a["weights"][t], b["weights"][t]) for t in TASKS), (weighting, a, b)


if __name__ == "__main__":  # under torchrun: python -m torch.distributed.run ... THIS_FILE ROOT CORPUS...
    _train_all(sys.argv[2:], Path(sys.argv[1]), AGGREGATORS)
