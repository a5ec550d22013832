"""Every output path option is checked before any work: an existing directory where a file goes, a file where a
folder goes, a path under a file. And finetune --seeds refuses a repeated seed, as --task does."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.run import main as benchmarks_main
from ernie_cpt.errors import UserError
from ernie_cpt.files import check_output_path
from tests.helpers import expect_error

SETS = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "encoder_config.json").write_text("{}")  # what marks a run directory
    for name in ("train.jsonl", "test.jsonl"):
        (tmp_path / name).write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    return {"dir": tmp_path / "dir", "file": tmp_path / "file", "run": tmp_path / "run",
            "train": tmp_path / "train.jsonl", "test": tmp_path / "test.jsonl"}


def test_check_output_path(tmp_path, files):
    with pytest.raises(UserError) as raised:
        check_output_path(files["dir"], "--output-json")
    assert str(raised.value) == f"--output-json {files['dir']} is a directory; pass a file path, e.g. " \
                                f"{files['dir']}/results.json"
    with pytest.raises(UserError) as raised:
        check_output_path(files["file"], "--output-dir", folder=True)
    assert str(raised.value) == f"--output-dir {files['file']} is a file; choose a folder"
    with pytest.raises(UserError) as raised:
        check_output_path(files["file"] / "a" / "r.json", "--output-json")
    assert str(raised.value) == (f"--output-json {files['file']}/a/r.json: {files['file']} is a file, not a folder; "
                                 f"choose another path")
    check_output_path(files["dir"] / "new" / "r.json", "--output-json")  # folders are made when written
    check_output_path(files["dir"], "--output-dir", folder=True)


def test_finetune_output_json_and_repeated_seeds_fail_before_the_model_is_read(tmp_path, files, capsys):
    finetune = ["finetune", str(tmp_path / "no-model"), "--train", str(files["train"]), "--test", str(files["test"])]
    expect_error([*finetune, "--output-json", str(files["dir"])], capsys, tmp_path,
                  f"--output-json {files['dir']} is a directory; pass a file path")
    expect_error([*finetune, "--output-json", str(files["file"] / "r.json")], capsys, tmp_path,
                  f"{files['file']} is a file, not a folder; choose another path")
    expect_error([*finetune, "--output-dir", str(files["file"])], capsys, tmp_path,
                  f"--output-dir {files['file']} is a file; choose a folder")
    assert expect_error([*finetune, "--seeds", "1", "2", "1"], capsys, tmp_path) == (
        "--seeds 1 2 1 repeats a seed (the same run twice would report a std of 0); give each "
        "seed once")


def test_folder_outputs_that_are_files(tmp_path, files, capsys):
    file = str(files["file"])
    expect_error(["export", str(files["run"]), file], capsys, tmp_path, f"OUT_DIR {file} is a file; choose a folder")
    expect_error(["pretrain", "--output-dir", file], capsys, tmp_path,
                  f"--output-dir {file} is a file; choose a folder")
    expect_error(["compare", "--tasks", "knowledge_masking", "capitalization", "--output-dir", file], capsys,
                  tmp_path, f"--output-dir {file} is a file; choose a folder")
    expect_error(["finetune", str(tmp_path / "no-model"), "--task", f"a:classification:{files['train']}:"
                   f"{files['test']}", "--multitask-dir", file, "--learning-rate", "1e-3"], capsys, tmp_path,
                  f"--multitask-dir {file} is a file; choose a folder")


def test_benchmarks_json_is_checked_before_measuring(files, capsys):
    assert benchmarks_main(["--json", str(files["dir"])]) == 2
    assert capsys.readouterr().err.strip() == (f"python -m benchmarks.run: error: --json {files['dir']} is a "
                                               f"directory; pass a file path, e.g. {files['dir']}/results.json")
