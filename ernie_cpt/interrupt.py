"""Ctrl-C (SIGINT) and SIGTERM, which Slurm, Kubernetes and torchrun send to stop a job, end a command alike.

:func:`handled` (the CLI's commands run in it) makes SIGTERM raise :class:`Interrupted`, a ``KeyboardInterrupt``, as
Ctrl-C does, so that every command unwinds the same way: what it was staging is removed and
nothing half-written is left. The exit status is 128 + the signal's number, as a shell reports a
process the signal ended: 130 for SIGINT, 143 for SIGTERM.

While a run trains, :func:`deferred` only records the first signal: the trainer stops at the end of
the step, saves a checkpoint there (so that ``--resume`` continues exactly as an uninterrupted run
would) and raises :class:`Interrupted` naming the step and the checkpoint. Under torchrun the
processes agree on the step first (``ernie_cpt.distributed.any_rank``), as each gets the signal at
its own moment. A second signal stops at once: the checkpoints already written are whole.
Child processes (spaCy and data-loader workers, forked with these handlers) keep the default
behaviour.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_owner: int | None = None  # the process that installed the handlers
_pending: int | None = None  # the signal received while deferring
_deferring = False


class Interrupted(KeyboardInterrupt):
    """A command stopped by SIGINT or SIGTERM. ``step`` and ``saved`` (the checkpoint written there)
    when a run stopped at a step boundary; ``advice`` says how to continue."""

    def __init__(self, signum: int, step: int | None = None, saved: str | None = None,
                 advice: str | None = None) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum, self.step, self.saved, self.advice = signum, step, saved, advice

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        where = f"interrupted at step {self.step} ({name})" if self.step is not None else f"interrupted ({name})"
        return "; ".join(part for part in (where, self.saved and f"saved checkpoint {self.saved}", self.advice)
                         if part)


def _handle(signum: int, frame: FrameType | None) -> None:
    global _pending
    if os.getpid() != _owner:  # a forked worker: what the signal does by default
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    if _deferring and _pending is None:
        _pending = signum
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Within the block, SIGINT and SIGTERM raise :class:`Interrupted` in this process; the handlers
    before it are restored after it. Nothing changes outside the main thread, where signals cannot be
    handled, or where the handlers are already in place."""
    global _owner
    if threading.current_thread() is not threading.main_thread() or _owner == os.getpid():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    _owner = os.getpid()
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        _owner = None
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred() -> Iterator[Callable[[], int | None]]:
    """Within the block, the first SIGINT or SIGTERM is recorded, not raised (see :func:`handled`, which
    it enters if the caller has not); yields a function that returns it (None: none yet)."""
    global _deferring, _pending
    with handled():
        if _owner != os.getpid():  # not the main thread
            yield lambda: None
            return
        _deferring, _pending = True, None
        try:
            yield lambda: _pending
        finally:
            _deferring, _pending = False, None
