"""finetune's two modes (--train/--test, and --task for MT-DNN): an option of the other mode is refused by
name, and --multitask-dir records its settings, refusing other ones, a rerun without --resume, and a folder of
other work, while --overwrite removes only what an earlier fine-tuning wrote."""

from __future__ import annotations

import json

import pytest

from ernie_cpt.cli import main
from ernie_cpt.commands.multitask_dir import SETTINGS, multitask_settings, prepare_multitask_dir
from ernie_cpt.commands.options import FinetuneOptions, MultiTaskFinetuneOptions
from ernie_cpt.errors import UserError
from ernie_cpt.weighting.options import WeightingOptions

EQUAL = {WeightingOptions: WeightingOptions()}  # the loss weighting's groups: equal, no options

SPEC = "a:regression:x.jsonl:y.jsonl"


def _error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(("extra", "message"), [
    (["--task", SPEC, "--max-steps", "3", "--output-dir", "o"],
     "--max-steps, --output-dir apply only to a single set (--train/--test); remove them, or use --train/--test"),
    (["--task", SPEC, "--validation-fraction", "0.3"],
     "--validation-fraction applies only to a single set (--train/--test); remove it, or use --train/--test"),
    (["--train", "a.jsonl", "--test", "b.jsonl", "--then-single-task", "--multitask-dir", "d"],
     "--multitask-dir, --then-single-task apply only to multi-task fine-tuning (--task); remove them, or use --task"),
    (["--train", "a.jsonl", "--test", "b.jsonl", "--loss-weighting", "pcgrad"],
     "--loss-weighting applies only to multi-task fine-tuning (--task); remove it, or use --task"),
    (["--task", SPEC, "--multitask-dir", "d", "--learning-rate", "1e-3", "--loss-weighting", "gradnorm"],
     "--loss-weighting gradnorm combines the sets' losses only with --multitask-mixing all (with sample, each batch "
     "holds one set); add it, or remove --loss-weighting"),
], ids=["task-with-single-set-options", "task-with-validation", "train-with-task-options", "train-with-weighting",
        "weighting-without-mixing-all"])
def test_an_option_of_the_other_mode_is_refused_by_name(extra, message, tmp_path, capsys):
    assert _error(["finetune", str(tmp_path), *extra], capsys) == f"ernie-cpt: error: {message}"


def _settings(model, **change) -> dict:
    options = FinetuneOptions(learning_rate=[1e-3], **change)
    return multitask_settings(model, options, MultiTaskFinetuneOptions(task=[SPEC]), EQUAL)


def test_the_folder_records_its_settings_and_refuses_others(tmp_path):
    model, out = tmp_path / "model", tmp_path / "out"
    model.mkdir()
    settings = _settings(model)
    assert settings["model"] == str(model.resolve()) and settings["learning_rate"] == [1e-3]
    assert "seeds" not in settings and "max_steps" not in settings and "device" not in settings
    prepare_multitask_dir(out, model, settings, resume=False, overwrite=False)
    assert json.loads((out / SETTINGS).read_text()) == settings
    with pytest.raises(UserError, match=r"already holds this fine-tuning; pass --resume"):
        prepare_multitask_dir(out, model, settings, resume=False, overwrite=False)
    prepare_multitask_dir(out, model, settings, resume=True, overwrite=False)  # the same settings: continue
    with pytest.raises(UserError, match=r"other settings \(--epochs 3 there, 5 now\); pass the same ones"):
        prepare_multitask_dir(out, model, _settings(model, epochs=5), resume=True, overwrite=False)


def test_overwrite_removes_only_what_a_fine_tuning_wrote(tmp_path):
    model, out = tmp_path / "model", tmp_path / "out"
    model.mkdir()
    prepare_multitask_dir(out, model, _settings(model), resume=False, overwrite=False)
    (out / "runs" / "multi_task-seed1").mkdir(parents=True)
    (out / "report.md").write_text("old")
    (out / "notes.txt").write_text("mine")
    prepare_multitask_dir(out, model, _settings(model, epochs=5), resume=False, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [SETTINGS, "notes.txt"]
    assert json.loads((out / SETTINGS).read_text())["epochs"] == 5


def test_a_folder_of_other_work_or_the_model_itself_is_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(UserError, match="is not empty and holds no fine-tuning; choose an empty or new folder"):
        prepare_multitask_dir(model, tmp_path / "elsewhere", _settings(model), resume=False, overwrite=False)
    with pytest.raises(UserError, match=r"^--multitask-dir .* holds MODEL_DIR"):
        prepare_multitask_dir(tmp_path, model, _settings(model), resume=False, overwrite=True)
    assert (model / "config.json").is_file()
