"""Crash safety: `ernie-cpt pretrain` killed with SIGKILL at 10 seeded random moments and resumed
after each ends with exactly the losses and evaluations of an uninterrupted run, and no
checkpoint folder left behind is ever unreadable. The moments: 2 during start-up (a random time
after the start; these come first), 4 during training (a random time into a random step) and 4
while a checkpoint is being written (the first checkpoint after a random step, once its weights are
written, as the run opens its trainer state: the run sends itself the SIGKILL, see ``tests.processes``,
so the kill lands inside the write however busy the machine is), the training ones spread over the
run but for its last steps, which a run could finish before the kill lands. SIGTERM and Ctrl-C
(SIGINT) stop a run at the end of a step with a checkpoint there, and resuming it gives the
uninterrupted run too; fine-tuning stopped by SIGTERM leaves nothing.

Every run is a command of its own (``start_cli``: a child of a forkserver that has imported the CLI,
one torch thread, so that the runs' losses can match bit for bit), run exactly as the console script
runs it; SIGKILL gives it no chance to clean up.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from ernie_cpt.data.corpus import bundled_corpus
from ernie_cpt.modeling.architectures import ARCHITECTURES
from ernie_cpt.training.checkpoint import checkpoints, latest_name, read_checkpoint
from ernie_cpt.training.run_log import read_records
from tests.processes import CliProcess

pytestmark = pytest.mark.slow

STEPS = 40
KINDS = ["start-up"] * 2 + ["step"] * 4 + ["checkpoint"] * 4
SEED = 20240607


def _args(corpus: list[str], run_dir: Path, resume: bool) -> list[str]:
    return ["pretrain", "--corpus", *corpus, "--output-dir", str(run_dir), "--model-size", "tiny",
            "--max-steps", str(STEPS), "--batch-size", "16", "--learning-rate", "1e-3", "--logging-steps", "1",
            "--eval-steps", "10", "--save-steps", "2", "--save-total-limit", "3", "--vocab-size", "3000",
            "--seed", "7", *(["--resume"] if resume else [])]


def _partial_folders(run_dir: Path) -> set[str]:
    folder = run_dir / "checkpoints"
    return {p.name for p in folder.iterdir() if p.name.startswith(".tmp-step-")} if folder.is_dir() else set()


def _steps_logged(run_dir: Path) -> int:
    path = run_dir / "logs" / "train.jsonl"
    return path.read_text(encoding="utf-8").count("\n") if path.exists() else 0


def _kill_when(command: CliProcess, run_dir: Path, kind: str, step: int, seconds: float) -> bool:
    """SIGKILL ``command`` ``seconds`` after its start ("start-up") or ``seconds`` after step ``step`` is
    logged ("step"). False if the run ended first."""
    start, reached = time.monotonic(), None
    while command.process.is_alive():
        now = time.monotonic()
        if reached is None and kind != "start-up" and _steps_logged(run_dir) >= step:
            reached = now
        started_up = kind == "start-up" and now - start >= seconds
        into_step = kind == "step" and reached is not None and now - reached >= seconds
        if started_up or into_step:
            break
        if now - start > 120:
            command.kill()  # else pytest waits for it at exit
            raise AssertionError(f"the run neither reached the {kind} moment after step {step} nor ended")
        time.sleep(0.001)
    if not command.process.is_alive():
        return False
    command.kill()
    return True


def _nth_checkpoint_after(run_dir: Path, step: int) -> int:
    """Which of the checkpoints that a run started in ``run_dir`` writes (counted from 1) is the first one after
    step ``step``: one every --save-steps 2 steps, from the checkpoint it resumes from (or step 0)."""
    latest = latest_name(run_dir)
    start = int(latest.split("-")[1]) if latest else 0
    return (max(step + 2 - step % 2, start + 2) - start) // 2


def _all_checkpoints_readable(run_dir: Path) -> list[int]:
    steps = []
    for path in checkpoints(run_dir):
        weights, _, trainer_state = read_checkpoint(path)  # raises if damaged
        assert weights and trainer_state["step"] == int(path.name.split("-")[1])
        steps.append(trainer_state["step"])
    named = latest_name(run_dir)
    assert named is None or (run_dir / "checkpoints" / named).is_dir()
    return steps


def _comparable(run_dir: Path, kind: str) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, kind)]


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(sample_dir, tmp_path, start_cli):
    corpus = [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]
    reference, run_dir = tmp_path / "reference", tmp_path / "killed"
    child = start_cli(_args(corpus, reference, resume=False))
    assert child.wait() == 0, child.output

    rng = np.random.default_rng(SEED)
    # Start-up kills first (a late one could meet a run that finishes within its delay), then the
    # others in a random order of kinds at increasing steps, leaving room before the end of the run.
    kinds = ["start-up"] * KINDS.count("start-up") + [str(k) for k in rng.permutation([k for k in KINDS
                                                                                       if k != "start-up"])]
    steps = iter(sorted(rng.choice(np.arange(1, STEPS - 8), size=len(KINDS) - KINDS.count("start-up"), replace=False)))
    moments = [(kind, 0 if kind == "start-up" else int(next(steps)), float(rng.uniform(0.0, 0.3 if kind == "step"
                                                                                        else 2.0))) for kind in kinds]
    killed, partial_kills, progress = 0, 0, []
    for kind, step, seconds in moments:
        argv = _args(corpus, run_dir, resume=(run_dir / "run_config.json").exists())
        if kind == "checkpoint":  # the run kills itself in the middle of writing that checkpoint
            child = start_cli(argv, signal_at_open=(".tmp-step-", signal.SIGKILL, _nth_checkpoint_after(run_dir, step)))
            if child.wait() != -signal.SIGKILL:
                break
        elif not _kill_when(start_cli(argv), run_dir, kind, step, seconds):
            break
        killed += 1
        partial_kills += kind == "checkpoint" and bool(_partial_folders(run_dir))
        progress.append({"kill": f"{kind} after step {step}", "checkpoints": _all_checkpoints_readable(run_dir)})

    summary = json.dumps({"kills": killed, "inside a checkpoint write": partial_kills, "after each": progress})
    assert killed == len(KINDS), summary
    child = start_cli(_args(corpus, run_dir, resume=True))  # resume once more, to the end
    assert child.wait() == 0, child.output
    print(summary)
    assert partial_kills == KINDS.count("checkpoint"), summary  # each left its checkpoint half-written
    assert _comparable(run_dir, "train") == _comparable(reference, "train"), summary
    assert [r["step"] for r in read_records(run_dir, "train")] == list(range(1, STEPS + 1))
    assert _comparable(run_dir, "eval") == _comparable(reference, "eval"), summary
    assert _all_checkpoints_readable(run_dir)[-1] == STEPS
    assert not _partial_folders(run_dir)


# The built-in architectures that do not fold into one ErnieModel, from the registry; soft_sharing with each norm.
ROUTED = [name for name, cls in ARCHITECTURES.items() if not cls.folds and ARCHITECTURES.origin(name) is None]
ROUTED += ["soft_sharing+trace"]
# ml_mmoe's two levels need two layers (the tiny encoder's both); two experts each keep it cheap
OWN_FLAGS = {"ml_mmoe": ["--expert-layers", "2", "--num-experts", "2"],
             "soft_sharing+trace": ["--soft-sharing-norm", "trace"]}


def _architecture_args(corpus: list[str], run_dir: Path, architecture: str, resume: bool) -> list[str]:
    """8 steps of two tasks over the stages of sequential, the top layer routed (ml_mmoe: both); the routing
    means are logged every 4 steps and at every checkpoint (every 3 steps)."""
    return ["pretrain", "--corpus", *corpus, "--output-dir", str(run_dir), "--model-size", "tiny",
            "--architecture", architecture.split("+")[0], "--expert-layers", "1",
            "--tasks", "knowledge_masking", "capitalization",
            "--schedule", "sequential", "--max-steps", "8", "--batch-size", "8", "--learning-rate", "1e-3",
            "--max-seq-length", "64", "--logging-steps", "4", "--eval-steps", "5", "--eval-max-examples", "32",
            "--save-steps", "3", "--vocab-size", "3000", "--seed", "7", *OWN_FLAGS.get(architecture, []),
            *(["--resume"] if resume else [])]


@pytest.mark.parametrize("architecture", ROUTED)
def test_each_routed_architecture_killed_mid_run_resumes_to_the_uninterrupted_run(architecture, sample_dir, tmp_path,
                                                                                start_cli):
    corpus = [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]
    reference, run_dir = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = start_cli(_architecture_args(corpus, reference, architecture, resume=False))
    # SIGKILL in the middle of writing the third checkpoint, step 6 (stage 1 ends at step 2): it resumes from step 3
    child = start_cli(_architecture_args(corpus, run_dir, architecture, resume=False),
                      signal_at_open=(".tmp-step-", signal.SIGKILL, 3))
    assert child.wait() == -signal.SIGKILL, child.output
    assert _all_checkpoints_readable(run_dir) == [2, 3] and _partial_folders(run_dir), child.output
    child = start_cli(_architecture_args(corpus, run_dir, architecture, resume=True))
    assert child.wait() == 0, child.output
    assert uninterrupted.wait() == 0, uninterrupted.output

    assert "Resumed from" in child.output
    routing = read_records(reference, "routing")
    assert sorted({r["step"] for r in routing}) == [3, 4, 6, 8]
    assert {r["task"] for r in routing} == {"knowledge_masking", "capitalization"}
    for kind in ("train", "eval", "routing"):
        assert _comparable(run_dir, kind) == _comparable(reference, kind), kind


def _term_args(corpus: list[str], run_dir: Path, resume: bool) -> list[str]:
    """16 steps; no checkpoint but the last falls on a step the run can be stopped at (--save-steps 100)."""
    return ["pretrain", "--corpus", *corpus, "--output-dir", str(run_dir), "--model-size", "tiny",
            "--max-steps", "16", "--batch-size", "16", "--learning-rate", "1e-3", "--logging-steps", "1",
            "--eval-steps", "5", "--save-steps", "100", "--vocab-size", "3000", "--seed", "7",
            *(["--resume"] if resume else [])]


@pytest.fixture(scope="module")
def term_reference(sample_dir, tmp_path_factory) -> tuple[list[str], Path]:
    corpus = [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]
    reference = tmp_path_factory.mktemp("term") / "reference"
    child = CliProcess(_term_args(corpus, reference, resume=False), reference.with_suffix(".log"), None)
    assert child.wait() == 0, child.output
    return corpus, reference


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_at_the_step_boundary_and_resume_is_bit_exact(term_reference, tmp_path,
                                                                                           start_cli, signum, code):
    """Slurm and Kubernetes stop a job with SIGTERM: the run ends the step it is in, saves it, and says so."""
    corpus, reference = term_reference
    run_dir = tmp_path / "run"
    child = start_cli(_term_args(corpus, run_dir, resume=False))
    while child.process.is_alive() and _steps_logged(run_dir) < 4:
        time.sleep(0.001)
    os.kill(child.pid, signum)

    assert child.wait() == code, child.output
    log = child.output
    step = _steps_logged(run_dir)  # the run stopped at the end of a step: its last record is that step's
    assert 4 <= step < 16
    assert log.splitlines()[-1] == (f"ernie-cpt: interrupted at step {step} ({signal.Signals(signum).name}); saved "
                                    f"checkpoint step-{step:08d}; continue with the same command and --resume")
    assert _all_checkpoints_readable(run_dir) == [step] and latest_name(run_dir) == f"step-{step:08d}"
    assert not _partial_folders(run_dir)

    child = start_cli(_term_args(corpus, run_dir, resume=True))
    assert child.wait() == 0, child.output
    assert f"Resumed from {run_dir / 'checkpoints' / f'step-{step:08d}'}" in child.output
    for kind in ("train", "eval"):
        assert _comparable(run_dir, kind) == _comparable(reference, kind), kind


def test_finetune_stopped_by_sigterm_leaves_nothing_half_written(term_reference, tmp_path, start_cli):
    """Fine-tuning stops at once (it has no checkpoints to continue from): no --output-dir, no --output-json,
    no staging folder; only the message."""
    _, run_dir = term_reference
    paragraphs = []
    for path in sorted(bundled_corpus().glob("*.txt"))[:6]:
        paragraphs += [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.strip()) > 40]
    rows = [json.dumps({"text": p[:300], "label": "speech" if '"' in p else "narration"}) for p in paragraphs]
    (tmp_path / "train.jsonl").write_text("\n".join(rows[:160]) + "\n", encoding="utf-8")
    (tmp_path / "test.jsonl").write_text("\n".join(rows[160:200]) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    child = start_cli(["finetune", str(run_dir), "--train", str(tmp_path / "train.jsonl"), "--test",
                       str(tmp_path / "test.jsonl"), "--epochs", "200", "--learning-rate", "1e-3", "--batch-size", "16",
                       "--max-seq-length", "32", "--output-dir", str(out / "model"), "--output-json",
                       str(out / "results.json")])
    started = time.monotonic()
    # the first epoch's line, not the progress bar: a bar on a non-terminal may be drawn only when it closes
    while child.process.is_alive() and "epoch 1: validation accuracy" not in child.output:
        assert time.monotonic() - started < 120, child.output
        time.sleep(0.05)
    assert child.process.is_alive(), f"fine-tuning ended before the signal: {child.output}"
    os.kill(child.pid, signal.SIGTERM)

    assert child.wait() == 143, child.output
    log = child.output
    assert log.splitlines()[-1] == "ernie-cpt: interrupted (SIGTERM)"
    assert "Traceback" not in log
    assert not out.exists() or not any(out.iterdir())  # no model folder, no results, no staging folder
