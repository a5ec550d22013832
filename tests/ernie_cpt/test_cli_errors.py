"""The CLI's bad-input table: exit code 2, one `ernie-cpt: error:` line that says what to do,
and nothing half-written.

Every pretrain case names a spaCy pipeline that does not exist, so no case can get as far as annotating
or training even if the check under test were missing: it would then fail with the wrong message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ernie_cpt.data.corpus import bundled_corpus
from tests.helpers import expect_error

NO_PIPELINE = "no_such_pipeline_xyz"






@pytest.fixture
def corpus(tmp_path) -> Path:
    """Three small documents of real text: the opening paragraphs of the bundled sample."""
    paragraphs = (bundled_corpus() / "chapter-01.txt").read_text(encoding="utf-8").split("\n\n")
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(3):
        (folder / f"part-{i}.txt").write_text(paragraphs[2 * i + 1], encoding="utf-8")
    return folder


def pretrain(tmp_path: Path, corpus: Path | str, *flags: str) -> list[str]:
    return ["pretrain", "--corpus", str(corpus), "--output-dir", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--spacy-model", NO_PIPELINE, *flags]


# --- the corpus --------------------------------------------------------------------------------------------


def test_missing_corpus_path(tmp_path, capsys):
    missing = tmp_path / "no-such-corpus"

    expect_error(pretrain(tmp_path, missing), capsys, tmp_path,
                  f"corpus path {missing} does not exist", "pass existing files or folders to --corpus")


def test_empty_corpus_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()

    expect_error(pretrain(tmp_path, tmp_path / "empty"), capsys, tmp_path,
                  "contains no .txt files", "add text files")


@pytest.mark.parametrize(("kind", "contents"), [
    ("empty", [b"", b"\n\n  \n"]),
    ("binary", [b"\x00\x01\x02\x03", b"PK\x03\x04\x14\x00\x00\x00"]),
    ("latin1", ["caf\xe9".encode("latin-1"), "na\xefve r\xe9sum\xe9".encode("latin-1")]),
])
def test_corpus_folder_without_usable_text(tmp_path, capsys, kind, contents):
    folder = tmp_path / kind
    folder.mkdir()
    for i, data in enumerate(contents):
        (folder / f"{kind}-{i}.txt").write_bytes(data)

    expect_error(pretrain(tmp_path, folder), capsys, tmp_path,
                  "no text found", "the corpus needs non-empty UTF-8 text")


def test_table_without_the_text_field(tmp_path, capsys):
    table = tmp_path / "entries.jsonl"
    table.write_text('{"title": "Kellynch Hall", "body": "Sir Walter Elliot was vain."}\n', encoding="utf-8")

    expect_error(pretrain(tmp_path, table), capsys, tmp_path, "no 'text' field", "body", "--text-field")


def test_missing_spacy_pipeline(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus), capsys, tmp_path,
                  f"spaCy pipeline '{NO_PIPELINE}' is not installed", "pip install", "--spacy-model")


# --- names and config files --------------------------------------------------------------------------------


def test_unknown_task_suggests_the_closest(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus, "--tasks", "knowledge_maskng"), capsys, tmp_path,
                  "unknown task 'knowledge_maskng'", "did you mean 'knowledge_masking'?")


def test_unknown_schedule_suggests_the_closest(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus, "--schedule", "jiont"), capsys, tmp_path,
                  "unknown schedule 'jiont'", "did you mean 'joint'?", "available:")


def test_unreadable_config(tmp_path, capsys, corpus):
    config = tmp_path / "run.yaml"
    config.write_text("max_steps: 10\ntasks: [knowledge_masking\n", encoding="utf-8")

    line = expect_error(pretrain(tmp_path, corpus, "--config", str(config)), capsys, tmp_path)
    assert line == (f"config file {config} is not valid YAML at line 3, column 1 (expected ',' or ']', but got "
                    f"'<stream end>'); fix the syntax there")  # where the parser found it: the list never closed
    config.write_text("max_steps: 10\n  batch_size: 4\n", encoding="utf-8")
    assert expect_error(pretrain(tmp_path, corpus, "--config", str(config)), capsys, tmp_path) == (
        f"config file {config} is not valid YAML at line 2, column 13 (mapping values are not allowed here); fix the "
        f"syntax there")


def test_config_with_a_typo(tmp_path, capsys, corpus):
    config = tmp_path / "run.yaml"
    config.write_text("max_steps: 10\nlearning_rat: 0.001\n", encoding="utf-8")

    expect_error(pretrain(tmp_path, corpus, "--config", str(config)), capsys, tmp_path,
                  "unknown key 'learning_rat'", "did you mean 'learning_rate'?")


def test_missing_config_file(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus, "--config", str(tmp_path / "nowhere.yaml")), capsys, tmp_path,
                  "cannot read config file", "check the path given to --config")


def test_config_with_a_list_for_the_output_dir(tmp_path, capsys, corpus, monkeypatch):
    """Issue 23: ``output_dir: [runs/x]`` created a folder named ``['runs/x']``."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(f"corpus: {corpus}\nspacy_model: {NO_PIPELINE}\noutput_dir: [runs/x]\n", encoding="utf-8")

    expect_error(["pretrain", "--config", str(config)], capsys, tmp_path,
                  f"config key 'output_dir' (line 3 of {config}) must be a string (str), got a list of strings "
                  f"(['runs/x']); give one value, not a list")


