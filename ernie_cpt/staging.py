"""Staging folders: where a cache entry or an export is written before it is renamed into place.

A folder is built as ``<parent>/.<name>.staging-<host>-<pid>-<random>`` and renamed to its final
name only when complete, so readers never see a part of one. A process killed meanwhile (SIGKILL,
a power cut) leaves its staging folder behind, as large as what it was writing; the next
process that stages in the same parent removes those of processes that no longer run on this
host (``os.kill(pid, 0)``). Staging folders of other hosts (a cache on a shared file system) and
of live processes are left alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

STAGING = re.compile(r"^\.(?P<name>.+)\.staging-(?P<host>.+)-(?P<pid>\d+)-[a-z0-9_]+$")


def _host() -> str:
    return socket.gethostname().replace("/", "_") or "localhost"


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: Path) -> list[Path]:
    """Remove the staging folders under ``parent`` left by processes of this host that no longer run;
    returns them."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    host = _host()
    for entry in parent.iterdir():
        match = STAGING.match(entry.name)
        if match and match["host"] == host and not process_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    if removed:
        log.info("removed %d staging folder(s) left in %s by killed processes: %s", len(removed), parent,
                 ", ".join(p.name for p in removed))
    return removed


def staging_dir(parent: Path, name: str) -> Path:
    """A new, empty staging folder for ``parent / name`` (made after removing stale ones in ``parent``)."""
    parent.mkdir(parents=True, exist_ok=True)
    remove_stale(parent)
    return Path(tempfile.mkdtemp(prefix=f".{name}.staging-{_host()}-{os.getpid()}-", dir=parent))
