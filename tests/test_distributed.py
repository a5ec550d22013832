"""Data-parallel pre-training: `torchrun --nproc_per_node 2` and `accelerate launch --num_processes 2`
on CPU (gloo) reproduce a single-process run with the same global batch, torchrun for every sharing
architecture (the routed ones with their top layer routed, and their routing means too), and a
2-process run resumes bit-exactly, also after SIGTERM, and only with 2 processes (unless
--allow-changed-world-size). MT-DNN fine-tuning (``finetune --task``) under torchrun gives the report of
one process.

The run trains three tasks (masked LM, a token classifier and a sequence classifier, so ranks see
different numbers of targets) in every step with GradNorm weighting and 2 accumulated
micro-batches per step. Dropout is 0 in the comparison with one process: a process draws dropout
masks for its share of the batch only, so with dropout the two runs are different samples of
the same training, not the same numbers. Summation order differs between one process and two
(all-reduce), so losses agree to TOLERANCE (relative), not bit for bit: measured 1e-7 at most.
Routing means agree to 1e-4 (absolute; measured 6e-6 at most): with dropout 0 the experts or
columns start as exact copies, so the gates' own gradients are rounding noise at first, and AdamW
moves them by a noise-driven fraction of the learning rate (see the final weights below).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ernie_cpt.cli import main
from ernie_cpt.training.checkpoint import checkpoints, read_checkpoint
from ernie_cpt.training.run_log import read_records

pytestmark = [pytest.mark.slow, pytest.mark.minutes]

TOLERANCE = 1e-5
TASKS = ["knowledge_masking", "capitalization", "sentence_reordering"]
NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0"]
ARCHITECTURES = ["hard", "mmoe", "cgc", "ple", "cross_stitch"]


def _args(sample_dir: Path, run_dir: Path, *extra: str, weighting: str = "gradnorm") -> list[str]:
    return ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]],
            "--output-dir", str(run_dir), "--tasks", *TASKS, "--task-mixing", "all", "--loss-weighting", weighting,
            "--model-size", "tiny", "--steps-per-task", "6", "--batch-size", "8", "--grad-accum-steps", "2",
            "--learning-rate", "1e-3", "--logging-steps", "1", "--eval-steps", "0", "--save-steps", "2",
            "--save-total-limit", "10", "--vocab-size", "3000", "--seed", "7", *extra]


def _torchrun(args: list[str], log_file: Path) -> None:
    """``torchrun --standalone --nproc_per_node 2 -m ernie_cpt ARGS``, one torch thread per process."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ernie_cpt", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    with open(log_file, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600)
    assert result.returncode == 0, log_file.read_text()


def _accelerate(args: list[str], log_file: Path) -> None:
    """``accelerate launch --multi_gpu --num_processes 2 -m ernie_cpt ARGS``: accelerate hands two processes
    to torchrun, which without a GPU train on the CPU with gloo (``--cpu`` alone would start one)."""
    with socket.socket() as s:  # a free port: other test runs on this machine may use the default 29500
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
               str(port), "-m", "ernie_cpt", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    with open(log_file, "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=600)
    assert result.returncode == 0, log_file.read_text()


LAUNCHERS = {"torchrun": _torchrun, "accelerate": _accelerate}

# Several runs in one torchrun launch: the Python API keeps the process group for the next call (the CLI leaves it).
# The CLI under torchrun is exercised by the accelerate launcher, the SIGTERM resume and MT-DNN fine-tuning below.
RUN_EACH = """import json, sys
import ernie_cpt
from ernie_cpt.cli import build_parser
from ernie_cpt.commands.options import pretrain_option_classes
from ernie_cpt.config import PretrainConfig
from ernie_cpt.options import resolve_options
for argv in json.loads(sys.argv[1]):
    args = build_parser("pretrain").parse_args(argv)
    ernie_cpt.pretrain(PretrainConfig.from_groups(resolve_options(args, pretrain_option_classes())))
"""


def _torchrun_each(runs: list[list[str]], folder: Path) -> None:
    """Each ``pretrain`` argv of ``runs``, one after the other, in one ``torchrun --nproc_per_node 2`` launch."""
    (folder / "run_each.py").write_text(RUN_EACH)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(folder / "run_each.py"), json.dumps(runs)]
    with open(folder / "ddp.log", "w") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=600,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, (folder / "ddp.log").read_text()


