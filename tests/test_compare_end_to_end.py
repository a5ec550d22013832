"""``ernie-cpt compare`` end to end on a tiny model: two curricula, two tasks, a small downstream
slice. Every report file is written, its numbers are those of the runs' own logs, both curricula
start from the same initialisation, and a second call re-runs nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.run_log import read_records

pytestmark = pytest.mark.slow

TASKS = ["knowledge_masking", "capitalization"]
FORTUNES = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "fortunes-topics"


@pytest.fixture
def downstream(tmp_path) -> list[str]:
    """160 fortunes-topics training examples (enough for a stratified validation split of 16 rows over
    the 8 labels) and 16 test examples, or no downstream set where the corpus is absent."""
    if not FORTUNES.is_dir():
        return []
    train = (FORTUNES / "train.jsonl").read_text(encoding="utf-8").splitlines()[:160]
    labels = {json.loads(line)["label"] for line in train}
    test = [line for line in (FORTUNES / "test.jsonl").read_text(encoding="utf-8").splitlines()
            if json.loads(line)["label"] in labels][:16]
    for split, lines in (("train", train), ("test", test)):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["--downstream-train", str(tmp_path / "train.jsonl"), "--downstream-test", str(tmp_path / "test.jsonl"),
            "--downstream-epochs", "1", "--downstream-batch-size", "16", "--downstream-learning-rate", "1e-3"]


def stage_end_scores(run_dir: Path) -> dict[tuple[int, str], float]:
    """R[stage][task] as logged: the accuracy of the evaluations that end a stage."""
    return {(r["stage"], r["task"]): r["accuracy"] for r in read_records(run_dir, "eval") if r["stage_end"]}


def test_compare_writes_the_report_of_its_runs_and_resumes_without_rerunning(sample_dir, tmp_path, downstream):
    out = tmp_path / "compare"
    argv = ["compare", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]], "--output-dir", str(out),
            "--tasks", *TASKS, "--schedules", "continual,sequential", "--steps-per-task", "10", "--eval-steps", "5",
            "--model-size", "tiny", "--batch-size", "8", "--vocab-size", "3000", "--learning-rate", "1e-3",
            "--max-seq-length", "64", "--eval-max-examples", "32", "--logging-steps", "1", "--seed", "3", *downstream]

    assert main(argv) == 0

    report = out / "report"
    for name in ["report.md", "summary.json", "summary.csv", "forgetting.png", "heatmap-continual.png",
                 "heatmap-sequential.png", "curves-continual.png", "curves-sequential.png",
                 "metrics/continual-seed3.json", "metrics/sequential-seed3.json"]:
        assert (report / name).stat().st_size > 0, name
    runs = {row["schedule"]: row for row in json.loads((report / "summary.json").read_text())["runs"]}
    assert list(runs) == ["continual", "sequential"]

    # continual: (knowledge_masking 10) -> (capitalization 10). knowledge_masking is forgotten by
    # R[0] - R[1]; capitalization, first trained in the last stage, has no forgetting; BWT is
    # knowledge_masking's R[1] - R[0], the only task trained before the last stage.
    r = stage_end_scores(out / "runs" / "continual-seed3")
    row = runs["continual"]
    assert row["forgetting_knowledge_masking"] == pytest.approx(r[0, "knowledge_masking"] - r[1, "knowledge_masking"])
    assert row["forgetting_capitalization"] is None
    assert row["mean_forgetting"] == pytest.approx(row["forgetting_knowledge_masking"])
    assert row["backward_transfer"] == pytest.approx(r[1, "knowledge_masking"] - r[0, "knowledge_masking"])
    assert row["average_final"] == pytest.approx((r[1, "knowledge_masking"] + r[1, "capitalization"]) / 2)
    assert sorted(r) == [(0, "knowledge_masking"), (1, "capitalization"), (1, "knowledge_masking")]
    # sequential: (knowledge_masking 5) -> (knowledge_masking 5, capitalization 10): both tasks train in
    # the last stage, so BWT has no task and is 0.
    r = stage_end_scores(out / "runs" / "sequential-seed3")
    row = runs["sequential"]
    assert row["forgetting_knowledge_masking"] == pytest.approx(r[0, "knowledge_masking"] - r[1, "knowledge_masking"])
    assert row["backward_transfer"] == 0.0
    assert row["average_final"] == pytest.approx((r[1, "knowledge_masking"] + r[1, "capitalization"]) / 2)
    if downstream:
        for schedule, row in runs.items():
            finetuned = json.loads((out / "runs" / f"{schedule}-seed3" / "finetune.json").read_text())
            assert row["downstream_accuracy"] == finetuned["accuracy_mean"]
            assert row["downstream_majority_accuracy"] == finetuned["majority_accuracy"]

    # Both curricula open with knowledge_masking alone: same initialisation, same data, same first loss.
    first_losses = {s: read_records(out / "runs" / f"{s}-seed3", "train")[0] for s in runs}
    assert first_losses["continual"]["task"] == first_losses["sequential"]["task"] == "knowledge_masking"
    assert first_losses["continual"]["loss"] == first_losses["sequential"]["loss"]

    # Started again with the same arguments, compare reads the finished runs instead of re-running them.
    results = sorted(out.glob("runs/*/result.json"))
    stamps = {path: path.stat().st_mtime_ns for path in [*results, *out.glob("runs/*/logs/train.jsonl")]}
    assert len(results) == 2

    assert main(argv) == 0

    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert {row["schedule"]: row for row in json.loads((report / "summary.json").read_text())["runs"]} == runs
