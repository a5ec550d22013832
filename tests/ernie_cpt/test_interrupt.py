"""SIGINT and SIGTERM, sent for real to this process: both end a command as Ctrl-C does (an
``Interrupted``, exit status 128 + the signal), while a run trains the first is only recorded (the
trainer stops at the end of the step) and a second stops at once, and a forked worker keeps the
default behaviour."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ernie_cpt import interrupt
from ernie_cpt.interrupt import Interrupted


def _wait_for_signal() -> None:
    """Give the handler a chance to run (it runs between bytecodes of the main thread)."""
    for _ in range(200):
        time.sleep(0.005)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_raises_interrupted_like_ctrl_c_and_the_handlers_are_restored(signum, code):
    before = signal.getsignal(signum)
    with pytest.raises(Interrupted) as error, interrupt.handled():
        os.kill(os.getpid(), signum)
        _wait_for_signal()
    assert isinstance(error.value, KeyboardInterrupt)
    assert error.value.exit_code == code
    assert str(error.value) == f"interrupted ({signal.Signals(signum).name})"
    assert signal.getsignal(signum) is before


def test_while_deferred_the_first_signal_is_recorded_and_a_second_raises():
    with interrupt.deferred() as stop_signal:
        assert stop_signal() is None
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for_signal()
        assert stop_signal() == signal.SIGTERM
        with pytest.raises(Interrupted) as error:
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for_signal()
    assert error.value.signum == signal.SIGINT


def test_the_message_names_the_step_the_checkpoint_and_what_to_do():
    stopped = Interrupted(signal.SIGTERM, 37, "step-00000037", "continue with the same command and --resume")
    assert str(stopped) == ("interrupted at step 37 (SIGTERM); saved checkpoint step-00000037; continue with the same "
                            "command and --resume")


def test_a_forked_worker_is_ended_by_sigterm_as_by_default():
    with interrupt.handled():
        worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
        worker.start()
        time.sleep(0.2)
        os.kill(worker.pid, signal.SIGTERM)
        worker.join(10)
    assert worker.exitcode == -signal.SIGTERM


def _prepare(corpus: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", str(corpus), "--cache-dir",
                             str(cache), "--num-proc", "1"], stderr=subprocess.PIPE, text=True)


def test_sigterm_while_annotating_ends_prepare_with_nothing_written(austen_dir, tmp_path):
    """Slurm's SIGTERM in the middle of spaCy's work (a process of its own, a real signal): exit 143, one line,
    no traceback, and neither a cache entry nor a staging folder."""
    cache = tmp_path / "cache"
    command = _prepare(austen_dir, cache)
    assert command.stderr is not None
    first = command.stderr.readline()
    assert "Annotating" in first, first
    time.sleep(1.0)
    command.send_signal(signal.SIGTERM)
    rest = command.stderr.read()

    assert command.wait(120) == 143, rest
    assert "ernie-cpt: interrupted (SIGTERM)" in rest and "Traceback" not in rest, rest
    assert not (cache / "annotations").exists() or not any((cache / "annotations").iterdir())


STOP_IN_TORCHS_IMPORT = """
import os, signal, sys

class Stop:  # a real SIGTERM to this process at the moment torch's import is half-way
    def find_spec(self, name, path=None, target=None):
        if name == "torch._meta_registrations":
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10_000):  # the handler runs between bytecodes
                pass
        return None

sys.meta_path.insert(0, Stop())
from ernie_cpt.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_in_the_middle_of_importing_torch_gives_one_line_not_a_traceback(sample_dir, tmp_path):
    """Issue 23's kind: a signal may land anywhere. One that stopped torch's import half-way made the clean-up
    import it again: a traceback, torch's own log lines and exit 1. Now: one line and exit 143."""
    done = subprocess.run([sys.executable, "-c", STOP_IN_TORCHS_IMPORT, "prepare", "--corpus", str(sample_dir),
                           "--cache-dir", str(tmp_path / "cache"), "--num-proc", "1"],
                          capture_output=True, text=True, timeout=300)

    assert done.returncode == 143, done.stderr
    assert "ernie-cpt: interrupted (SIGTERM)" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "FakeTensor" not in done.stderr, done.stderr


# --- a real signal at a chosen moment of a write, in a command of its own (start_cli) --------------------------


def _pretrain(corpus: list[str], run_dir: Path, cache_dir: str, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", *corpus, "--output-dir", str(run_dir), "--cache-dir", cache_dir, "--model-size",
            "tiny", "--batch-size", "8", "--max-seq-length", "64", "--eval-steps", "0", "--logging-steps", "1",
            "--save-steps", "1000", "--vocab-size", "3000", "--seed", "5", "--num-threads", "1", *extra]


