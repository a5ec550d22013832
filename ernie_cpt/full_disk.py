"""A write that fails for want of space, whatever exception type the library that wrote wraps it in.

A full disk (ENOSPC), an exceeded quota (EDQUOT), a file over the size limit (EFBIG: ``ulimit -f``)
or a failing device (EIO) reaches ernie-cpt as an ``OSError`` from Python, a ``RuntimeError
... unexpected pos`` from ``torch.save`` (the errno is lost in its C++ writer), a
``SafetensorError ... (os error 28)`` from safetensors, a plain ``Exception`` from tokenizers or a
``DatasetGenerationError`` from datasets (with the ``OSError`` as its cause). :func:`disk_problem`
recognises each: by the errno of any exception in the cause/context chain, by the ``os error N``
that Rust libraries put in their messages, and, for a library that keeps neither, by the file
system itself at the moment of failure (almost no space or no inode left where the block wrote,
or a file there, or in a folder there, at the process's size limit).

:func:`writing` wraps a write: such a failure becomes :class:`DiskFull`, a UserError whose one
line names what was being written and what to do. Callers remove what the failed write left
(staging folders, temporary files) as they do for any error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import threading
from collections.abc import Iterator
from pathlib import Path

from ernie_cpt.errors import UserError

PROBLEMS = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large (over the file size limit, ulimit -f)",
            errno.EIO: "input/output error (a failing device, or a network file system out of space)"}
# How the C library words each errno, as libraries that drop the number quote it.
WORDS = {os.strerror(number).lower(): number for number in PROBLEMS}
RUST_ERRNO = re.compile(r"os error (\d+)|\bcode: (\d+)")
LOW_SPACE = 1 << 20  # bytes: below this, a failed write found the disk full
RERUN = "free space, then run the same command again"


class DiskFull(UserError):
    """A write failed for want of space (or quota, or size limit, or a device error).

    ``problem`` says which (``"no space left on device"``), ``what`` names what was being written
    (``"checkpoint step-00000004 in RUN/checkpoints"``), and ``advice`` what to do (by default: free
    space and run the command again). The message: ``{problem} while writing {what}; {advice}``."""

    def __init__(self, problem: str, what: str, advice: str = RERUN) -> None:
        self.problem, self.what, self.advice = problem, what, advice
        super().__init__(f"{problem} while writing {what}; {advice}")

    def with_advice(self, advice: str) -> DiskFull:
        """The same failure with other advice (what a command that knows more can say)."""
        return DiskFull(self.problem, self.what, advice)


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and every exception in its cause/context chain (each once)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _errno(error: BaseException) -> int | None:
    if isinstance(error, OSError) and error.errno in PROBLEMS:
        return error.errno
    text = str(error)
    for match in RUST_ERRNO.finditer(text):
        number = int(match[1] or match[2])
        if number in PROBLEMS:
            return number
    lowered = text.lower()
    return next((number for words, number in WORDS.items() if words in lowered), None)


def _existing(path: Path) -> Path | None:
    """``path`` or its nearest existing ancestor."""
    return next((p for p in (path, *path.absolute().parents) if p.exists()), None)


def _full_file_system(folder: Path) -> str | None:
    """What the file system of ``folder`` lacks right now for a write, or None: almost no space or no
    inode left (what an unprivileged process may use; root may use the blocks reserved for it), or a
    file in ``folder`` at this process's file size limit."""
    where = _existing(folder)
    if where is None:
        return None
    stats = os.statvfs(where)
    root = os.geteuid() == 0
    free = (stats.f_bfree if root else stats.f_bavail) * stats.f_frsize
    inodes = stats.f_ffree if root else stats.f_favail
    if free < LOW_SPACE or (stats.f_files and inodes == 0):
        return PROBLEMS[errno.ENOSPC]
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and where.is_dir():
        with contextlib.suppress(OSError):  # the file written, in the folder or a staging folder in it
            if any(f.is_file() and f.stat().st_size >= limit for f in (*where.glob("*"), *where.glob("*/*"))):
                return PROBLEMS[errno.EFBIG]
    return None


def disk_problem(error: BaseException, *folders: Path) -> str | None:
    """``"no space left on device"`` (or another of :data:`PROBLEMS`) when ``error`` comes from a write
    that failed for want of space, else None; ``folders`` are where the write went, looked at when no
    exception of the chain says why (see the module)."""
    for item in _chain(error):
        number = _errno(item)
        if number is not None:
            return PROBLEMS[number]
    return next(filter(None, (_full_file_system(Path(folder)) for folder in folders)), None)


@contextlib.contextmanager
def writing(what: str, *folders: Path, advice: str = RERUN) -> Iterator[None]:
    """Turn a write of ``what`` into ``folders`` that fails for want of space into :class:`DiskFull`
    (``advice`` says what to do); any other error passes unchanged, as does a DiskFull raised
    inside (it names the inner, more exact, write)."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        problem = disk_problem(e, *folders)
        if problem is None:
            raise
        raise DiskFull(problem, what, advice) from e


@contextlib.contextmanager
def advice_on_full_disk(advice: str) -> Iterator[None]:
    """Give a DiskFull raised in the block ``advice`` instead of its own: what a command that knows
    how it continues says (compare reruns where pretrain resumes)."""
    try:
        yield
    except DiskFull as e:
        raise e.with_advice(advice) from e


def unnamed_disk_full(error: BaseException) -> DiskFull | None:
    """``error`` as a DiskFull when its chain says it is a full disk (by errno: no block named the write),
    naming the file of the chain's OSError if it has one; else None. The command line's last resort."""
    problem = disk_problem(error)
    if problem is None:
        return None
    name = next((e.filename for e in _chain(error) if isinstance(e, OSError) and e.filename), None)
    first_line = next(iter(str(error).splitlines()), "")
    return DiskFull(problem, str(name) if name else f"a file ({type(error).__name__}: {first_line})")


def quiet_threads() -> None:
    """Keep a thread that fails for want of space (TensorBoard's event writer) from printing a traceback:
    the thread waiting for it raises the same error, which the command line reports in one line."""
    default = threading.excepthook
    if getattr(default, "quiet_full_disk", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or disk_problem(args.exc_value) is None:
            default(args)

    hook.quiet_full_disk = True  # type: ignore[attr-defined]
    threading.excepthook = hook