def _records(run_dir: Path, kind: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, kind)]


def _close(a: float, b: float, tolerance: float = TOLERANCE) -> bool:
    return abs(a - b) <= tolerance * max(abs(a), abs(b))


def _flags(architecture: str) -> list[str]:
    return [*NO_DROPOUT, *([] if architecture == "hard" else ["--architecture", architecture, "--expert-layers", "1"])]


@pytest.fixture(scope="module")
def single(sample_dir, tmp_path_factory, one_torch_thread):  # one thread, as each launched process has
    """architecture -> its single-process run (made once)."""
    runs: dict[str, Path] = {}

    def run(architecture: str) -> Path:
        if architecture not in runs:
            runs[architecture] = tmp_path_factory.mktemp(f"single-{architecture}") / "run"
            assert main(_args(sample_dir, runs[architecture], *_flags(architecture))) == 0
        return runs[architecture]
    return run


WEIGHTINGS = ["pcgrad", "cagrad", "mgda", "nash_mtl", "famo"]  # the gradient-level methods


@pytest.fixture(scope="module")
def launched(sample_dir, tmp_path_factory) -> dict[str, Path]:
    """The two-process runs of every architecture (torchrun) and of every gradient-level method, made in one
    torchrun launch (their processes start once, not ten times): "architecture:NAME" or "weighting:NAME" -> run."""
    folder = tmp_path_factory.mktemp("ddp")
    runs = {**{f"architecture:{a}": _args(sample_dir, folder / f"architecture-{a}", *_flags(a))
               for a in ARCHITECTURES},
            **{f"weighting:{w}": _args(sample_dir, folder / f"weighting-{w}", *NO_DROPOUT, weighting=w)
               for w in WEIGHTINGS}}
    _torchrun_each(list(runs.values()), folder)
    return {name: Path(argv[argv.index("--output-dir") + 1]) for name, argv in runs.items()}


@pytest.mark.parametrize(("launcher", "architecture"),
                         [("torchrun", a) for a in ARCHITECTURES] + [(n, "hard") for n in LAUNCHERS if n != "torchrun"])
def test_two_processes_match_one_with_the_same_global_batch(sample_dir, tmp_path, single, launched, launcher,
                                                           architecture):
    """torchrun: the runs of every architecture in one launch (:func:`launched`); accelerate: a launch of its own."""
    single, ddp = single(architecture), tmp_path / "ddp"
    if launcher == "torchrun":
        ddp = launched[f"architecture:{architecture}"]
    else:
        LAUNCHERS[launcher](_args(sample_dir, ddp, *_flags(architecture)), tmp_path / "ddp.log")

    one, two = _records(single, "train"), _records(ddp, "train")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two):
        assert _close(a["loss"], b["loss"]) and _close(a["grad_norm"], b["grad_norm"]), (a, b)
        assert all(_close(a["losses"][task], b["losses"][task]) for task in TASKS), (a, b)
    for a, b in zip(read_records(single, "weights"), read_records(ddp, "weights")):
        assert all(_close(a["weights"][task], b["weights"][task]) for task in TASKS), (a, b)
    for a, b in zip(read_records(single, "eval"), read_records(ddp, "eval"), strict=True):
        assert a["task"] == b["task"] and _close(a["loss"], b["loss"])
    routing_one, routing_two = read_records(single, "routing"), read_records(ddp, "routing")
    assert len(routing_one) == (0 if architecture == "hard" else 6 * len(TASKS))  # every step, every task
    for a, b in zip(routing_one, routing_two, strict=True):
        assert (a["step"], a["task"], list(a["weights"])) == (b["step"], b["task"], list(b["weights"]))
        assert all(abs(a["weights"][k] - b["weights"][k]) <= 1e-4 for k in a["weights"]), (a, b)
    final_one, final_two = (read_checkpoint(run / "checkpoints" / "step-00000006")[0] for run in (single, ddp))
    # AdamW divides each gradient by its own running size, so a weight whose gradient is rounding noise
    # (an attention key bias: softmax ignores it) moves by a noise-driven fraction of the learning rate
    # in both runs. Weights therefore agree to a tenth of one step (lr 1e-3), not to float precision:
    # measured 1.6e-6 at most. Training on half the batch, as a rank without the all-reduce does,
    # moves them 6e-3 apart.
    far = {k: (final_one[k] - final_two[k]).abs().max().item() for k in final_one
           if not torch.allclose(final_one[k], final_two[k], rtol=0, atol=1e-4)}
    assert not far, far
    # Rank 0 alone wrote the run directory: the same files as the single process.
    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    assert [p.name for p in checkpoints(ddp)] == [p.name for p in checkpoints(single)]


