"""An output folder is claimed by one command at a time: a second command that would write it exits 2 naming
the holder (pid and host), and a lock left by a killed holder (SIGKILL, with a forked worker still alive)
blocks nothing. Every holder here is a real second process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ernie_cpt.claims import claim, lock_path
from ernie_cpt.cli import main
from ernie_cpt.errors import UserError
from tests.helpers import expect_error

NO_PIPELINE = "no_such_pipeline_xyz"
HOLDER = """
import os, sys, time
from ernie_cpt.claims import claim
with claim(sys.argv[1], "--output-dir", "pretrain"):
    ready, started = os.pipe()
    worker = os.fork() if sys.argv[2] == "fork" else None  # a forked worker, as data loaders and spaCy have
    if worker == 0:
        os.write(started, b"1")  # past the at-fork handlers, which run before fork() returns in the child
        time.sleep(600)
        os._exit(0)
    if worker:
        os.read(ready, 1)  # a loaded machine may run the child late: wait until it is past the fork
    print(worker or "", flush=True)
    time.sleep(600)
"""


class Holder:
    """A process that claims ``folder`` (with ``fork``, then forks a worker that outlives it when killed)."""

    def __init__(self, folder: Path, fork: bool = False) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), "fork" if fork else "-"],
                                        stdout=subprocess.PIPE, text=True)
        worker = self.process.stdout.readline().strip()  # printed once the claim is held
        self.worker = int(worker) if worker else None
        self.pid = self.process.pid

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        for pid in (self.pid, self.worker):
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait()


@pytest.fixture
def holders():
    started: list[Holder] = []

    def start(folder: Path, fork: bool = False) -> Holder:
        started.append(Holder(folder, fork))
        return started[-1]

    yield start
    for holder in started:
        holder.stop()


def in_use(folder: Path, holder: Holder) -> str:
    return (f"{folder} is in use by another ernie-cpt process (pid {holder.pid} on host {socket.gethostname()}, "
            f"started ")


def test_every_command_refuses_a_folder_another_process_writes(holders, tmp_path, capsys):
    target = tmp_path / "target"
    holder = holders(target)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "encoder_config.json").write_text("{}")  # what marks a run directory
    for name in ("train.jsonl", "test.jsonl"):
        (tmp_path / name).write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    labelled = ["--train", str(tmp_path / "train.jsonl"), "--test", str(tmp_path / "test.jsonl")]
    pretrain = ["pretrain", "--output-dir", str(target), "--spacy-model", NO_PIPELINE]
    cases = [
        (pretrain, "--output-dir"),
        ([*pretrain, "--resume"], "--output-dir"),
        (["compare", "--tasks", "knowledge_masking", "capitalization", "--output-dir", str(target)], "--output-dir"),
        (["export", str(tmp_path / "run"), str(target)], "OUT_DIR"),
        (["finetune", str(tmp_path / "run"), *labelled, "--output-dir", str(target)], "--output-dir"),
        (["finetune", str(tmp_path / "run"), "--task", f"a:classification:{tmp_path / 'train.jsonl'}:"
          f"{tmp_path / 'test.jsonl'}", "--multitask-dir", str(target), "--learning-rate", "1e-3"], "--multitask-dir"),
    ]
    for argv, flag in cases:
        line = expect_error(argv, capsys, tmp_path, in_use(target, holder))
        assert line.endswith(f", ernie-cpt pretrain); wait for it to finish or choose another {flag}"), line


def test_a_lock_left_by_a_killed_holder_blocks_nothing(holders, tmp_path, capsys):
    """SIGKILL, with a forked worker of the holder still running (it closed its copy of the lock at the fork)."""
    target = tmp_path / "target"
    holder = holders(target, fork=True)
    with pytest.raises(UserError, match=f"pid {holder.pid} on host"), claim(target, "--output-dir", "pretrain"):
        pass
    holder.kill()
    assert lock_path(target).exists() and holder.worker is not None and os.kill(holder.worker, 0) is None

    with claim(target, "--output-dir", "pretrain"):
        assert f'"pid": {os.getpid()}' in lock_path(target).read_text()
    assert not lock_path(target).exists()  # removed once released
    expect_error(["pretrain", "--output-dir", str(target), "--resume", "--spacy-model", NO_PIPELINE], capsys,
                  tmp_path, f"--resume: {target} holds no checkpoint to resume")  # past the claim


def test_a_second_pretrain_on_a_running_runs_folder_is_refused_also_with_resume(sample_dir, cache_dir, start_cli,
                                                                              tmp_path, capsys):
    run_dir = tmp_path / "run"
    args = ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]], "--output-dir",
            str(run_dir), "--cache-dir", cache_dir, "--model-size", "tiny", "--max-steps", "400", "--batch-size", "8",
            "--max-seq-length", "64", "--save-steps", "1000", "--eval-steps", "0", "--vocab-size", "3000"]
    first = start_cli(args)
    deadline = time.monotonic() + 300
    while not (run_dir / "run_config.json").exists():
        assert first.process.is_alive() and time.monotonic() < deadline, first.output
        time.sleep(0.05)

    for argv in (args, [*args, "--resume"]):
        capsys.readouterr()
        assert main(argv) == 2
        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(f"ernie-cpt: error: {run_dir} is in use by another ernie-cpt process (pid "
                               f"{first.pid} on host {socket.gethostname()}, started "), line
        assert line.endswith(", ernie-cpt pretrain); wait for it to finish or choose another --output-dir"), line
    assert first.process.is_alive()  # the first run went on untouched

    first.kill()
    capsys.readouterr()
    assert main([*args, "--resume", "--learning-rate", "0.01"]) == 2  # past the claim, to the resume check
    assert "--resume: the run in" in capsys.readouterr().err


def test_a_lock_file_another_user_left_is_taken_over(unprivileged, tmp_path):
    """Another user's lock file (mode 644: it cannot be written) of a process that ended: locked read-only,
    replaced."""
    if os.geteuid() != 0:
        pytest.skip("making a file of another user needs root")
    target = tmp_path / "target"
    lock = lock_path(target)
    lock.write_text('{"pid": 1, "host": "elsewhere"}')
    os.chown(lock, 65534, 65534)
    lock.chmod(0o644)
    script = ("import os, sys\nfrom ernie_cpt.claims import claim, lock_path\n"
              "with claim(sys.argv[1], '--output-dir', 'pretrain'):\n"
              "    print(os.getpid(), lock_path(sys.argv[1]).read_text())\n")

    done = subprocess.run([*unprivileged, sys.executable, "-c", script, str(target)], capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stderr
    pid, details = done.stdout.split(" ", 1)
    assert f'"pid": {pid}' in details and "elsewhere" not in details
    assert not lock.exists()


@pytest.mark.slow
def test_under_torchrun_rank_0_claims_and_every_rank_stops_on_a_held_folder(holders, tmp_path):
    """Only rank 0 writes the run directory, so only it claims; the others get its error instead of a wait."""
    target = tmp_path / "target"
    holder = holders(target)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
               "ernie_cpt", "pretrain", "--output-dir", str(target), "--spacy-model", NO_PIPELINE, "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("ernie-cpt") and "error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"ernie-cpt: error: {in_use(target, holder)}"), result.stderr
    # torchrun's summary: rank 0, which printed the error, failed first with exit 2 (the other rank waited for it,
    # then torchrun stopped it, or it exited 2 too)
    root = result.stderr.split("Root Cause")[1]
    root = root.split("=====")[0]
    assert "rank      : 0" in root and "exitcode  : 2" in root, result.stderr