def _staged(folder: Path) -> list[str]:
    """What an interrupted command may not leave: staging and temporary folders, locks."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if any(mark in p.name for mark in (".staging-", ".tmp-", ".trash-", ".lock")))


@pytest.fixture(scope="module")
def corpus(sample_dir) -> list[str]:
    return [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]


def test_sigterm_while_exporting_leaves_no_export_staging_folder_or_lock(corpus, cache_dir, start_cli, tmp_path):
    """SIGTERM while export writes the tokenizer into its staging folder (Slurm's time limit, say): exit 143, the
    one line, and nothing in the export's folder; the same export then succeeds."""
    run_dir = tmp_path / "run"
    from ernie_cpt.cli import main

    assert main(_pretrain(corpus, run_dir, cache_dir, "--max-steps", "2")) == 0
    out = tmp_path / "exports" / "model"
    command = start_cli(["export", str(run_dir), str(out)], signal_at_open=(".staging-", signal.SIGTERM, 1))

    assert command.wait() == 143, command.output
    assert command.output.splitlines()[-1] == "ernie-cpt: interrupted (SIGTERM)"
    assert "Traceback" not in command.output
    assert not (tmp_path / "exports").exists() or list((tmp_path / "exports").iterdir()) == []
    assert start_cli(["export", str(run_dir), str(out)]).wait() == 0 and (out / "model.safetensors").is_file()


def test_a_second_signal_while_the_final_checkpoint_is_written_keeps_the_last_one(corpus, cache_dir, start_cli,
                                                                                tmp_path):
    """The first SIGTERM stops the run at the end of its step, where it writes a checkpoint; a second one arrives
    while that checkpoint is being written (a real signal, sent when the write opens its first file): the run
    stops at once, removes the part-written checkpoint, keeps the one before it (the end of stage 1), says so, and
    --resume from it finishes the run."""
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("stages:\n- knowledge_masking: 2\n- knowledge_masking: 30\n")
    run_dir = tmp_path / "run"
    args = _pretrain(corpus, run_dir, cache_dir, "--schedule", "file", "--schedule-file", str(schedule))
    command = start_cli(args, signal_at_open=(".tmp-step-", signal.SIGTERM, 2))  # the first is stage 1's end
    train_log = run_dir / "logs" / "train.jsonl"
    while not train_log.exists() or train_log.read_text().count("\n") < 3:
        assert command.process.is_alive(), command.output
        time.sleep(0.01)
    os.kill(command.pid, signal.SIGTERM)

    assert command.wait() == 143, command.output
    assert command.output.splitlines()[-1] == ("ernie-cpt: interrupted (SIGTERM); the last checkpoint, step-00000002, "
                                               "is intact: continue with the same command and --resume")
    assert "Traceback" not in command.output
    assert _staged(tmp_path) == []
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-00000002"]

    resumed = start_cli([*args, "--resume"])
    assert resumed.wait() == 0, resumed.output
    assert f"Resumed from {run_dir / 'checkpoints' / 'step-00000002'}" in resumed.output


def _stop_after(command, run_dir: Path, steps: int, signum: int = signal.SIGTERM) -> None:
    train_log = run_dir / "logs" / "train.jsonl"
    while not train_log.exists() or train_log.read_text().count("\n") < steps:
        assert command.process.is_alive(), command.output
        time.sleep(0.01)
    os.kill(command.pid, signum)


def test_a_second_signal_in_the_first_checkpoint_of_a_run_resume_started_over(corpus, cache_dir, start_cli, tmp_path):
    """A run killed before its first checkpoint is started over by --resume; a second signal in that run's first
    checkpoint write leaves no run, and the advice is the command that starts it (not --resume, which would
    find no run to continue)."""
    run_dir = tmp_path / "run"
    args = _pretrain(corpus, run_dir, cache_dir, "--max-steps", "12")
    killed = start_cli(args)
    _stop_after(killed, run_dir, 1, signal.SIGKILL)
    killed.wait()
    assert (run_dir / "run_config.json").is_file() and not (run_dir / "checkpoints").exists()

    command = start_cli([*args, "--resume"], signal_at_open=(".tmp-step-", signal.SIGTERM, 1))
    while "stopped before its first checkpoint; starting it over" not in command.output:  # the old log is gone
        assert command.process.is_alive(), command.output
        time.sleep(0.01)
    _stop_after(command, run_dir, 1)

    assert command.wait() == 143, command.output
    assert command.output.splitlines()[-1] == ("ernie-cpt: interrupted (SIGTERM); nothing was saved: run the same "
                                               "command again without --resume")
    assert not run_dir.exists() and _staged(tmp_path) == []
    assert start_cli(args).wait() == 0