# The PLE paper's other sharing structures, each with what exercises it: asymmetric's chain of concatenations,
# ml_mmoe's two levels (one layer each).
TAXONOMY = {"customized": ["--expert-layers", "1"],
            "asymmetric": ["--expert-layers", "1", "--asymmetric-fusion", "concat", "--asymmetric-sources",
                           "capitalization:knowledge_masking,sentence_reordering:capitalization"],
            "ml_mmoe": ["--expert-layers", "2", "--levels", "2", "--num-experts", "2"],
            "sluice": ["--expert-layers", "1"],
            "soft_sharing": ["--expert-layers", "1"],
            # one task per stage: the penalty reaches the columns of the tasks a step does not train
            "soft_sharing+trace": ["--expert-layers", "1", "--soft-sharing-norm", "trace", "--schedule", "sequential"]}


@pytest.mark.usefixtures("one_torch_thread")
def test_the_ple_taxonomy_architectures_with_two_processes_match_one_in_one_launch(sample_dir, tmp_path):
    """customized, asymmetric, ml_mmoe, sluice and soft_sharing (l2, and trace over sequential stages), 2 steps per
    task each, trained one after the other by the same two processes (one torchrun launch: a Python caller's runs
    share its process group), give the losses, gradient norms, penalties (aux_loss, computed inside the DDP
    forward) and routing means of one process, as the architectures above do. Routing means agree to 1e-3 here
    (measured: customized and asymmetric 1e-9, ml_mmoe 1.8e-4): ML-MMoE's top experts read mixtures of identical
    copies that differ by rounding alone, so its gates' first gradients are rounding noise, which AdamW's first
    step turns into moves of the size of the learning rate in both runs (see the module docstring)."""
    steps = ["--steps-per-task", "2", "--grad-accum-steps", "1", "--eval-fraction", "0", "--architecture"]
    runs = {name: [*_args(sample_dir, tmp_path / f"ddp-{name}", *NO_DROPOUT, *steps, name.split("+")[0], *extra)]
            for name, extra in TAXONOMY.items()}
    for name, argv in runs.items():
        assert main([*argv[:argv.index("--output-dir") + 1], str(tmp_path / f"one-{name}"),
                     *argv[argv.index("--output-dir") + 2:]]) == 0
    _torchrun_each(list(runs.values()), tmp_path)

    for name in TAXONOMY:
        single, ddp = tmp_path / f"one-{name}", tmp_path / f"ddp-{name}"
        one, two = _records(single, "train"), _records(ddp, "train")
        assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4][:len(one)], name
        assert len(one) == (4 if "--schedule" in TAXONOMY[name] else 2), name
        for a, b in zip(one, two):
            assert _close(a["loss"], b["loss"]) and _close(a["grad_norm"], b["grad_norm"]), (name, a, b)
            assert a["losses"].keys() == b["losses"].keys(), (name, a, b)
            assert all(_close(a["losses"][task], b["losses"][task]) for task in a["losses"]), (name, a, b)
            assert ("aux_loss" in a) == (name.startswith(("sluice", "soft_sharing"))), (name, a)
            # The penalties measure how far columns that were copies a few steps ago have moved apart: their
            # rounding is the weights' (1e-7) times weights/differences (about 90 for the trace norm at step 4)
            assert _close(a.get("aux_loss", 0.0), b.get("aux_loss", 0.0), 10 * TOLERANCE), (name, a, b)
        routing_one, routing_two = read_records(single, "routing"), read_records(ddp, "routing")
        assert len(routing_one) == sum(len(r["losses"]) for r in one), name  # every task of every step
        for a, b in zip(routing_one, routing_two, strict=True):
            assert (a["step"], a["task"], list(a["weights"])) == (b["step"], b["task"], list(b["weights"]))
            assert all(abs(a["weights"][k] - b["weights"][k]) <= 1e-3 for k in a["weights"]), (name, a, b)


