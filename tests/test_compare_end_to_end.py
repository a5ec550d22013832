"""``ernie-cpt compare`` end to end on a tiny model: two curricula, two tasks, a small downstream
slice. Every report file is written, its numbers are those of the runs' own logs, both curricula
start from the same initialisation, the baselines and single-task references run with every seed,
and a second call re-runs nothing."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import ErnieConfig

from ernie_cpt.cli import main
from ernie_cpt.modeling.builder import model_from_description
from ernie_cpt.training.checkpoint import checkpoints, read_checkpoint
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
    for name in ["report.md", "report.html", "summary.json", "summary.csv", "evidence.png", "curves.png", "drop.png",
                 "heatmap-continual.png", "heatmap-sequential.png", "metrics/continual-seed3.json",
                 "metrics/sequential-seed3.json"]:
        assert (report / name).stat().st_size > 0, name
    summary = json.loads((report / "summary.json").read_text())
    runs = {row["variant"]: row for row in summary["runs"]}
    assert list(runs) == ["continual", "sequential", "mlm", "none", *(["tfidf"] if downstream else [])]
    assert summary["variants"] == ["continual", "sequential"]
    # knowledge masking alone for the curricula's 20 task steps; each task alone for the steps at which the
    # curricula first finish training it (knowledge_masking: 10 in continual, 5 in sequential)
    assert sum(1 for r in read_records(out / "runs" / "mlm-seed3", "train")) == 20
    assert [r["step"] for r in read_records(out / "runs" / "single-knowledge_masking-seed3", "eval")
            if r["stage_end"]] == [5, 10]
    fwt = runs["continual"]["fwt_capitalization"]
    alone = {r["step"]: r["accuracy"] for r in read_records(out / "runs" / "single-capitalization-seed3", "eval")}
    assert fwt == pytest.approx(stage_end_scores(out / "runs" / "continual-seed3")[1, "capitalization"] - alone[10])
    none_config = json.loads((out / "runs" / "none-seed3" / "export" / "config.json").read_text())
    encoder_config = json.loads((out / "runs" / "continual-seed3" / "encoder_config.json").read_text())
    assert none_config["hidden_size"] == encoder_config["hidden_size"] == 128

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
    # the last stage, so BWT has no task and is not defined.
    r = stage_end_scores(out / "runs" / "sequential-seed3")
    row = runs["sequential"]
    assert row["forgetting_knowledge_masking"] == pytest.approx(r[0, "knowledge_masking"] - r[1, "knowledge_masking"])
    assert row["backward_transfer"] is None
    assert row["average_final"] == pytest.approx((r[1, "knowledge_masking"] + r[1, "capitalization"]) / 2)
    if downstream:
        for schedule, row in list(runs.items())[:2]:
            finetuned = json.loads((out / "runs" / f"{schedule}-seed3" / "finetune.json").read_text())
            assert row["downstream_accuracy"] == finetuned["accuracy_mean"]
            assert row["downstream_majority_accuracy"] == finetuned["majority_accuracy"]

    # Both curricula open with knowledge_masking alone: same initialisation, same data, same first loss.
    first_losses = {s: read_records(out / "runs" / f"{s}-seed3", "train")[0] for s in ("continual", "sequential")}
    assert first_losses["continual"]["task"] == first_losses["sequential"]["task"] == "knowledge_masking"
    assert first_losses["continual"]["loss"] == first_losses["sequential"]["loss"]

    # Started again with the same arguments, compare reads the finished runs instead of re-running them.
    results = sorted(out.glob("runs/*/result.json"))
    stamps = {path: path.stat().st_mtime_ns for path in [*results, *out.glob("runs/*/logs/train.jsonl")]}
    assert len(results) == 2 + 2 + 2 + bool(downstream)  # curricula, references, mlm and none, tfidf

    assert main(argv) == 0

    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert {row["variant"]: row for row in json.loads((report / "summary.json").read_text())["runs"]} == runs


def test_a_task_every_run_skips_is_named_in_the_report_with_why(sample_dir, tmp_path):
    """Lower-cased text: capitalization has one class, so every run skips it, and the report says so."""
    corpus = tmp_path / "lower"
    corpus.mkdir()
    for path in sorted(sample_dir.glob("*.txt"))[:4]:
        (corpus / path.name).write_text(path.read_text(encoding="utf-8").lower(), encoding="utf-8")
    out = tmp_path / "compare"

    assert main(["compare", "--corpus", str(corpus), "--output-dir", str(out), "--tasks", "knowledge_masking",
                 "capitalization", "--schedules", "continual", "joint", "--steps-per-task", "3", "--eval-steps", "0",
                 "--model-size", "tiny", "--batch-size", "8", "--vocab-size", "3000", "--max-seq-length", "64",
                 "--eval-max-examples", "16", "--seed", "3"]) == 0

    markdown = (out / "report" / "report.md").read_text()
    assert "- **tasks**: knowledge_masking, capitalization\n" in markdown
    line = next(line for line in markdown.splitlines() if line.startswith("- **capitalization**, skipped by"))
    found = re.fullmatch(r"- \*\*capitalization\*\*, skipped by every run \(2\): capitalization has nothing to learn "
                         r"on this corpus: ([\d,]+) of the ([\d,]+) labels \(100\.0%\) of [\d,]+ sampled training "
                         r"examples are 'lower' \(1 class; a task is skipped above --max-majority-share 0\.995\)", line)
    assert found and found.group(1) == found.group(2)
    for run in ("continual-seed3", "joint-seed3"):
        config = json.loads((out / "runs" / run / "run_config.json").read_text())
        assert config["tasks"] == ["knowledge_masking"] and list(config["skipped_tasks"]) == ["capitalization"]



def test_compare_architectures_reports_each_with_its_parameters_and_tokens_per_second(sample_dir, tmp_path):
    out = tmp_path / "compare"
    argv = ["compare", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]], "--output-dir", str(out),
            "--tasks", *TASKS, "--architectures", "hard,mmoe", "--schedules", "sequential", "--expert-layers", "1",
            "--num-experts", "4", "--steps-per-task", "4", "--eval-steps", "0", "--model-size", "tiny",
            "--batch-size", "8", "--vocab-size", "3000", "--max-seq-length", "64", "--eval-max-examples", "32",
            "--logging-steps", "1", "--seed", "3", "--probes"]

    assert main(argv) == 0

    report = out / "report"
    summary = json.loads((report / "summary.json").read_text())
    runs = {row["variant"]: row for row in summary["runs"] if row["kind"] == "variant"}
    assert list(runs) == ["hard", "mmoe"] and [row["architecture"] for row in runs.values()] == ["hard", "mmoe"]
    # mmoe holds 3 more copies of one tiny layer (4 x (128 x 128 + 128) attention, 128 x 512 + 512 and
    # 512 x 128 + 128 feed-forward, 2 x 256 LayerNorm: 198,272) and a 128 -> 4 gate per task (2 x 516).
    assert runs["mmoe"]["parameters"] - runs["hard"]["parameters"] == 3 * 198_272 + 2 * 516
    for architecture, row in runs.items():
        run_dir = out / "runs" / f"{architecture}-sequential-seed3"
        rates = sorted(r["tokens_per_s"] for r in read_records(run_dir, "train"))
        assert row["tokens_per_s"] == (rates[len(rates) // 2] if len(rates) % 2 else
                                       (rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2)
        assert row["average_final"] == pytest.approx(sum(
            r["accuracy"] for r in read_records(run_dir, "eval") if r["stage"] == 1 and r["stage_end"]) / 2)
    # both are probed, on the same examples (the routed one through its first task's route)
    probes = {a: json.loads((out / "runs" / f"{a}-sequential-seed3" / "result.json").read_text())["probes"]
              for a in runs}
    assert set(probes["mmoe"]) == {"entity_type", "sentence_adjacency"}
    for name, scores in probes["mmoe"].items():
        assert runs["mmoe"][f"probe_{name}"] == scores["accuracy"]
        assert (scores["train_examples"], scores["test_examples"]) == (probes["hard"][name]["train_examples"],
                                                                       probes["hard"][name]["test_examples"])
    mmoe = out / "runs" / "mmoe-sequential-seed3"
    assert read_records(mmoe, "routing")
    # The run directory rebuilds the model: architecture.json, encoder_config.json and the checkpoint's weights.
    model = model_from_description(json.loads((mmoe / "architecture.json").read_text()),
                                   ErnieConfig.from_json_file(str(mmoe / "encoder_config.json")))
    model.load_state_dict(read_checkpoint(checkpoints(mmoe)[-1])[0])  # strict
    assert sum(p.numel() for p in model.parameters()) == runs["mmoe"]["parameters"]
    markdown = (report / "report.md").read_text()
    assert markdown.startswith("# Comparison of architectures")
    header = next(line for line in markdown.splitlines() if line.startswith("| architecture"))
    cells = [cell.strip() for cell in header.strip("|").split("|")]
    assert cells[:2] == ["architecture", "average final accuracy"]
    assert cells[-3:] == ["parameters", "tokens/s", "wall time"]
    rows = [line for line in markdown.splitlines() if line.startswith(("| hard ", "| mmoe "))]
    assert f"{runs['mmoe']['parameters'] / 1e6:.2f}M" in rows[1] and f"{runs['hard']['tokens_per_s']:,.0f}" in rows[0]
    for name in ["heatmap-hard.png", "heatmap-mmoe.png", "metrics/hard-seed3.json", "metrics/mmoe-seed3.json"]:
        assert (report / name).stat().st_size > 0, name


def test_compare_stopped_by_sigterm_continues_when_run_again_and_a_report_of_fewer_seeds_drops_the_others(
        sample_dir, tmp_path, caplog):
    """SIGTERM (Slurm, Kubernetes) in the middle of a run: compare stops at the end of the step with a checkpoint
    and says how to continue; run again it resumes that run and finishes. Then --seeds 1 after --seeds 2: the
    report folder holds the runs of seed 3 only, and compare says it removed the others."""
    out = tmp_path / "compare"
    argv = ["compare", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]], "--output-dir", str(out),
            "--tasks", *TASKS, "--schedules", "continual", "joint", "--steps-per-task", "8", "--eval-steps", "0",
            "--model-size", "tiny", "--batch-size", "8", "--vocab-size", "3000", "--max-seq-length", "64",
            "--eval-max-examples", "16", "--logging-steps", "1", "--seed", "3", "--seeds", "2"]
    first = out / "runs" / "continual-seed3" / "logs" / "train.jsonl"
    with open(tmp_path / "stopped.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "ernie_cpt", *argv], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1"})
        while process.poll() is None and (not first.exists() or first.read_text().count("\n") < 3):
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=300) == 143, (tmp_path / "stopped.log").read_text()
    step = first.read_text().count("\n")
    assert (tmp_path / "stopped.log").read_text().splitlines()[-1] == (
        f"ernie-cpt: interrupted at step {step} (SIGTERM); saved checkpoint step-{step:08d}; continue with the same "
        f"compare command: finished runs are kept, and an interrupted one resumes from its last checkpoint")
    assert not (out / "report").exists() and not list(out.glob("runs/*/result.json"))

    with caplog.at_level(logging.INFO):
        assert main(argv) == 0
    assert "continual, seed 3: resuming pre-training" in caplog.text
    assert [r["step"] for r in read_records(out / "runs" / "continual-seed3", "train")] == list(range(1, 17))
    assert sorted(p.name for p in (out / "report" / "metrics").iterdir()) == [
        f"{run}-seed{seed}.json" for run in ("continual", "joint", "mlm") for seed in (3, 4)]

    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert main([*argv[:-1], "1"]) == 0
    assert sorted(p.name for p in (out / "report" / "metrics").iterdir()) == [
        "continual-seed3.json", "joint-seed3.json", "mlm-seed3.json"]
    assert "removed 3 files of an earlier report" in caplog.text
    assert [r["seed"] for r in json.loads((out / "report" / "summary.json").read_text())["runs"]] == [3, 3, 3, 3]