def test_export_config_with_an_unquoted_no(tmp_path, capsys, corpus):
    """Issue 23: ``language: [en, no]`` put ``'False'`` in the model card (YAML 1.1 reads no as false)."""
    config = tmp_path / "export.yaml"
    config.write_text("license: apache-2.0\nlanguage: [en, no]\n", encoding="utf-8")

    expect_error(["export", str(corpus), str(tmp_path / "exported"), "--config", str(config)], capsys, tmp_path,
                  "config key 'language' (line 2 of", "item 2 must be a string (str), got a boolean (false)",
                  "quote it, e.g. 'no'")


def test_config_that_sets_an_option_twice(tmp_path, capsys, corpus):
    """Issue 23: ``max_steps: 2`` then ``max_steps: 30`` trained 30 steps without a word."""
    config = tmp_path / "run.yaml"
    config.write_text("max_steps: 2\nbatch_size: 4\nmax_steps: 30\n", encoding="utf-8")

    expect_error(pretrain(tmp_path, corpus, "--config", str(config)), capsys, tmp_path,
                  f"config file {config} gives the key 'max_steps' twice, on lines 1 and 3", "keep one")


# --- the run directory -------------------------------------------------------------------------------------


def test_resume_without_a_run(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus, "--resume"), capsys, tmp_path,
                  "--resume:", "holds no checkpoint", "run without --resume")


def test_resume_in_an_empty_folder(tmp_path, capsys, corpus):
    (tmp_path / "run").mkdir()

    expect_error(pretrain(tmp_path, corpus, "--resume"), capsys, tmp_path, "holds no checkpoint")
    assert list((tmp_path / "run").iterdir()) == []


def test_output_dir_with_files_is_left_alone(tmp_path, capsys, corpus):
    run_dir = tmp_path / "run"
    (run_dir / "notes").mkdir(parents=True)
    (run_dir / "notes" / "todo.txt").write_text("keep me\n", encoding="utf-8")

    line = expect_error(pretrain(tmp_path, corpus), capsys, tmp_path,
                         f"{run_dir} is not empty and holds no ernie-cpt run", "--overwrite", "another --output-dir")
    assert "--resume" not in line  # there is no run to resume: the advice must not lead to the next error
    # and --resume (which an older message advised) says the same instead of "run without --resume"
    expect_error(pretrain(tmp_path, corpus, "--resume"), capsys, tmp_path,
                  f"--resume: {run_dir} holds no ernie-cpt run", "pass --overwrite instead of --resume")
    assert (run_dir / "notes" / "todo.txt").read_text(encoding="utf-8") == "keep me\n"