@pytest.mark.parametrize("weighting", WEIGHTINGS)
@pytest.mark.usefixtures("one_torch_thread")
def test_gradient_level_methods_with_two_processes_match_one(weighting, sample_dir, tmp_path, launched):
    """Each process combines the per-task gradients of the whole global batch (all-reduced per task
    before the method combines them), so the weights and losses are those of one process."""
    single, ddp = tmp_path / "single", launched[f"weighting:{weighting}"]
    assert main(_args(sample_dir, single, *NO_DROPOUT, weighting=weighting)) == 0
    one, two = _records(single, "train"), _records(ddp, "train")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(one, two):
        assert _close(a["loss"], b["loss"]) and _close(a["grad_norm"], b["grad_norm"]), (a, b)
    weights_one, weights_two = read_records(single, "weights"), read_records(ddp, "weights")
    assert len(weights_one) == len(weights_two) == 6
    for a, b in zip(weights_one, weights_two):
        assert all(abs(a["weights"][t] - b["weights"][t]) <= 1e-4 * max(1.0, abs(a["weights"][t])) for t in TASKS)
    if weighting in ("mgda", "nash_mtl", "famo"):  # weights that change from step to step (pcgrad/cagrad: all 1)
        assert len({tuple(r["weights"].values()) for r in weights_one}) > 1


@pytest.mark.usefixtures("one_torch_thread")
def test_multitask_finetuning_with_two_processes_matches_one(sample_dir, tmp_path):
    """``finetune --task`` (MT-DNN) on a regression and a ranking set: the multi-task run, the second stage and
    the single-task comparison trained by two processes (4 examples each of a global batch of 8) give the report
    of one process, and the same training losses. Scores are compared to TOLERANCE of their size or of 1,
    whichever is larger (a Pearson r near 0 moves by rounding noise relative to itself): measured 7e-7 at most.
    Logged losses agree to 1e-4 and gradient norms to 1e-3, not TOLERANCE: as in pre-training, AdamW turns
    rounding noise into weight differences of about 1e-6 within a few steps, and the regression head's
    gradient, the residuals times features of norm ~10, moves with them, most near the end of a run, where the
    residuals are small (measured: losses 1.2e-5 at most over 5 runs; gradient norms 3.2e-5 in 4 of them and
    3.1e-4 in one, at the last step of the single-task similarity run; the scores do not move)."""
    corpora = Path(__file__).resolve().parents[2] / "shared" / "corpora"
    if not corpora.is_dir():
        pytest.skip(f"{corpora} is absent (it sits beside the repo in development and CI)")
    sets = tmp_path / "sets"
    subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "scripts" / "make_finetune_sets.py"),
                    str(sets), "--corpora", str(corpora), "--train", "48", "--test", "40"], check=True,
                   capture_output=True)
    pretrained = tmp_path / "pretrained"
    assert main(["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]], "--output-dir",
                 str(pretrained), "--model-size", "tiny", "--max-steps", "10", "--batch-size", "8",
                 "--max-seq-length", "64", "--learning-rate", "1e-3", "--eval-steps", "0", "--vocab-size", "3000",
                 "--seed", "7", *NO_DROPOUT]) == 0

    def args(out: Path) -> list[str]:
        tasks = [x for name, kind in (("similarity", "regression"), ("jargon_source", "ranking"))
                 for x in ("--task", f"{name}:{kind}:{sets / name / 'train.jsonl'}:{sets / name / 'test.jsonl'}")]
        return ["finetune", str(pretrained), *tasks, "--multitask-dir", str(out), "--then-single-task", "--seeds", "3",
                "--epochs", "2", "--batch-size", "8", "--max-seq-length", "64", "--learning-rate", "1e-3"]

    assert main(args(tmp_path / "one")) == 0
    _torchrun(args(tmp_path / "two"), tmp_path / "two.log")

    one, two = (json.loads((tmp_path / out / "report.json").read_text()) for out in ("one", "two"))
    assert one["steps"] == two["steps"] == {name: {"multi_task": 12, "single_task_stage": 6, "single_task": 18}
                                            for name in ("similarity", "jargon_source")}
    for name, result in one["sets"].items():
        assert result["baseline"] == two["sets"][name]["baseline"]
        for variant, summary in result["variants"].items():
            (a,), (b,) = summary["per_seed"], two["sets"][name]["variants"][variant]["per_seed"]
            assert a.keys() == b.keys(), (a, b)
            assert all(abs(a[k] - b[k]) <= TOLERANCE * max(1.0, abs(a[k])) for k in a), (name, variant, a, b)
    runs = sorted(p.name for p in (tmp_path / "one" / "runs").iterdir())
    assert runs == sorted(p.name for p in (tmp_path / "two" / "runs").iterdir()) and len(runs) == 5
    for run in runs:
        first, second = (_records(tmp_path / out / "runs" / run, "train") for out in ("one", "two"))
        assert [r["step"] for r in first] == [r["step"] for r in second] and first
        for a, b in zip(first, second):
            assert a["task"] == b["task"], (run, a, b)
            assert _close(a["loss"], b["loss"], 1e-4) and _close(a["grad_norm"], b["grad_norm"], 1e-3), (a, b)


