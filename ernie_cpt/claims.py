"""Output folders claimed by one command at a time.

A command that writes a folder (a pretrain run directory, a compare folder, an export, a
fine-tuning output or ``--multitask-dir``) claims it before it reads or writes anything there,
and holds the claim until it is done. The claim is an exclusive ``flock`` (``fcntl``) on
``<parent>/.<name>.lock``: beside the folder, so that replacing the folder (``--overwrite``, an
export renamed into place) never touches it, and on the same file system, so that commands on
other machines sharing it see it too. The holder writes into the file who it is: pid, host, start
time and command. A second command that finds the lock held stops with a UserError that names the
holder. The kernel releases a lock when its process ends, however it ends (SIGKILL too), so a
lock file left by a killed process blocks nothing: the next command takes it over.

A released lock file is removed, while still locked. A command that opened it just before finds,
once it holds the lock, that the file at the path is no longer the one it locked, and opens the
new one, so two commands never hold one folder. Processes forked while a claim is held
(data-loader and spaCy workers) close their copy of the file, so none of them outlives a killed
holder with the lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ernie_cpt.errors import UserError
from ernie_cpt.full_disk import writing

log = logging.getLogger(__name__)

CONTENDED = (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK)
UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_HELD: set[int] = set()  # the descriptors of this process's claims


def _close_in_child() -> None:
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def lock_path(folder: Path) -> Path:
    """The lock file of ``folder``: ``.<name>.lock`` beside it (the path made absolute, links resolved)."""
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


def _same_file(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _holder(fd: int) -> str:
    """Who holds the lock, from what the holder wrote (waiting a moment for a holder that has just
    taken it)."""
    for _ in range(20):
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            info = None
        if isinstance(info, dict):
            return f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}, " \
                   f"{info.get('command')}"
        time.sleep(0.05)
    return "pid unknown"


def _open(lock: Path) -> tuple[int, bool]:
    """A descriptor of ``lock`` (made if missing), and whether it can be written: a lock file another user
    made can be locked, read and replaced, but not written."""
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666), True
    except PermissionError:
        return os.open(lock, os.O_RDONLY | os.O_CLOEXEC), False


def _acquire(lock: Path, folder: Path, flag: str, command: str) -> int | None:
    """The descriptor of ``lock``, locked, with this process's details in it; a UserError naming the
    holder when another process holds it; None, with a warning, on a file system without ``flock``."""
    while True:
        fd, writable = _open(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _holder(fd) if e.errno in CONTENDED else None
            os.close(fd)
            if holder is not None:
                raise UserError(f"{folder} is in use by another ernie-cpt process ({holder}); wait for it to finish "
                                f"or choose another {flag}") from e
            if e.errno in UNSUPPORTED:
                log.warning("the file system of %s cannot lock files (%s), so another command writing %s at the "
                            "same time would go unnoticed", lock.parent, e.strerror, folder)
                return None
            raise
        if not _same_file(fd, lock):
            os.close(fd)  # released and removed between our open and our lock: take the new file
            continue
        if writable:
            break
        try:  # another user's file, left by a process that ended: ours replaces it
            lock.unlink()
        except OSError:
            return fd  # locked, if without our details (a folder with the sticky bit)
        os.close(fd)
    started = datetime.datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": started, "command": f"ernie-cpt {command}"}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except BaseException:
        _release(fd, lock)
        raise
    return fd


def _release(fd: int, lock: Path) -> None:
    """Remove the lock file (while it is still locked), then unlock it."""
    try:
        if _same_file(fd, lock):
            lock.unlink()
    finally:
        os.close(fd)


@contextlib.contextmanager
def claim(folder: str | Path, flag: str, command: str) -> Iterator[None]:
    """Hold ``folder`` for this process while the block runs (see the module): ``flag`` names the option
    that chose it (``--output-dir``) and ``command`` the command (``pretrain``), for the error that a
    second command gets: ``RUN is in use by another ernie-cpt process (pid 1234 on host h, started
    2025-01-01 12:00:00+00:00, ernie-cpt pretrain); wait for it to finish or choose another --output-dir``.
    Folders above ``folder`` that do not exist are made (and removed again if still empty at the end)."""
    lock = lock_path(Path(folder))
    made = [p for p in (lock.parent, *lock.parent.parents) if not p.exists()]
    try:
        with writing(f"the lock file {lock}", lock.parent):
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = _acquire(lock, Path(folder), flag, command)
        if fd is None:
            yield
            return
        _HELD.add(fd)
        try:
            yield
        finally:
            _HELD.discard(fd)
            _release(fd, lock)
    finally:
        for parent in made:  # deepest first: the folders above it that this claim made, if still empty
            with contextlib.suppress(OSError):
                parent.rmdir()


@contextlib.contextmanager
def claim_on_main(folder: str | Path, flag: str, command: str) -> Iterator[None]:
    """:func:`claim` by the main process of a torchrun job, the one that writes the folder; the others
    wait for it, and get its UserError when the folder is held."""
    from ernie_cpt import distributed

    with contextlib.ExitStack() as stack:
        distributed.main_result(lambda: stack.enter_context(claim(folder, flag, command)))
        yield
