"""A resume that would change the numbers is refused, naming what restores it: another corpus (a file of
the folder replaced between the kill and --resume), device, autocast dtype, library version or number
of processes (that one is accepted with --allow-changed-world-size, logged and recorded). Other hardware
is a warning; a run recorded before these fields existed resumes as before. Real runs on real files;
where another machine or install would be needed, run_config.json records it as such a run would."""

from __future__ import annotations

import functools
import json
import logging
import shutil
from pathlib import Path

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.run_log import read_records
from tests.helpers import expect_error as _expect_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# these commands may log warnings before their error line
expect_error = functools.partial(_expect_error, warnings=True)


def train_records(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, "train")]


def args(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", str(corpus), "--output-dir", str(run_dir), "--model-size", "tiny", "--max-steps",
            "4", "--batch-size", "8", "--learning-rate", "1e-3", "--logging-steps", "1", "--eval-steps", "0",
            "--save-steps", "2", "--save-total-limit", "5", "--vocab-size", "3000", "--seed", "7", *extra]


@pytest.fixture(scope="module")
def corpus(sample_dir, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus") / "chapters"
    folder.mkdir()
    for path in sorted(sample_dir.glob("*.txt"))[:4]:
        shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    """A 4-step run with checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(args(corpus, run_dir)) == 0
    return run_dir


@pytest.fixture
def stopped(finished, tmp_path) -> Path:
    """The run as a kill after step 2 leaves it: only the checkpoint of step 2."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step-00000004")
    (run_dir / "checkpoints" / "latest").write_text("step-00000002\n")
    return run_dir


def _record(run_dir: Path, **environment) -> None:
    """Write into run_config.json what a run started elsewhere records (another install or machine)."""
    config = json.loads((run_dir / "run_config.json").read_text())
    config["environment"] = {**config["environment"], **environment}
    (run_dir / "run_config.json").write_text(json.dumps(config))


def test_the_environment_is_recorded(finished):
    environment = json.loads((finished / "run_config.json").read_text())["environment"]
    assert environment["world_size"] == 1 and environment["device_type"] == "cpu"
    assert environment["autocast"] == "float32"
    assert {"torch", "transformers", "tokenizers", "datasets", "numpy", "spacy"} <= set(environment["versions"])


def test_a_corpus_file_replaced_between_the_kill_and_the_resume_is_refused(stopped, corpus, finished, sample_dir,
                                                                          tmp_path, capsys):
    original = (corpus / "chapter-02.txt").read_text(encoding="utf-8")
    words = json.loads((stopped / "run_config.json").read_text())["corpus"]["words"]
    try:
        (corpus / "chapter-02.txt").write_text((sample_dir / "chapter-05.txt").read_text(), encoding="utf-8")
        error = expect_error([*args(corpus, stopped), "--resume"], capsys, tmp_path)
        assert error.startswith(f"--resume: the corpus is not the one the run in {stopped} was trained on (4 "
                                f"documents, {words:,} words there, 4 documents, ")
        assert error.endswith("words now); resume with the corpus it was trained on, or start a new run on this one "
                              f"from its weights with --init-from {stopped} and another --output-dir")
        (corpus / "chapter-02.txt").write_text(original.replace("Anne", "Emma"), encoding="utf-8")  # as long
        assert f"{words:,} words now (a text changed: the same number of documents and characters)" in expect_error(
            [*args(corpus, stopped), "--resume"], capsys, tmp_path)
    finally:
        (corpus / "chapter-02.txt").write_text(original, encoding="utf-8")
    assert main([*args(corpus, stopped), "--resume"]) == 0  # the corpus it was trained on: resumed
    assert train_records(stopped) == train_records(finished)


