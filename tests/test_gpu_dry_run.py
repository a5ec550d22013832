"""``scripts/gpu_check.sh`` at toy sizes on the CPU, every step of it, so that it cannot rot while no
GPU is lent: ``make gpu-wheels`` and ``make gpu-data`` (downloads from PyPI, cached in ``.gpu-build/``),
pip's resolver over the wheelhouse for Python 3.12 on manylinux x86_64 against the GPU image's
packages, then every later phase in a Python that has only the image's packages (at the image's
versions of transformers, huggingface-hub, tokenizers and accelerate) and the wheelhouse's: no spaCy.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.minutes]

ROOT = Path(__file__).resolve().parents[1]
SHARED_CORPORA = ROOT.parent / "shared" / "corpora"


def test_the_gpu_check_runs_every_step_at_toy_sizes_on_the_cpu(tmp_path):
    if not (SHARED_CORPORA / "fortunes-topics").is_dir():
        pytest.skip(f"{SHARED_CORPORA} is absent: the value experiment's downstream set comes from there")
    env = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_QUICK": "1", "GPU_CHECK_SECONDS": "1500"}
    done = subprocess.run([str(ROOT / "scripts" / "gpu_check.sh"), "--out", str(tmp_path)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1600)
    results = json.loads((tmp_path / "gpu-check.json").read_text())
    phases = results["phases"]
    log = (tmp_path / "log.txt").read_text()[-4000:]
    assert done.returncode == 0, f"{done.stdout}\n{log}"
    assert {name: phase["status"] for name, phase in phases.items()} == dict.fromkeys(
        ["install", "env", "smoke", "bench", "value"], "ok")

    install = phases["install"]
    assert [(r["pyarrow"], r["datasets"]) for r in install["resolver"]][1] == ("21.0.0", "5.0.0")
    assert all(r["datasets"] and r["multiprocess"] for r in install["resolver"])
    assert sum(install["sizes_mib"].values()) < 64
    env_phase = phases["env"]
    assert (env_phase["spacy"], env_phase["transformers"], env_phase["huggingface-hub"]) == ("absent", "5.17.0",
                                                                                             "1.33.0")

    smoke = phases["smoke"]
    assert smoke["steps"] == 4 and len(smoke["tasks"]) == 7 and smoke["skipped_steps"] == 0
    assert all(task["finite"] for task in smoke["tasks"].values())
    assert smoke["resume"]["within"] and smoke["resume"]["killed_after_step"] > smoke["resume"]["resumed_from_step"]
    assert len(smoke["fill_mask"]["top5"]) == 5 and smoke["fill_mask"]["model_device"] == "cpu"

    assert [row["measure"].split(" ")[0] for row in phases["bench"]["rows"]] == ["1a.", "1b.", "2.", "3.", "11."]

    value = phases["value"]
    assert (value["plan"]["steps_per_task"], value["seeds_reported"]) == (2, 2)
    assert value["answer"].startswith("**On drop from best to final") and len(value["fill_mask_pipeline"]["top5"]) == 5
    assert "joint" in (tmp_path / "value-report.md").read_text()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["bench.json", "gpu-check.json", "gpu-check.md", "log.txt", "value-evidence.png",
                     "value-report.md", "value-summary.json"]
    assert "| smoke | ok |" in (tmp_path / "gpu-check.md").read_text()
