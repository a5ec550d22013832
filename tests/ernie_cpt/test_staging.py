"""Staging folders of killed processes are removed by the next process that stages beside them; those of
live processes and of other hosts are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from ernie_cpt.cli import main
from ernie_cpt.staging import _host, remove_stale, staging_dir


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_only_the_staging_folders_of_dead_processes_of_this_host_are_removed(tmp_path):
    dead, host = dead_pid(), _host()
    names = {"dead": f".abc.staging-{host}-{dead}-x1y2z3", "live": f".abc.staging-{host}-{os.getpid()}-q9w8e7",
             "other host": f".abc.staging-elsewhere-{dead}-a1b2c3", "cache entry": "abc", "hidden": ".abc-1234"}
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.arrow").write_bytes(b"half")

    assert remove_stale(tmp_path) == [tmp_path / names["dead"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k != "dead")


def test_a_new_staging_folder_is_named_for_its_process_and_cleans_up_first(tmp_path):
    (tmp_path / f".old.staging-{_host()}-{dead_pid()}-abcdef").mkdir()

    staging = staging_dir(tmp_path / "annotations", "fingerprint")
    stale = staging_dir(tmp_path, "other")

    assert staging.parent == tmp_path / "annotations" and staging.name.startswith(
        f".fingerprint.staging-{_host()}-{os.getpid()}-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["annotations", stale.name])


@pytest.mark.slow
def test_a_killed_prepare_leaves_a_staging_folder_that_the_next_run_removes(tmp_path, sample_dir):
    cache = tmp_path / "cache"
    corpus = [str(p) for p in sorted(sample_dir.glob("*.txt"))]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", *corpus, "--cache-dir",
                                str(cache), "--num-proc", "1"], env=env, stderr=subprocess.DEVNULL)
    annotations = cache / "annotations"
    deadline = time.monotonic() + 300
    while not (annotations.is_dir() and any(".staging-" in p.name for p in annotations.iterdir())):
        assert process.poll() is None and time.monotonic() < deadline, "prepare ended before staging"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = [p for p in annotations.iterdir() if ".staging-" in p.name]
    assert len(left) == 1 and left[0].name.endswith(tuple("abcdefghijklmnopqrstuvwxyz0123456789_"))

    assert main(["prepare", "--corpus", *corpus, "--cache-dir", str(cache)]) == 0

    assert [p for p in annotations.iterdir() if p.name.startswith(".")] == []
    assert len(list(annotations.iterdir())) == 1  # the finished cache entry