@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_stopped_by_sigterm_resume_bit_exactly_with_dropout_and_only_as_two(sample_dir, tmp_path, capsys,
                                                                                         caplog):
    """Slurm sends SIGTERM to torchrun, which passes it to every process: they stop at the end of the same step,
    rank 0 saves a checkpoint there, and a resume with 2 processes gives the uninterrupted run. One process is
    refused (dropout masks are drawn per process), unless --allow-changed-world-size, which goes on with other
    losses and records the change."""
    reference, stopped, one = tmp_path / "reference", tmp_path / "stopped", tmp_path / "one"
    ten = ["--steps-per-task", "10"]
    _torchrun(_args(sample_dir, reference, *ten), tmp_path / "reference.log")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ernie_cpt", *_args(sample_dir, stopped, *ten)]
    train_log = stopped / "logs" / "train.jsonl"
    with open(tmp_path / "stopped.log", "w") as log:
        launcher = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
        while launcher.poll() is None and (not train_log.exists() or train_log.read_text().count("\n") < 3):
            time.sleep(0.01)
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=120)
    step, text = train_log.read_text().count("\n"), (tmp_path / "stopped.log").read_text()
    assert 3 <= step < 10, text
    stops = [line for line in text.splitlines() if "interrupted at step" in line]
    assert stops == [f"ernie-cpt: interrupted at step {step} (SIGTERM); saved checkpoint step-{step:08d}; continue "
                     f"with the same command and --resume"], text  # both ranks stopped there; rank 0 says so
    assert checkpoints(stopped)[-1].name == f"step-{step:08d}"
    shutil.copytree(stopped, one)

    capsys.readouterr()
    assert main([*_args(sample_dir, stopped, *ten), "--resume"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ernie-cpt: error: --resume: the run in {stopped} was trained by 2 processes (torchrun --nproc_per_node 2); "
        f"resume with the same number of processes, or pass --allow-changed-world-size to continue with 1 (the "
        f"losses will then differ from an uninterrupted run)")

    _torchrun([*_args(sample_dir, stopped, *ten), "--resume"], tmp_path / "resumed.log")
    assert f"Resumed from {stopped / 'checkpoints' / f'step-{step:08d}'}" in (tmp_path / "resumed.log").read_text()
    for kind in ("train", "weights", "eval"):
        assert _records(stopped, kind) == _records(reference, kind), kind

    with caplog.at_level("WARNING"):
        assert main([*_args(sample_dir, one, *ten), "--resume", "--allow-changed-world-size"]) == 0
    assert "--allow-changed-world-size: the run in" in caplog.text
    assert json.loads((one / "run_config.json").read_text())["world_size_changes"] == [
        {"step": step, "from": 2, "to": 1}]
    continued, uninterrupted = _records(one, "train"), _records(reference, "train")
    assert continued[:step] == uninterrupted[:step] and len(continued) == 10
    assert [r["loss"] for r in continued[step:]] != [r["loss"] for r in uninterrupted[step:]]
