"""The GPU check's own arithmetic and bookkeeping, on synthetic inputs (the whole script runs in
``tests/test_gpu_dry_run.py``): the value experiment's sizing, the seeds a cut-short compare
finished, the smoke test's loss checks, the page written from partial results, the image's stubs."""

from __future__ import annotations

import math
import zipfile

from scripts.gpu.image import normalize, stub_wheels
from scripts.gpu.phases import loss_checks
from scripts.gpu.report import page
from scripts.gpu.value import ARMS, MAX_STEPS, MIN_STEPS, Calibration, Plan, finished_seeds, size


def test_the_steps_per_task_fill_the_time_left_after_the_fixed_costs():
    calibration = Calibration(step=0.0125, run_overhead=5.0, finetune_epoch=1.5, first_build=30.0)
    plan = size(280.0, calibration, Plan(steps_per_task=MIN_STEPS))
    # fixed: 20 s + 9 runs x 5 s + 12 fine-tunings x 3 learning rates x 2 epochs x 1.5 s = 173 s;
    # 36 steps per unit of S at 12.5 ms = 0.45 s, so S = (280 - 173) / 0.45 = 237.8
    assert plan.steps_per_task == 237
    assert math.isclose(plan.estimate["fine-tuning"], 108.0) and plan.estimate["available"] == 280.0
    assert sum(v for k, v in plan.estimate.items() if k != "available") <= 280.0
    assert size(100.0, calibration, Plan(steps_per_task=1)).steps_per_task == MIN_STEPS  # short of time: the least
    assert size(1e7, calibration, Plan(steps_per_task=1)).steps_per_task == MAX_STEPS


def test_a_seed_counts_as_finished_when_every_arm_of_it_and_of_the_seeds_before_is(tmp_path):
    plan = Plan(steps_per_task=2, seeds=3)
    for seed, arms in ((42, ARMS), (43, ARMS), (44, ARMS[:2])):
        for arm in arms:
            (tmp_path / f"{arm}-seed{seed}").mkdir()
            (tmp_path / f"{arm}-seed{seed}" / "result.json").write_text("{}")
    assert finished_seeds(tmp_path, plan) == 2
    (tmp_path / "mlm-seed42" / "result.json").unlink()
    assert finished_seeds(tmp_path, plan) == 0


def test_losses_are_finite_and_falling_by_the_first_and_last_fifth_of_the_steps():
    losses = {step: {"a": 2.0 - step / 10, "b": 1.0 if step < 10 else float("nan")} for step in range(1, 11)}
    checks = loss_checks(losses)
    assert math.isclose(checks["a"]["first"], 1.85) and math.isclose(checks["a"]["last"], 1.05)  # steps 1-2, 9-10
    assert checks["a"]["finite"] and checks["a"]["falling"]
    assert checks["b"]["finite"] is False and checks["b"]["falling"] is False


def test_the_page_shows_what_was_measured_before_a_phase_was_cut_short():
    results = {"date": "2026-12-07", "device": "cuda", "quick": False, "command": "scripts/gpu_check.sh",
               "budget_seconds": 540, "seconds": 300, "phases": {
                   "install": {"status": "ok", "seconds": 12, "installed": {"datasets": "5.2.0"}},
                   "env": {"status": "ok", "seconds": 9, "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0",
                           "cuda": "13.0", "transformers": "5.17.0", "matmul_dtype": "bf16",
                           "matmul_peak_gflops": 790_000.0},
                   "smoke": {"status": "timed out", "seconds": 150, "error": "timed out; see log.txt",
                             "command": "ernie-cpt pretrain ...", "steps": 100, "skipped_steps": 0,
                             "tokens_per_s": 50_000.0, "max_memory_allocated_mib": 2048.0,
                             "tasks": {"knowledge_masking": {"finite": True, "first": 7.0, "last": 5.0,
                                                             "falling": True}}}}}
    text = page(results)
    assert text.startswith("# ernie-cpt GPU check: NVIDIA H100 80GB HBM3, 2026-12-07")
    assert "| install | ok | 12 | datasets 5.2.0 |" in text
    assert "bf16 matmul peak 790.0 TFLOP/s" in text and "| smoke | timed out | 150 | timed out; see log.txt |" in text
    assert "| knowledge_masking | 7.0000 | 5.0000 | True | True |" in text and "peak GPU memory 2,048 MiB" in text
    assert "Kill and resume" not in text  # not measured before the cut


def test_a_stub_wheel_holds_only_the_name_and_version_of_an_image_package(tmp_path):
    (wheel,) = stub_wheels(tmp_path, {"huggingface-hub": "1.33.0"}).iterdir()
    assert wheel.name == "huggingface_hub-1.33.0-py3-none-any.whl"
    metadata = zipfile.ZipFile(wheel).read("huggingface_hub-1.33.0.dist-info/METADATA").decode()
    assert metadata.splitlines()[1:] == ["Name: huggingface-hub", "Version: 1.33.0"]
    assert normalize("Typing_Extensions") == "typing-extensions"