@pytest.mark.parametrize("budget", [["--max-steps", "4"], ["--steps-per-task", "1"]])
def test_a_budget_that_leaves_a_stage_without_a_step(tmp_path, capsys, corpus, budget):
    tasks = ["--tasks", "knowledge_masking", "capitalization", "sentence_reordering"]
    expect_error(pretrain(tmp_path, corpus, "--schedule", "pairwise", *tasks, *budget), capsys, tmp_path,
                  "--schedule pairwise with 3 tasks has 7 stages and needs at least 12 steps (--max-steps 12 or "
                  "--steps-per-task 4)", f"{' '.join(budget)} leaves stages")
    compare = ["compare", "--corpus", str(corpus), "--output-dir", str(tmp_path / "compare"), "--cache-dir",
               str(tmp_path / "cache"), "--spacy-model", NO_PIPELINE, *tasks, *budget]
    expect_error([*compare, "--schedules", "continual", "pairwise"], capsys, tmp_path,
                  "--schedule pairwise with 3 tasks has 7 stages and needs at least 12 steps")
    # compare's default curricula: the one that needs the largest budget is named
    expect_error(compare, capsys, tmp_path, "--schedule pairwise with 3 tasks")


def test_missing_output_dir_flag(tmp_path, capsys, corpus):
    argv = ["pretrain", "--corpus", str(corpus), "--cache-dir", str(tmp_path / "cache"),
            "--spacy-model", NO_PIPELINE]

    expect_error(argv, capsys, tmp_path, "pretrain needs --output-dir DIR")


# --- prepare -----------------------------------------------------------------------------------------------


def test_prepare_with_a_missing_pipeline(tmp_path, capsys, corpus):
    argv = ["prepare", "--corpus", str(corpus), "--output-dir", str(tmp_path / "cache"),
            "--spacy-model", NO_PIPELINE]

    expect_error(argv, capsys, tmp_path, f"spaCy pipeline '{NO_PIPELINE}' is not installed")


# --- export ------------------------------------------------------------------------------------------------


def test_export_of_a_folder_that_is_not_a_run(tmp_path, capsys, corpus):
    expect_error(["export", str(corpus), str(tmp_path / "exported")], capsys, tmp_path,
                  "is not an ernie-cpt run directory", "pass the --output-dir of a pretrain run")


def test_export_of_a_run_without_a_checkpoint(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "encoder_config.json").write_text('{"model_type": "ernie"}\n', encoding="utf-8")

    expect_error(["export", str(run_dir), str(tmp_path / "exported")], capsys, tmp_path,
                  "has no readable checkpoint yet", "--save-steps")


def test_export_of_a_run_whose_only_checkpoint_is_damaged(tmp_path, capsys):
    run_dir = tmp_path / "run"
    step = run_dir / "checkpoints" / "step-00000010"
    step.mkdir(parents=True)
    (step / "model.safetensors").write_bytes(b"not safetensors")
    (step / "trainer_state.json").write_text('{"step": 10}', encoding="utf-8")
    (run_dir / "checkpoints" / "latest").write_text("step-00000010\n", encoding="utf-8")
    (run_dir / "encoder_config.json").write_text('{"model_type": "ernie"}\n', encoding="utf-8")

    expect_error(["export", str(run_dir), str(tmp_path / "exported")], capsys, tmp_path,
                  "has no readable checkpoint yet")


def test_export_into_a_folder_that_is_not_empty(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "encoder_config.json").write_text('{"model_type": "ernie"}\n', encoding="utf-8")
    (tmp_path / "exported").mkdir()
    (tmp_path / "exported" / "model.bin").write_bytes(b"an earlier export")

    expect_error(["export", str(run_dir), str(tmp_path / "exported")], capsys, tmp_path,
                  "exists and is not empty", "choose a new folder")


# --- the device and the tokenizer -----------------------------------------------------------------------------


def test_a_device_torch_does_not_know(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus, "--device", "gpu"), capsys, tmp_path,
                  "--device gpu is not a device torch knows; pass cpu, cuda, cuda:N or auto")


def test_a_gpu_this_machine_lacks(tmp_path, capsys, corpus):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    expect_error(pretrain(tmp_path, corpus, "--device", "cuda"), capsys, tmp_path,
                  "--device cuda is not available on this machine (no usable GPU); pass --device cpu or auto")


def test_tokenizer_and_init_from_together(tmp_path, capsys, corpus):
    expect_error(pretrain(tmp_path, corpus, "--init-from", str(tmp_path), "--tokenizer", str(tmp_path)), capsys,
                  tmp_path, f"--init-from {tmp_path} brings its own tokenizer", f"drop --tokenizer {tmp_path}")
