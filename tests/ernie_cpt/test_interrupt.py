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
