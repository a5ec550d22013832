"""SIGINT and SIGTERM, sent for real to this process: both end a command as Ctrl-C does (an
``Interrupted``, exit status 128 + the signal), while a run trains the first is only recorded (the
trainer stops at the end of the step) and a second stops at once, and a forked worker keeps the
default behaviour."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

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
