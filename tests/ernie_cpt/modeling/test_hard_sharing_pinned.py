"""Hard sharing reproduces the multi-task model of ernie-cpt before the architecture seam, to the last digit.

``tests/data/hard_sharing_losses.json`` holds the training losses and held-out scores of two short
runs made with the model that predates ``ernie_cpt.modeling.architectures`` (commit 304ed21): four
tasks of every head kind (masked LM, token, sequence and sentence-pair classification), one run
drawing one task per step over the stages of ``sequential``, one training all tasks in every step
with GradNorm. The same runs today must give the same floats exactly (one torch thread, CPU). The
runs use the WordPiece tokenizer they were made with (``tests/data/sample-tokenizer``): a new one
trained on the same text can differ, as `tokenizers` breaks ties in hash-map order.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.run_log import read_records

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

DATA = Path(__file__).resolve().parents[2] / "data"
PINNED = json.loads((DATA / "hard_sharing_losses.json").read_text())
RUNS = {"sample": ["--schedule", "sequential"],
        "all": ["--schedule", "joint", "--task-mixing", "all", "--loss-weighting", "gradnorm"]}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_hard_sharing_losses_equal_those_before_the_seam(run, sample_dir, tmp_path):
    files = [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]
    assert main(["pretrain", "--corpus", *files, "--output-dir", str(tmp_path / "run"), "--model-size", "tiny",
                 "--tasks", "knowledge_masking", "capitalization", "sentence_reordering", "sentence_distance",
                 "--steps-per-task", "3", "--batch-size", "8", "--learning-rate", "1e-3", "--logging-steps", "1",
                 "--eval-steps", "0", "--tokenizer", str(DATA / "sample-tokenizer"), "--seed", "11",
                 "--split-seed", "11", "--architecture", "hard",
                 *RUNS[run]]) == 0
    train = [[r["step"], r["task"], r["loss"]] for r in read_records(tmp_path / "run", "train")]
    evals = [[r["step"], r["task"], r["loss"], r["accuracy"]] for r in read_records(tmp_path / "run", "eval")]
    assert train == PINNED[run]["train"]
    assert evals == PINNED[run]["eval"]
