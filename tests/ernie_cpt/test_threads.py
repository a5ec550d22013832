"""Thread defaults that degrade gracefully under CPU contention: the OpenMP spin set before torch loads
unless the user chose, and a thread count from the CPUs this process may use less its workers."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from ernie_cpt import threads


def test_the_available_cpus_are_the_affinity_mask_capped_by_the_cgroup_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5, 7})
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: None)
    assert threads.available_cpus() == 4
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 2.5)
    assert threads.available_cpus() == 2  # 2.5 CPUs of time: 3 threads would wait for each other
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 0.5)
    assert threads.available_cpus() == 1


@pytest.mark.parametrize(("membership", "files", "expected"), [
    ("0::/user.slice/job\n", {"user.slice/job/cpu.max": "150000 100000\n", "user.slice/cpu.max": "max 100000\n"},
     1.5),
    ("0::/job\n", {"job/cpu.max": "max 100000\n", "cpu.max": "300000 100000\n"}, 3.0),  # the smallest up the path
    ("4:cpu,cpuacct:/docker/abc\n1:memory:/docker/abc\n",
     {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "200000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"},
     2.0),
    ("4:cpu,cpuacct:/\n", {"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, None),
    ("0::/\n", {}, None),
])
def test_cgroup_quotas_v1_and_v2(tmp_path, membership, files, expected):
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (tmp_path / "cgroup-membership").write_text(membership)

    assert threads._cgroup_quota(root, tmp_path / "cgroup-membership") == expected


@pytest.mark.parametrize(("requested", "reserved", "current", "cpus", "expected"), [
    (0, 0, 8, 2, 2),  # torch may count the machine's cores; the affinity mask says 2
    (0, 1, 8, 4, 3),  # one data-loader worker
    (0, 4, 8, 4, 1),  # never fewer than 1
    (0, 0, 1, 4, 1),  # OMP_NUM_THREADS=1 (torchrun) or torch.set_num_threads(1) by the caller
    (3, 2, 1, 2, 3),  # --num-threads decides
])
def test_the_thread_count(monkeypatch, requested, reserved, current, cpus, expected):
    monkeypatch.setattr(threads, "available_cpus", lambda: cpus)
    assert threads.choose_threads(requested, reserved, current)[0] == expected


def test_a_command_sets_its_thread_count_for_its_block_and_restores_the_callers(monkeypatch):
    """A process that runs several commands (a test, a notebook) keeps its own count between them."""
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        count, why = threads.torch_thread_count(0, reserved=1)
        assert (count, why) == (1, "2 CPUs available, 1 for workers")
        with threads.torch_threads(count, why) as used:
            assert used == 1 and torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)  # the caller's choice caps the default
        assert threads.torch_thread_count(0) == (1, "2 CPUs available, 1 set by OMP_NUM_THREADS or the caller")
    finally:
        torch.set_num_threads(before)


def _environment_after_configure(**env: str) -> dict[str, str | None]:
    code = ("import os; from ernie_cpt import threads; threads.configure_process(); import torch; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return {"GOMP_SPINCOUNT": None if out[0] == "None" else out[0], "OMP_WAIT_POLICY": None if out[1] == "None"
            else out[1]}


@pytest.mark.parametrize(("given", "expected"), [
    ({}, {"GOMP_SPINCOUNT": threads.SPIN_COUNT, "OMP_WAIT_POLICY": None}),
    ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": None, "OMP_WAIT_POLICY": "ACTIVE"}),
    ({"GOMP_SPINCOUNT": "300000"}, {"GOMP_SPINCOUNT": "300000", "OMP_WAIT_POLICY": None}),
])
def test_the_openmp_spin_is_set_before_torch_loads_unless_the_user_chose(given, expected):
    assert _environment_after_configure(**given) == expected


def test_the_command_line_sets_the_spin_before_torch_loads():
    code = ("import os, sys; import ernie_cpt.cli as cli; loaded = 'torch' in sys.modules; "
            "cli.main(['plan', '--tasks', 'knowledge_masking', '--max-steps', '10']); "
            "print(loaded, os.environ.get('GOMP_SPINCOUNT'))")
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True).stdout

    assert out.splitlines()[-1] == f"False {threads.SPIN_COUNT}"
