"""Handing the C heap's free pages back to the operating system, where the C library can.

Memory that Python objects, `tokenizers` (Rust), Arrow or PyTorch's CPU tensors free goes back to
the C library's allocator, which on Linux is glibc's ``malloc``. glibc keeps freed blocks of its
heaps (one per thread that allocated) for later use: a process's resident memory stays at its
high-water mark although most of it is free. Two steps of ernie-cpt free far more than they keep:
training the WordPiece tokenizer (its word counts and merges, about 55 MiB for the 4M characters it
reads at most) and building the task examples before the first training step. After each, and
before each task's held-out batches in an evaluation (which, after training steps, otherwise raised
the peak by 100-140 MiB), :func:`release_free_memory` asks glibc to give the free pages back
(``malloc_trim(0)``, which releases the free pages inside every arena, not only at the top of the
main heap), so that the next step starts from what is alive.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` from the running process's C library, or None (macOS, musl, Windows)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:  # Windows: no dlopen(NULL)
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Give the free pages of the C heaps back to the operating system (glibc's ``malloc_trim(0)``).

    Nothing alive is touched; a later allocation that reuses a released page costs a page fault.
    Takes a walk over the free blocks (milliseconds). Returns whether memory was released; False also
    where the C library has no ``malloc_trim`` (it is then a no-op). Raises nothing."""
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
