"""``ernie-cpt compare`` before anything trains: schedule lists, and one-line errors that leave nothing
behind. Every case names a spaCy pipeline that does not exist, so a missing check would fail with
the wrong message instead of annotating or training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ernie_cpt.cli import main
from ernie_cpt.commands.compare import schedule_names
from ernie_cpt.options import to_dict

NO_PIPELINE = "no_such_pipeline_xyz"


def test_schedules_may_be_comma_or_space_separated_and_repeat():
    assert schedule_names(["continual,joint", "sequential", " joint , pairwise,"]) == [
        "continual", "joint", "sequential", "pairwise"]


@pytest.mark.parametrize(("flags", "expected"), [
    (["--tasks", "knowledge_masking", "capitalization", "--schedules", "continual,jiont"],
     "unknown schedule 'jiont'; did you mean 'joint'?"),
    (["--tasks", "knowledge_masking", "capitalization", "--schedule", "continual", "file"],
     "--schedule file sets its own steps: run it with ernie-cpt pretrain"),
    (["--tasks", "knowledge_masking", "capitalization", "--schedule-file", "s.yaml"],  # its advice looped
     "--schedule-file is read by --schedule file, which sets its own steps; compare builds every curriculum from "
     "--tasks and one per-task budget, so it never reads --schedule-file: drop it, or run that curriculum with "
     "ernie-cpt pretrain --schedule file --schedule-file ..."),
    (["--tasks", "knowledge_masking", "capitalization", "--schedules", "file", "--schedule-file", "s.yaml"],
     "compare builds every curriculum from --tasks and one per-task budget, so it never reads --schedule-file"),
    (["--tasks", "knowledge_masking"], "compare needs at least 2 --tasks"),
    (["--tasks", "knowledge_masking", "capitalisation"], "unknown task 'capitalisation'"),
    (["--tasks", "knowledge_masking", "capitalization", "--downstream-train", "train.jsonl"],
     "give both --downstream-train and --downstream-test"),
    (["--tasks", "knowledge_masking", "capitalization", "--downstream-test", "test.jsonl"],
     "give both --downstream-train and --downstream-test"),
    (["--tasks", "knowledge_masking", "capitalization", "--downstream-train", "no.jsonl", "--downstream-test",
      "no.jsonl"], "--downstream-train file no.jsonl does not exist"),
    (["--tasks", "knowledge_masking", "capitalization", "--seeds", "0"], "--seeds must be between 1 and 1,000, got 0"),
    (["--tasks", "knowledge_masking", "capitalization", "--eval-fraction", "0"], "--eval-fraction must be above 0"),
    (["--tasks", "knowledge_masking", "capitalization", "--schedules", "joint,continual+replay"],
     "continual+replay replays a fraction --replay of every stage's steps; give it, e.g. --replay 0.05"),
    (["--tasks", "knowledge_masking", "capitalization", "--replay", "0.05"],
     "--replay applies to the +replay curricula; add one to --schedules, e.g. continual+replay"),
    (["--tasks", "knowledge_masking", "capitalization", "--schedules", "continual+replay", "--replay", "1.5"],
     "--replay must be at least 0 and below 1, got 1.5"),
    (["--tasks", "knowledge_masking", "capitalization", "--schedules", "contnual+replay", "--replay", "0.1"],
     "unknown schedule 'contnual'; did you mean 'continual'?"),
    (["--tasks", "knowledge_masking", "capitalization", "--architectures", "hard,moe"],
     "unknown architecture 'moe'; did you mean 'mmoe'?"),
    (["--tasks", "knowledge_masking", "capitalization", "--architectures", "hard,mmoe", "--schedules", "joint",
      "sequential"], "--architectures compares architectures at one curriculum, but --schedules names 2"),
    (["--tasks", "knowledge_masking", "capitalization", "--architectures", "hard,ple", "--model-size", "tiny",
      "--expert-layers", "3"], "--expert-layers 3 is outside 1..2, the encoder's layers"),
    (["--tasks", "knowledge_masking", "capitalization", "--architectures", "all", "hard"],
     "--architectures all already names every registered architecture; give all alone"),
], ids=["unknown-schedule", "file-schedule", "schedule-file", "file-with-schedule-file", "one-task", "unknown-task",
        "train-only", "test-only", "missing-file",
        "no-seeds", "no-held-out", "replay-without-fraction", "fraction-without-replay", "replay-out-of-range",
        "unknown-replayed-schedule", "unknown-architecture", "architectures-at-two-curricula", "expert-layers",
        "all-and-more"])
def test_bad_input_is_one_line_and_writes_nothing(flags, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["compare", "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
            "--spacy-model", NO_PIPELINE, *flags]

    code = main(argv)

    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("ernie-cpt: error: ") and expected in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_a_downstream_test_label_the_training_file_lacks_fails_before_training(tmp_path, capsys):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    (tmp_path / "test.jsonl").write_text('{"text": "c", "label": "z"}\n')

    code = main(["compare", "--output-dir", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"),
                 "--spacy-model", NO_PIPELINE, "--tasks", "knowledge_masking", "capitalization",
                 "--downstream-train", str(tmp_path / "train.jsonl"),
                 "--downstream-test", str(tmp_path / "test.jsonl")])

    assert code == 2
    assert capsys.readouterr().err == (
        f"ernie-cpt: error: --downstream-test {tmp_path / 'test.jsonl'} has a label 'z' that --downstream-train "
        f"{tmp_path / 'train.jsonl'} does not have; the classifier only learns training labels, so add examples of "
        f"them to --downstream-train\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.jsonl", "train.jsonl"]


def test_output_dir_is_required(tmp_path, capsys):
    assert main(["compare", "--tasks", "knowledge_masking", "capitalization", "--cache-dir", str(tmp_path)]) == 2
    assert "compare needs --output-dir DIR" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# --- which runs are started, resumed, restarted or skipped (pretrain, metrics and export replaced) -------


@pytest.fixture
def fake_training(monkeypatch) -> list[tuple[str, int, bool, bool]]:
    """Replace the corpus pass, pretrain, the metrics, export, the initial encoder, the probes and the report
    by stand-ins; returns the (run directory name, seed, resume, overwrite) of every pretrain call."""
    import ernie_cpt.commands.compare as compare_module
    import ernie_cpt.commands.compare_runs as runs_module
    import ernie_cpt.evaluation.report as report_module
    from ernie_cpt.commands.pretrain import RunOptions
    from ernie_cpt.training.trainer import TrainingOptions

    calls = []

    def pretrain(options):
        run, run_dir = options[RunOptions], Path(options[RunOptions].output_dir)
        calls.append((run_dir.name, options[TrainingOptions].seed, run.resume, run.overwrite))
        if run.overwrite:
            shutil.rmtree(run_dir, ignore_errors=True)
        (run_dir / "checkpoints" / "step-00000001").mkdir(parents=True, exist_ok=True)
        (run_dir / "run_config.json").write_text(json.dumps(to_dict(*options.values())))
        (run_dir / "encoder_config.json").write_text("{}")
        return run_dir

    monkeypatch.setattr(compare_module, "annotate", lambda documents, options: documents)
    monkeypatch.setattr(compare_module, "read_corpus", lambda options: None)
    monkeypatch.setattr(compare_module, "split_documents", lambda documents, fraction, seed: {"test": None})
    monkeypatch.setattr(compare_module, "probe_sets", lambda documents, seed: [])
    monkeypatch.setattr(runs_module, "pretrain", pretrain)
    monkeypatch.setattr(runs_module, "continual_metrics", lambda run_dir, metric: {"metric": metric})
    monkeypatch.setattr(runs_module, "export", lambda run_dir, out: Path(out).mkdir())
    monkeypatch.setattr(runs_module, "_write_initial_encoder", lambda source, model, seed, out: Path(out).mkdir())
    monkeypatch.setattr(report_module, "write_report", lambda results, setup, folder, axis: Path(folder) / "report.md")
    return calls


def compare_args(out: Path, *extra: str) -> list[str]:
    return ["compare", "--output-dir", str(out), "--tasks", "knowledge_masking", "capitalization",
            "--schedules", "continual", "joint", "--steps-per-task", "4", "--seed", "7", *extra]


def test_every_curriculum_and_seed_runs_once_into_its_own_folder(fake_training, tmp_path):
    assert main(compare_args(tmp_path, "--seeds", "2")) == 0

    # per seed: the curricula, each task alone (the forward-transfer references), then the mlm baseline
    assert fake_training == [(f"{name}-seed{seed}", seed, False, True) for seed in (7, 8) for name in (
        "continual", "joint", "single-knowledge_masking", "single-capitalization", "mlm")]
    assert {"none-seed7", "none-seed8"} <= {p.name for p in (tmp_path / "runs").iterdir()}  # no pre-training
    result = json.loads((tmp_path / "runs" / "joint-seed8" / "result.json").read_text())
    assert (result["variant"], result["schedule"], result["seed"], result["metrics"], result["downstream"]) == (
        "joint", "joint", 8, {"metric": "accuracy"}, None)
    mlm = json.loads((tmp_path / "runs" / "mlm-seed8" / "run_config.json").read_text())
    assert (mlm["tasks"], mlm["schedule"], mlm["steps_per_task"]) == (["knowledge_masking"], "joint", 8)
    single = json.loads((tmp_path / "runs" / "single-capitalization-seed7" / "run_config.json").read_text())
    assert (single["tasks"], single["schedule"], single["lr_schedule"]) == (["capitalization"], "file", "whole")
    assert (tmp_path / "references" / "capitalization.yaml").read_text() == "stages:\n- capitalization: 4\n"
    config = json.loads((tmp_path / "runs" / "joint-seed8" / "run_config.json").read_text())
    assert (config["schedule"], config["seed"], config["steps_per_task"]) == ("joint", 8, 4)


def test_no_forward_transfer_leaves_out_the_single_task_references(fake_training, tmp_path, monkeypatch):
    import ernie_cpt.evaluation.report as report_module

    reported = {}
    monkeypatch.setattr(report_module, "write_report", lambda results, setup, folder, axis: reported.update(
        setup=setup, results=results) or Path(folder) / "report.md")
    assert main(compare_args(tmp_path, "--no-forward-transfer")) == 0

    assert [name for name, *_ in fake_training] == ["continual-seed7", "joint-seed7", "mlm-seed7"]
    assert not (tmp_path / "references").exists()
    assert reported["setup"]["forward transfer"] == "not measured (--no-forward-transfer)"
    assert [r["variant"] for r in reported["results"]] == ["continual", "joint", "mlm", "none"]


def test_a_second_compare_skips_finished_runs_resumes_checkpointed_ones_and_restarts_the_rest(
        fake_training, tmp_path):
    assert main(compare_args(tmp_path, "--seeds", "2")) == 0
    runs = tmp_path / "runs"
    (runs / "joint-seed7" / "result.json").unlink()  # interrupted after its checkpoint
    shutil.rmtree(runs / "continual-seed8")
    (runs / "continual-seed8").mkdir()  # interrupted before its first checkpoint
    (runs / "continual-seed8" / "run_config.json").write_text("{}")
    fake_training.clear()

    assert main(compare_args(tmp_path, "--seeds", "2")) == 0

    assert fake_training == [("joint-seed7", 7, True, False), ("continual-seed8", 8, False, True)]


def test_allow_changed_world_size_reaches_the_runs_it_resumes(fake_training, tmp_path):
    """compare names --allow-changed-world-size in its resume errors, so it takes the flag and hands it on."""
    assert main(compare_args(tmp_path)) == 0
    (tmp_path / "runs" / "joint-seed7" / "result.json").unlink()  # interrupted after its checkpoint
    assert main(compare_args(tmp_path, "--allow-changed-world-size")) == 0
    config = json.loads((tmp_path / "runs" / "joint-seed7" / "run_config.json").read_text())
    assert (config["resume"], config["allow_changed_world_size"]) == (True, True)


def test_a_finished_run_with_other_options_is_an_error(fake_training, tmp_path, capsys):
    assert main(compare_args(tmp_path)) == 0
    capsys.readouterr()

    assert main([*compare_args(tmp_path), "--learning-rate", "0.1"]) == 2

    assert "was run with other options (--learning-rate 0.0005 there, 0.1 now)" in capsys.readouterr().err


def test_a_finished_run_that_skipped_a_task_the_corpus_could_not_support_is_not_rerun(fake_training, tmp_path):
    """pretrain records the tasks it trained in "tasks" and the ones asked for in "requested_tasks"."""
    assert main(compare_args(tmp_path)) == 0
    for run_dir in (path.parent for path in (tmp_path / "runs").glob("*/run_config.json")):
        config = json.loads((run_dir / "run_config.json").read_text())
        config.update(tasks=["knowledge_masking"], requested_tasks=config["tasks"], skipped_tasks=["capitalization"])
        (run_dir / "run_config.json").write_text(json.dumps(config))
    fake_training.clear()

    assert main(compare_args(tmp_path)) == 0

    assert fake_training == []


def test_another_metric_rescores_finished_runs_without_training(fake_training, tmp_path):
    assert main(compare_args(tmp_path)) == 0
    fake_training.clear()

    assert main([*compare_args(tmp_path), "--metric", "f1"]) == 0

    assert fake_training == []
    assert json.loads((tmp_path / "runs" / "joint-seed7" / "result.json").read_text())["metrics"] == {"metric": "f1"}


def test_architectures_run_at_one_curriculum_each_into_its_own_folder(fake_training, tmp_path):
    argv = ["compare", "--output-dir", str(tmp_path), "--tasks", "knowledge_masking", "capitalization",
            "--architectures", "hard,mmoe", "cross_stitch", "--schedules", "sequential", "--steps-per-task", "4",
            "--seed", "7", "--expert-layers", "1"]

    assert main(argv) == 0

    # the architectures at the one curriculum, then the references and the mlm baseline (with --architecture)
    assert fake_training == [(f"{name}-seed7", 7, False, True) for name in (
        "hard-sequential", "mmoe-sequential", "cross_stitch-sequential", "single-knowledge_masking",
        "single-capitalization", "mlm")]
    assert json.loads((tmp_path / "runs" / "mlm-seed7" / "run_config.json").read_text())["architecture"] == "hard"
    for architecture in ("hard", "mmoe", "cross_stitch"):
        run_dir = tmp_path / "runs" / f"{architecture}-sequential-seed7"
        config = json.loads((run_dir / "run_config.json").read_text())
        assert (config["architecture"], config["schedule"], config["expert_layers"]) == (architecture, "sequential", 1)
        result = json.loads((run_dir / "result.json").read_text())
        assert (result["variant"], result["architecture"], result["schedule"]) == (architecture, architecture,
                                                                                  "sequential")


def test_architectures_all_runs_every_registered_one_in_registry_order_from_cli_yaml_and_python(
        fake_training, column_per_task, tmp_path, monkeypatch):
    """``all`` is the registry, a plugin's architecture included (``column_per_task`` registers one), in the
    order the registry lists them; the flag, a config file's ``architectures: all`` and Python's
    ``architectures="all"`` give the same runs."""
    import ernie_cpt
    import ernie_cpt.evaluation.report as report_module
    from ernie_cpt.modeling.architectures import ARCHITECTURES

    def write_report(results, setup, folder, axis):
        Path(folder).mkdir(parents=True, exist_ok=True)
        (Path(folder) / "summary.json").write_text(json.dumps({"setup": setup, "axis": axis}))
        return Path(folder) / "report.md"

    monkeypatch.setattr(report_module, "write_report", write_report)
    registered = list(ARCHITECTURES)
    assert registered[-1] == column_per_task.name  # registered last, after the built-in ones
    assert set(registered) >= {"hard", "mmoe", "cgc", "ple", "cross_stitch", "customized", "asymmetric", "ml_mmoe",
                               "sluice", "soft_sharing"}
    expected = [(f"{name}-sequential-seed7", 7, False, True) for name in registered] + [("mlm-seed7", 7, False, True)]
    common = ["--tasks", "knowledge_masking", "capitalization", "--schedules", "sequential", "--steps-per-task", "4",
              "--seed", "7", "--no-forward-transfer"]

    assert main(["compare", "--output-dir", str(tmp_path / "cli"), *common, "--architectures", "all"]) == 0
    assert fake_training == expected
    summary = json.loads((tmp_path / "cli" / "report" / "summary.json").read_text())
    assert (summary["setup"]["architectures"], summary["axis"]) == (registered, ["architecture", "architectures"])

    fake_training.clear()
    (tmp_path / "compare.yaml").write_text("architectures: all\n")
    assert main(["compare", "--config", str(tmp_path / "compare.yaml"), "--output-dir", str(tmp_path / "yaml"),
                 *common]) == 0
    assert fake_training == expected

    fake_training.clear()
    result = ernie_cpt.compare(output_dir=str(tmp_path / "python"), tasks=["knowledge_masking", "capitalization"],
                               schedules=["sequential"], steps_per_task=4, seed=7, forward_transfer=False,
                               architectures="all")
    assert fake_training == expected
    assert result.summary["setup"]["architectures"] == registered
