"""Commands in a process of their own: the CLI in a child of a forkserver that has imported it (a start costs
about a second, not ten), with its output, a file size limit, torchrun's variables or a real signal at a chosen
moment of a write. The ``start_cli`` and ``start_ranks`` fixtures (conftest.py) start them; a module-scoped
fixture can start a :class:`CliProcess` itself.

Not forked from the test process: tqdm's lock is a multiprocessing semaphore, shared by every process forked after
it was made, and a run killed while drawing its progress bar leaves it held, so every later fork hangs at its first
bar. The server has drawn no bar, so each command makes a lock of its own."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

FORKSERVER = multiprocessing.get_context("forkserver")
FORKSERVER.set_forkserver_preload(["ernie_cpt.cli", "ernie_cpt.commands.pretrain", "torch.utils.tensorboard"])


def _marked_folder(path: str, marker: str) -> str | None:
    """The folder that ``path`` lies in whose name holds ``marker``, if any (not ``path`` itself)."""
    parts = Path(path).parts
    found = next((i for i, part in enumerate(parts[:-1]) if marker in part), None)
    return None if found is None else str(Path(*parts[:found + 1]))


def _signal_at_open(marker: str, signum: int, nth: int = 1) -> None:
    """Send ``signum`` to this process, for real, the first time it opens a file in the ``nth`` folder whose name
    holds ``marker``, so that a signal lands at a chosen moment of a write: ``(".tmp-step-", SIGTERM, 2)``, while
    the second checkpoint is being written. An audit hook: Python reports every ``open``, but not the writes of
    libraries' native code, so in a checkpoint the moment is after safetensors and torch.save have written the
    weights and the optimizer state, as the trainer state is opened. Opening such a folder itself
    (``shutil.rmtree`` removing one a killed run left) does not count."""
    import signal
    import sys

    folders: list[str] = []

    def hook(event: str, args: tuple) -> None:
        if event != "open" or len(folders) >= nth or not isinstance(args[0], (str, os.PathLike)):
            return
        folder = _marked_folder(os.fsdecode(args[0]), marker)
        if folder is not None and folder not in folders:
            folders.append(folder)
            if len(folders) == nth:
                os.kill(os.getpid(), signal.Signals(signum))

    sys.addaudithook(hook)


def _cli_child(argv: list[str], log_file: str, file_size_limit: int | None, env: dict[str, str] | None = None,
               signal_at_open: tuple[str, int, int] | None = None) -> None:
    """The body of a :class:`CliProcess`: the CLI, its output in ``log_file``, one torch thread,
    with ``env`` added to the environment (a rank's torchrun variables), and with ``file_size_limit``,
    RLIMIT_FSIZE (a write past it fails with EFBIG: Python ignores SIGXFSZ); ``signal_at_open``: (marker,
    signal, nth), see :func:`_signal_at_open`."""
    import logging
    import resource
    import sys

    import torch

    from ernie_cpt.cli import main

    if file_size_limit is not None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    os.environ.update(env or {})
    torch.set_num_threads(1)
    out = open(log_file, "w", buffering=1)  # noqa: SIM115  (a named pipe; lives as long as the process)
    os.dup2(out.fileno(), 1)
    os.dup2(out.fileno(), 2)
    sys.stdout = sys.stderr = out
    logging.getLogger().handlers.clear()  # pytest's capture handlers; the CLI configures its own
    if signal_at_open is not None:
        _signal_at_open(*signal_at_open)
    sys.exit(main(argv))


class CliProcess:
    """A command (the fixture ``start_cli`` starts them): ``pid``, ``wait()`` -> exit code, ``output`` (its stdout and
    stderr, so far) and ``error_lines`` (its ``ernie-cpt: error:`` lines). The output comes through a named
    pipe, which a file size limit does not touch."""

    def __init__(self, argv: list[str], log_file: Path, file_size_limit: int | None, env: dict[str, str] | None = None,
                 signal_at_open: tuple[str, int, int] | None = None) -> None:
        os.mkfifo(log_file)
        self.chunks: list[str] = []
        self.reader = threading.Thread(target=self._read, args=(log_file,), daemon=True)
        self.reader.start()
        self.process = FORKSERVER.Process(target=_cli_child, args=(argv, str(log_file), file_size_limit, env,
                                                                   signal_at_open))
        self.process.start()
        self.pid = self.process.pid

    def _read(self, fifo: Path) -> None:
        with open(fifo, encoding="utf-8", errors="replace") as f:
            while chunk := f.read(1024):
                self.chunks.append(chunk)

    def wait(self, timeout: float = 300) -> int:
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            raise AssertionError(f"the command did not end within {timeout} s:\n{self.output}")
        self.reader.join(10)
        return self.process.exitcode

    def wait_stopped(self, timeout: float = 300) -> None:
        """Wait until the command has stopped (``signal_at_open`` with SIGSTOP: it stands still at that moment while
        the test changes its world; SIGCONT lets it go on)."""
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()[0] != "T":
            assert self.process.is_alive() and time.monotonic() < deadline, self.output
            time.sleep(0.01)

    def kill(self) -> None:
        self.process.kill()
        self.process.join()
        self.reader.join(10)

    @property
    def output(self) -> str:
        return "".join(self.chunks)

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.startswith("ernie-cpt: error:")]
