"""Hard sharing reproduces the multi-task model of ernie-cpt before the architecture seam, and its own
recorded runs to the last digit.

``tests/data/hard_sharing_losses.json`` holds the training losses and held-out scores of two short
runs: four tasks of every head kind (masked LM, token, sequence and sentence-pair classification),
one run drawing one task per step over the stages of ``sequential``, one training all tasks in every
step with GradNorm. ``before_the_seam`` was made with the model that predates
``ernie_cpt.modeling.architectures`` (commit 304ed21); ``now`` was recorded again when the masked-LM
loss began to compute its gradients in the forward pass (``ernie_cpt.modeling.linear_cross_entropy``),
which moved the losses by at most 1.8e-7 of their value (one or two float32 roundings) and no
accuracy. The same runs today must give the floats of ``now`` exactly, and those of
``before_the_seam`` to 1e-6 of their value with the same accuracies. The runs use the WordPiece
tokenizer they were made with (``tests/data/sample-tokenizer``): a new one trained on the same text
can differ, as `tokenizers` breaks ties in hash-map order. They start the masked-LM bias at zeros
as that model did (``--mlm-bias-init zeros``; the default now starts it at the targets' prior,
which ``test_mlm_prior.py`` tests).

Floats equal to the last digit need the same kernels on every machine: the default ones pick code
by the CPU's instruction set (AVX2 or AVX-512), and the recorded losses moved in the last bit or
two between two CPUs. So both the recording and this test run in a process with one torch thread,
MKL's conditional numerical reproducibility (``MKL_CBWR=COMPATIBLE``) and ATen's baseline kernels
(``ATEN_CPU_CAPABILITY=default``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ernie_cpt.training.run_log import read_records

pytestmark = pytest.mark.slow

DATA = Path(__file__).resolve().parents[2] / "data"
PINNED = json.loads((DATA / "hard_sharing_losses.json").read_text())
RUNS = {"sample": ["--schedule", "sequential"],
        "all": ["--schedule", "joint", "--task-mixing", "all", "--loss-weighting", "gradnorm"]}
REPRODUCIBLE_KERNELS = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}
ONE_THREAD_CLI = ("import sys, torch; torch.set_num_threads(1); from ernie_cpt.cli import main; "
                  "sys.exit(main(sys.argv[1:]))")


@pytest.mark.parametrize("run", sorted(RUNS))
def test_hard_sharing_losses_equal_those_before_the_seam(run, sample_dir, tmp_path):
    files = [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]
    args = ["pretrain", "--corpus", *files, "--output-dir", str(tmp_path / "run"), "--model-size", "tiny",
            "--tasks", "knowledge_masking", "capitalization", "sentence_reordering", "sentence_distance",
            "--steps-per-task", "3", "--batch-size", "8", "--learning-rate", "1e-3", "--logging-steps", "1",
            "--eval-steps", "0", "--eval-batch-size", "64", "--tokenizer", str(DATA / "sample-tokenizer"),
            "--seed", "11", "--split-seed", "11", "--architecture", "hard", "--mlm-bias-init", "zeros", *RUNS[run]]
    done = subprocess.run([sys.executable, "-c", ONE_THREAD_CLI, *args], env={**os.environ, **REPRODUCIBLE_KERNELS},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    train = [[r["step"], r["task"], r["loss"]] for r in read_records(tmp_path / "run", "train")]
    evals = [[r["step"], r["task"], r["loss"], r["accuracy"]] for r in read_records(tmp_path / "run", "eval")]
    assert train == PINNED["now"][run]["train"]
    assert evals == PINNED["now"][run]["eval"]
    seam = PINNED["before_the_seam"][run]
    assert [(step, task) for step, task, _ in train] == [(step, task) for step, task, _ in seam["train"]]
    assert [loss for *_, loss in train] == pytest.approx([loss for *_, loss in seam["train"]], rel=1e-6)
    assert [accuracy for *_, accuracy in evals] == [accuracy for *_, accuracy in seam["eval"]]
    assert [loss for *_, loss, _ in evals] == pytest.approx([loss for *_, loss, _ in seam["eval"]], rel=1e-6)