@pytest.mark.parametrize(("recorded", "expected"), [
    ({"device_type": "cuda", "autocast": "bfloat16"},
     "was trained on cuda, this is cpu; the device changes the numbers: resume with --device cuda on a machine with "
     "a GPU, or start a new run from its weights with --init-from"),
    ({"autocast": "bfloat16", "hardware": "NVIDIA H100"},
     "computed in bfloat16 autocast (--amp), this device in float32; the dtype changes the numbers: resume on a "
     "device that computes in bfloat16 (NVIDIA H100)"),
    ({"versions": {"torch": "2.0.1", "numpy": "1.26.4"}},
     "was trained with torch 2.0.1 (now "),
    ({"world_size": 2, "processes_per_machine": 2},
     "was trained by 2 processes (torchrun --nproc_per_node 2); resume with the same number of processes, or pass "
     "--allow-changed-world-size to continue with 1 (the losses will then differ from an uninterrupted run)"),
    ({"world_size": 8, "processes_per_machine": 4},
     "was trained by 8 processes (torchrun --nnodes 2 --nproc_per_node 4)"),
])
def test_a_resume_in_another_environment_is_refused_naming_what_restores_it(stopped, corpus, tmp_path, capsys,
                                                                           recorded, expected):
    _record(stopped, **recorded)
    error = expect_error([*args(corpus, stopped), "--resume"], capsys, tmp_path)
    assert error.startswith(f"--resume: the run in {stopped} ") and expected in error, error
    if "versions" in recorded:
        assert "numpy 1.26.4 (now " in error and "pip install torch==2.0.1 numpy==1.26.4" in error


def test_allow_changed_world_size_continues_and_records_the_change(stopped, corpus, finished, capsys, caplog):
    _record(stopped, world_size=2, processes_per_machine=2)
    with caplog.at_level(logging.WARNING):
        assert main([*args(corpus, stopped), "--resume", "--allow-changed-world-size"]) == 0
    assert (f"--allow-changed-world-size: the run in {stopped} was trained by 2 processes and continues with 1; "
            f"from here on its losses differ from an uninterrupted run") in caplog.text
    config = json.loads((stopped / "run_config.json").read_text())
    assert config["environment"]["world_size"] == 1
    assert config["world_size_changes"] == [{"step": 2, "from": 2, "to": 1}]
    # the next resume, with as many processes as now, needs no flag; nor does the run count as another
    assert main([*args(corpus, stopped), "--resume-from-checkpoint", "step-2"]) == 0
    assert main(args(corpus, stopped)) == 2
    assert "already holds this run" in capsys.readouterr().err


def test_other_hardware_is_a_warning(stopped, corpus, finished, caplog):
    _record(stopped, hardware="cpu AVX2")
    with caplog.at_level(logging.WARNING):
        assert main([*args(corpus, stopped), "--resume"]) == 0
    assert "was trained on cpu AVX2, this is cpu " in caplog.text and "may differ" in caplog.text
    assert train_records(stopped) == train_records(finished)


def test_a_run_recorded_before_the_environment_was_resumes(stopped, corpus, finished):
    config = json.loads((stopped / "run_config.json").read_text())
    del config["environment"], config["corpus"]
    (stopped / "run_config.json").write_text(json.dumps(config))
    assert main([*args(corpus, stopped), "--resume"]) == 0
    assert train_records(stopped) == train_records(finished)


def test_max_document_chars_may_change_on_resume_unless_it_cuts_other_documents(stopped, corpus, finished, tmp_path,
                                                                                  capsys):
    """--max-document-chars changes the numbers only through the documents it cuts, which the corpus
    fingerprint compares: a limit above every document resumes, one that cuts them is refused."""
    error = expect_error([*args(corpus, stopped, "--max-document-chars", "10000"), "--resume"], capsys, tmp_path)
    assert error.startswith(f"--resume: the corpus is not the one the run in {stopped} was trained on (4 documents")
    assert main([*args(corpus, stopped, "--max-document-chars", "500000"), "--resume"]) == 0
    assert train_records(stopped) == train_records(finished)


def test_a_held_out_split_made_otherwise_is_refused(stopped, corpus, capsys, tmp_path):
    """The same corpus split otherwise (as an ernie-cpt that rounded the held-out count another way would):
    refused before any work, as the evaluations would not continue the run's; the recorded split resumes."""
    config = json.loads((stopped / "run_config.json").read_text())
    recorded = config["corpus"]["held_out_fingerprint"]
    config["corpus"]["held_out_fingerprint"] = "0" * 64
    (stopped / "run_config.json").write_text(json.dumps(config))
    line = expect_error(args(corpus, stopped, "--resume"), capsys, tmp_path)
    assert line.startswith(f"--resume: the held-out documents differ from those of the run in {stopped} "), line
    assert line.endswith(f"start a new run from its weights with --init-from {stopped} and another --output-dir")

    config["corpus"]["held_out_fingerprint"] = recorded
    (stopped / "run_config.json").write_text(json.dumps(config))
    assert main(args(corpus, stopped, "--resume")) == 0
