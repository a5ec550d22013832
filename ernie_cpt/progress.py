"""Progress of long loops: a tqdm bar on a terminal, a log line now and then everywhere else.

On a terminal tqdm redraws one line in place. Written to a file or a CI log, each redraw would
be one more line (tqdm ends them with a carriage return), so there progress is logged instead:
at the first update, then at most every ``LOG_INTERVAL_S`` seconds, and at the end, as
``Pre-training: 120/1,200 steps (10%), 2.31 steps/s, 7m47s left, task=..., loss=...``.
``TQDM_DISABLE`` (any value) silences both, as it silences tqdm.

``--verbose`` (``show_library_progress``) also shows the bars of the libraries (tokenizer
training, transformers' "Writing model shards", `datasets` maps), silent by default.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

log = logging.getLogger("ernie_cpt")

LOG_INTERVAL_S = 30.0
_ENV_SET_HERE: set[str] = set()  # variables this process set, which a later call may change again


def _set_env(name: str, value: str | None) -> None:
    """Set (or with None, remove) a library's variable unless the user set it."""
    if name in os.environ and name not in _ENV_SET_HERE:
        return
    _ENV_SET_HERE.add(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def show_library_progress(show: bool) -> None:
    """Show or hide the progress bars of transformers (and tokenizer training) and `datasets`.
    A library not loaded yet reads the setting from its environment variable when it loads; one
    already loaded is told directly. A variable the user set wins."""
    _set_env("HF_HUB_DISABLE_PROGRESS_BARS", None if show else "1")  # transformers' bars follow the Hub's
    _set_env("HF_DATASETS_DISABLE_PROGRESS_BARS", None if show else "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        (transformers_logging.enable_progress_bar if show else transformers_logging.disable_progress_bar)()
    if "datasets" in sys.modules:
        import datasets

        (datasets.enable_progress_bars if show else datasets.disable_progress_bars)()


def library_progress_shown() -> bool:
    """Whether library bars (e.g. ``train_new_from_iterator``'s) should be shown: ``--verbose`` on a terminal."""
    return not os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS") and sys.stderr.isatty()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class LoggedProgress:
    """tqdm's ``update``/``set_postfix``/``close`` interface, reported as log lines (see the module)."""

    def __init__(self, total: int, desc: str, unit: str, initial: int = 0, interval_s: float = LOG_INTERVAL_S) -> None:
        self.total, self.desc, self.unit, self.n, self.interval_s = total, desc, unit, initial, interval_s
        self.start_n, self.start = initial, time.monotonic()
        self.logged_at: float | None = None
        self.logged_n = initial
        self.postfix: dict[str, Any] = {}

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.logged_at is None or now - self.logged_at >= self.interval_s or self.n >= self.total:
            self._log(now)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.n != self.logged_n:
            self._log(time.monotonic())

    def __enter__(self) -> LoggedProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log(self, now: float) -> None:
        rate = (self.n - self.start_n) / max(now - self.start, 1e-9)
        left = f", {_duration((self.total - self.n) / rate)} left" if rate > 0 and self.n < self.total else ""
        extra = "".join(f", {key}={value}" for key, value in self.postfix.items())
        log.info("%s: %s/%s %ss (%.0f%%), %.2f %ss/s%s%s", self.desc, f"{self.n:,}", f"{self.total:,}", self.unit,
                 100 * self.n / max(self.total, 1), rate, self.unit, left, extra)
        self.logged_at, self.logged_n = now, self.n


def progress(total: int, desc: str, unit: str = "it", initial: int = 0, disable: bool = False) -> Any:
    """A tqdm bar on a terminal, a :class:`LoggedProgress` otherwise (silent with ``disable`` or
    ``TQDM_DISABLE``)."""
    from tqdm.auto import tqdm

    if disable or os.environ.get("TQDM_DISABLE"):
        return tqdm(total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, unit=unit)
    return LoggedProgress(total, desc, unit, initial)
