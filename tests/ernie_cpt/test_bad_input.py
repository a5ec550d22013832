"""More of the bad-input table (see also test_cli_errors.py): the command exits with code 2 and one
`ernie-cpt: error:` line (progress bars and log lines aside) that says what to do, and leaves
nothing half-written; or, where the README says so, it warns and goes on.
"""
# ruff: noqa: RUF001  (the Chinese sample text has full-width commas)

from __future__ import annotations

import errno
import functools
import gzip
import json
import logging
import re
import shutil
from pathlib import Path

import pytest

from ernie_cpt.cli import main
from ernie_cpt.data.corpus import MAX_PARAGRAPH_CHARS
from ernie_cpt.training import checkpoint
from ernie_cpt.training.run_log import read_records
from tests.helpers import expect_error as _expect_error

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# these commands may log warnings before their error line
expect_error = functools.partial(_expect_error, warnings=True)

NON_ENGLISH = {
    "de-1.txt": "Am Morgen ging die Familie Müller in den Wald. Die Kinder liefen voraus, und der Vater trug den "
                "Korb mit dem Brot.\n\nNach einer Stunde erreichten sie den kleinen See. Dort setzten sie sich auf "
                "eine Bank und aßen.\n\nAm Abend kehrten sie müde nach Hause zurück. Trotzdem waren alle froh.",
    "de-2.txt": "Die Stadt Hamburg liegt an der Elbe. Sie ist nach Berlin die zweitgrößte Stadt Deutschlands.\n\n"
                "Viele Menschen besuchen jedes Jahr den Fischmarkt. Außerdem gibt es zahlreiche Museen.",
    "ru-1.txt": "Утром Анна вышла из дома и пошла на станцию. Поезд опаздывал, поэтому она купила газету.\n\n"
                "Через час она приехала в Москву. Там её ждал старый друг Иван.",
    "zh-1.txt": "今天早上，小明和他的妈妈一起去北京的公园散步。天气很好，阳光明媚。\n\n"
                "中午的时候，他们在一家小饭馆吃了面条。饭馆的老板很热情。",
    "zh-2.txt": "上海是中国最大的城市之一，位于长江的入海口。这里有很多高楼大厦。\n\n"
                "外滩是上海最有名的地方。晚上的时候，黄浦江两岸的灯光非常漂亮。",
}


@pytest.fixture(scope="module")
def corpus_args(sample_dir) -> list[str]:
    return ["--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]]


def pretrain_args(corpus_args: list[str], run_dir: Path, *extra: str) -> list[str]:
    return ["pretrain", *corpus_args, "--output-dir", str(run_dir), "--model-size", "tiny", "--max-steps", "4",
            "--batch-size", "8", "--learning-rate", "1e-3", "--logging-steps", "1", "--eval-steps", "0",
            "--save-steps", "2", "--save-total-limit", "5", "--vocab-size", "3000", "--seed", "7", *extra]


def train_records(run_dir: Path) -> list[dict]:
    """The training log without its timing."""
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in read_records(run_dir, "train")]


@pytest.fixture(scope="module")
def tiny_run(corpus_args, tmp_path_factory) -> Path:
    """A finished 4-step run with checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    assert main(pretrain_args(corpus_args, run_dir)) == 0
    return run_dir


@pytest.fixture(scope="module")
def one_sentence_documents(sample_annotations, tmp_path_factory) -> Path:
    """24 documents of one sentence each (short plain sentences of the bundled sample), as JSONL."""
    sentences = [doc["text"][start:end] for doc in sample_annotations
                 for start, end in zip(doc["sentence_starts"], doc["sentence_ends"])]
    plain = [s for s in sentences if 40 <= len(s) <= 150 and '"' not in s and s[0].isupper() and s.endswith(".")]
    path = tmp_path_factory.mktemp("one-sentence") / "sentences.jsonl"
    path.write_text("".join(json.dumps({"text": s}) + "\n" for s in plain[:24]), encoding="utf-8")
    return path


@pytest.fixture
def non_english(tmp_path) -> Path:
    folder = tmp_path / "non-english"
    folder.mkdir()
    for name, text in NON_ENGLISH.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


# --- the corpus --------------------------------------------------------------------------------------------


def test_a_single_empty_file(tmp_path, capsys):
    (tmp_path / "empty.txt").write_bytes(b"\n  \n")

    expect_error(["prepare", "--corpus", str(tmp_path / "empty.txt")], capsys, tmp_path,
                 "no text found", "skipped 1 file that is empty: empty.txt", "non-empty UTF-8 text")


def test_latin1_files_name_the_fix(tmp_path, capsys):
    (tmp_path / "cafe.txt").write_bytes("Le caf\xe9 \xe9tait ferm\xe9.".encode("latin-1"))

    expect_error(["prepare", "--corpus", str(tmp_path / "cafe.txt")], capsys, tmp_path,
                 "not UTF-8", "iconv -f latin1 -t utf-8", "cafe.txt")


def test_a_utf16_file_is_decoded_not_called_binary(tmp_path, cache_dir, capsys):
    """The report: Notepad's "Unicode" (UTF-16 with a byte-order mark) was skipped as binary."""
    (tmp_path / "notes.txt").write_text("Anne walked to Uppercross. She was glad of the walk.\r\n\r\nIt rained.",
                                        encoding="utf-16")

    assert main(["prepare", "--corpus", str(tmp_path / "notes.txt"), "--output-dir", cache_dir]) == 0
    assert "1 document: 2 paragraphs, 3 sentences" in capsys.readouterr().out


def test_a_table_with_a_dict_for_its_text_names_the_file_row_and_type(tmp_path, capsys):
    table = tmp_path / "docs.jsonl"
    table.write_text('{"text": "Anne walked."}\n{"text": {"body": "She was glad."}}\n', encoding="utf-8")

    expect_error(["prepare", "--corpus", str(table), "--output-dir", str(tmp_path / "cache")], capsys, tmp_path,
                 f"{table} row 2: 'text' is an object (dict); it must be a string, or a list of strings (one per "
                 f"paragraph)")


def test_unusable_files_beside_good_ones_are_skipped_with_one_warning(tmp_path, cache_dir, caplog, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("Anne walked to Uppercross. She was glad of the walk.", encoding="utf-8")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "latin1.txt").write_bytes("na\xefve".encode("latin-1"))
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02")

    with caplog.at_level(logging.WARNING):
        assert main(["prepare", "--corpus", str(folder), "--output-dir", cache_dir]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    for text in ("1 file that is empty: empty.txt", "1 file that is not UTF-8", "latin1.txt",
                 "1 file that is binary: binary.txt"):
        assert text in warnings[0]
    assert "1 document: 1 paragraph, 2 sentences" in capsys.readouterr().out


def test_prepare_reads_the_documents_of_a_folder_not_what_tools_left_there(tmp_path, cache_dir, caplog, capsys):
    """Issue 23: `prepare --corpus folder/` read Jupyter's checkpoint copy and hidden notes as documents, named
    only the AppleDouble file (as binary), and never mentioned four .txt.gz files."""
    folder = tmp_path / "folder"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    for i in range(4):
        text = f"Document {i}. Anne walked to Uppercross. She was glad of the walk."
        (folder / f"doc{i}.txt").write_text(text, encoding="utf-8")
        (folder / f"more{i}.txt.gz").write_bytes(gzip.compress(text.replace("Anne", "Mary").encode()))
    (folder / ".ipynb_checkpoints" / "doc0-checkpoint.txt").write_text("Document 0. Anne walked.", encoding="utf-8")
    (folder / ".hidden-notes.txt").write_text("My own notes.", encoding="utf-8")
    (folder / "._doc1.txt").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "doc1.txt~").write_text("Document 1, an older copy.", encoding="utf-8")
    (folder / "#doc3.txt#").write_text("Document 3, auto-saved.", encoding="utf-8")
    (folder / "slides.pdf").write_bytes(b"%PDF-1.7")

    with caplog.at_level(logging.WARNING):
        assert main(["prepare", "--corpus", str(folder), "--output-dir", cache_dir]) == 0

    assert capsys.readouterr().out.startswith("8 documents: 8 paragraphs, ")
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("skipped 4 hidden files or folders: .ipynb_checkpoints/, .DS_Store, ._doc1.txt, ...; "
                              "2 editor backups or tool files: #doc3.txt#, doc1.txt~; 1 file of another format")
    assert warning.endswith(": slides.pdf")


@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_prepare_reads_a_compressed_jsonl_and_an_excel_csv(tmp_path, cache_dir, capsys, suffix):
    """Issue 23: a single corpus.jsonl.gz or .zst was refused as binary; a ';'-separated CSV whose texts hold
    commas was told to close its quotes."""
    import zstandard

    rows = "".join(json.dumps({"text": f"Anne, at last, walked to Uppercross ({i})."}) + "\n" for i in range(3))
    pack = gzip.compress if suffix == ".gz" else zstandard.ZstdCompressor().compress
    (tmp_path / f"corpus.jsonl{suffix}").write_bytes(pack(rows.encode()))
    (tmp_path / "excel.csv").write_text("text;label\nWell, she said, it rained.;a\nYes, it did, all day.;b\n",
                                        encoding="utf-8")

    assert main(["prepare", "--corpus", str(tmp_path / f"corpus.jsonl{suffix}"), str(tmp_path / "excel.csv"),
                 "--output-dir", cache_dir]) == 0
    assert capsys.readouterr().out.startswith("5 documents: 5 paragraphs, 5 sentences")


@pytest.mark.parametrize(("shape", "text"), [
    ("has no line break at all", "word " * (50 * 1024 * 1024 // 5)),  # 50 MB on one line
    ("has no blank line for that long", "A line of a paragraph that never ends.\n" * 30_000),  # 1.2 MB
])
def test_a_paragraph_too_long_for_spacy(tmp_path, capsys, shape, text):
    big = tmp_path / "big.txt"
    big.write_text(text, encoding="utf-8")

    expect_error(["pretrain", "--corpus", str(big), "--output-dir", str(tmp_path / "run")], capsys, tmp_path,
                 f"{big} holds a paragraph of {len(text):,} characters ({shape})",
                 f"more than {MAX_PARAGRAPH_CHARS:,} are refused", "separate paragraphs with blank lines")
    assert not (tmp_path / "run").exists()


def test_one_sentence_documents_and_only_tasks_that_need_more(one_sentence_documents, tmp_path, capsys):
    argv = ["pretrain", "--corpus", str(one_sentence_documents), "--output-dir", str(tmp_path / "run"),
            "--tasks", "sentence_reordering", "sentence_distance", "--model-size", "tiny", "--max-steps", "4"]

    expect_error(argv, capsys, tmp_path, "no task can train on this corpus: sentence_reordering needs paragraphs "
                 "with at least 2 sentences", "sentence_distance needs documents with at least 4 sentences",
                 "choose other --tasks")
    assert not (tmp_path / "run").exists()


def test_non_english_text_is_annotated_with_a_warning(non_english, cache_dir, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["prepare", "--corpus", str(non_english), "--output-dir", cache_dir]) == 0
    share = re.search(r"the corpus does not look like English: (\d+)% of its words are common English words",
                      caplog.text)
    assert share and int(share.group(1)) < 10  # 40-60 % in English
    assert "pass --spacy-model with a pipeline for its language" in caplog.text


def test_english_text_gets_no_language_warning(corpus_args, cache_dir, caplog):
    with caplog.at_level(logging.WARNING):
        assert main(["prepare", *corpus_args, "--output-dir", cache_dir]) == 0
    assert "does not look like English" not in caplog.text


# --- the run directory -------------------------------------------------------------------------------------


def test_resume_when_the_only_checkpoint_is_truncated(tiny_run, corpus_args, tmp_path, capsys, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    shutil.rmtree(run_dir / "checkpoints" / "step-00000002")
    weights = run_dir / "checkpoints" / "step-00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    with caplog.at_level(logging.WARNING):
        expect_error([*pretrain_args(corpus_args, run_dir), "--resume"], capsys, tmp_path,
                     f"--resume: no checkpoint in {run_dir / 'checkpoints'} can be read", "--overwrite")
    assert "skipping unreadable checkpoint" in caplog.text and "step-00000004" in caplog.text


@pytest.mark.parametrize(("resume", "expected"), [
    (False, ["holds a different run (--learning-rate 0.001 there, 0.002 now)", "choose another --output-dir",
             "--overwrite"]),
    (True, ["--resume: the run in", "was started with other options (--learning-rate 0.001 there, 0.002 now)",
            "resume with the same options"]),
])
def test_output_dir_holding_a_different_run(tiny_run, corpus_args, capsys, resume, expected):
    argv = [*pretrain_args(corpus_args, tiny_run, "--learning-rate", "2e-3"), *(["--resume"] if resume else [])]

    expect_error(argv, capsys, tiny_run.parent, *expected)


def test_a_run_recorded_before_an_option_existed_compares_as_what_it_ran_with(tiny_run, corpus_args, tmp_path,
                                                                               capsys):
    """A run made before --mlm-bias-init (its masked-LM bias started at zeros) and --dropout (0.1)
    existed lacks them in run_config.json: it is the same run as one asking for zeros and 0.1."""
    run_dir = tmp_path / "old" / "run"
    shutil.copytree(tiny_run, run_dir)
    config = json.loads((run_dir / "run_config.json").read_text())
    del config["mlm_bias_init"], config["dropout"]
    (run_dir / "run_config.json").write_text(json.dumps(config))

    expect_error([*pretrain_args(corpus_args, run_dir), "--resume"], capsys, run_dir.parent,
                 "was started with other options (--mlm-bias-init 'zeros' there, 'prior' now)")
    expect_error(pretrain_args(corpus_args, run_dir, "--mlm-bias-init", "zeros", "--dropout", "0"), capsys,
                 run_dir.parent, "holds a different run (--dropout 0.1 there, 0.0 now)")
    expect_error(pretrain_args(corpus_args, run_dir, "--mlm-bias-init", "zeros"), capsys, run_dir.parent,
                 f"{run_dir} already holds this run")


def test_resume_with_another_thread_count(tiny_run, corpus_args, capsys):
    """The thread count changes the last digits: a resumed run keeps the count it was started with."""
    assert json.loads((tiny_run / "run_config.json").read_text())["torch_threads"] == 1  # one_torch_thread

    expect_error([*pretrain_args(corpus_args, tiny_run, "--num-threads", "2"), "--resume"], capsys, tiny_run.parent,
                 f"--resume: the run in {tiny_run} used 1 torch thread; the thread count changes the last digits "
                 f"of the losses; resume with --num-threads 1 (or 0)")


def test_output_dir_holding_this_run_without_resume(tiny_run, corpus_args, capsys):
    expect_error(pretrain_args(corpus_args, tiny_run), capsys, tiny_run.parent,
                 f"{tiny_run} already holds this run; pass --resume to continue it, --overwrite to start it over")


def _full_disk_at_call(monkeypatch, n: int) -> None:
    """The n-th checkpoint write fails as on a full disk, after writing part of the weights."""
    calls = []

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == n:
            Path(filename).write_bytes(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(tensors, filename, metadata=metadata)

    original = checkpoint.save_file
    monkeypatch.setattr(checkpoint, "save_file", save_file)


def test_disk_full_during_a_checkpoint_write(tiny_run, corpus_args, tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    _full_disk_at_call(monkeypatch, 2)
    capsys.readouterr()

    assert main(pretrain_args(corpus_args, run_dir)) == 2

    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (f"ernie-cpt: error: no space left on device while writing checkpoint step-00000004 in "
                     f"{run_dir / 'checkpoints'}; the last checkpoint, step-00000002, is intact: free space, then "
                     f"run the same command with --resume")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["latest", "step-00000002"]
    assert (run_dir / "checkpoints" / "latest").read_text() == "step-00000002\n"
    checkpoint.read_checkpoint(run_dir / "checkpoints" / "step-00000002")

    monkeypatch.undo()  # space freed
    assert main([*pretrain_args(corpus_args, run_dir), "--resume"]) == 0
    assert train_records(run_dir) == train_records(tiny_run)


def test_disk_full_at_the_first_checkpoint_leaves_no_run(corpus_args, tmp_path, capsys, monkeypatch):
    _full_disk_at_call(monkeypatch, 1)

    expect_error(pretrain_args(corpus_args, tmp_path / "run"), capsys, tmp_path,
                 "no space left on device while writing checkpoint step-00000002", "no checkpoint was saved yet",
                 "free space, then run the same command again")
    assert not (tmp_path / "run").exists()


# --- runs that go on with a warning ------------------------------------------------------------------------


def test_a_task_with_fewer_examples_than_the_batch_size_trains_with_a_warning(sample_dir, tmp_path, caplog):
    """Six short documents give sentence_reordering a few examples: fewer than --batch-size 64."""
    paragraphs = [p for p in (sample_dir / "chapter-01.txt").read_text(encoding="utf-8").split("\n\n")
                  if p.count(". ") >= 2][:6]
    corpus = tmp_path / "short.jsonl"
    corpus.write_text("".join(json.dumps({"text": p}) + "\n" for p in paragraphs), encoding="utf-8")
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", "--corpus", str(corpus), "--output-dir", str(run_dir), "--model-size", "tiny",
                     "--tasks", "sentence_reordering", "--max-steps", "2", "--batch-size", "64", "--eval-steps", "0",
                     "--vocab-size", "1000"]) == 0
    examples = int(re.search(r"task sentence_reordering has (\d+) training example", caplog.text)[1])
    assert 0 < examples < 64
    assert (f"task sentence_reordering has {examples} training example{'s' * (examples != 1)}, fewer than "
            f"--batch-size 64: each of its batches holds all of them, so every step of it is an epoch of the same "
            f"examples; lower --batch-size or add text") in caplog.messages
    assert [r["step"] for r in read_records(run_dir, "train")] == [2]


@pytest.mark.slow
def test_one_sentence_documents_skip_the_tasks_that_need_more(one_sentence_documents, tmp_path, caplog):
    run_dir = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", "--corpus", str(one_sentence_documents), "--output-dir", str(run_dir),
                     "--tasks", "knowledge_masking", "sentence_reordering", "--model-size", "tiny",
                     "--max-steps", "6", "--batch-size", "8", "--eval-steps", "0", "--logging-steps", "1"]) == 0
    assert "task sentence_reordering is skipped (the other tasks train as planned): sentence_reordering needs " \
           "paragraphs with at least 2 sentences" in caplog.text
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["tasks"] == ["knowledge_masking"] and config["requested_tasks"] == ["knowledge_masking",
                                                                                        "sentence_reordering"]
    assert list(config["skipped_tasks"]) == ["sentence_reordering"] and config["stages"] == [{"knowledge_masking": 3}]
    assert json.loads((run_dir / "tasks.json").read_text()) == {"task_ids": {"knowledge_masking": 0},
                                                                "task_embedding_size": 7}
    assert [r["task"] for r in read_records(run_dir, "train")] == ["knowledge_masking"] * 3


@pytest.mark.slow
def test_non_english_text_trains_and_skips_what_it_cannot_make(non_english, tmp_path, caplog):
    run_dir = tmp_path / "run"
    tasks = ["knowledge_masking", "capitalization", "sentence_reordering", "discourse_relation"]
    with caplog.at_level(logging.WARNING):
        assert main(["pretrain", "--corpus", str(non_english), "--output-dir", str(run_dir), "--tasks", *tasks,
                     "--model-size", "tiny", "--steps-per-task", "2", "--batch-size", "4", "--eval-steps", "0",
                     "--eval-fraction", "0.2", "--logging-steps", "1"]) == 0
    assert "does not look like English" in caplog.text
    assert "task discourse_relation is skipped" in caplog.text  # no English discourse markers
    assert json.loads((run_dir / "run_config.json").read_text())["tasks"] == tasks[:3]
    assert len(read_records(run_dir, "train")) == 6


@pytest.mark.slow
def test_resume_falls_back_from_a_truncated_checkpoint(tiny_run, corpus_args, tmp_path, caplog):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    weights = run_dir / "checkpoints" / "step-00000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])

    with caplog.at_level(logging.INFO):
        assert main([*pretrain_args(corpus_args, run_dir), "--resume"]) == 0
    assert "skipping unreadable checkpoint" in caplog.text and "Resumed from" in caplog.text
    assert "step-00000002 at step 2" in caplog.text
    assert train_records(run_dir) == train_records(tiny_run)
    checkpoint.read_checkpoint(run_dir / "checkpoints" / "step-00000004")  # written again, whole


def test_batch_size_that_the_processes_cannot_share(tmp_path, capsys, monkeypatch):
    from ernie_cpt import distributed

    monkeypatch.setattr(distributed, "world_size", lambda: 2)  # as under torchrun --nproc_per_node 2

    expect_error(["pretrain", "--corpus", str(tmp_path), "--output-dir", str(tmp_path / "run"), "--batch-size", "9"],
                 capsys, tmp_path, "--batch-size 9 is the batch over all 2 processes and must be a multiple of 2")


@pytest.mark.slow
def test_one_big_text_file_trains_on_its_chapters(sample_dir, tmp_path, caplog):
    """`pretrain --corpus book.txt`: one document, read as its chapters; the tasks that need several
    documents train on them, and a held-out chapter scores every task."""
    book = tmp_path / "book.txt"
    book.write_text("\n\n".join(p.read_text(encoding="utf-8").strip() for p in sorted(sample_dir.glob("*.txt"))),
                    encoding="utf-8")
    run_dir = tmp_path / "run"
    tasks = ["knowledge_masking", "sentence_distance", "ir_relevance"]
    with caplog.at_level(logging.INFO):
        assert main(["pretrain", "--corpus", str(book), "--output-dir", str(run_dir), "--tasks", ",".join(tasks),
                     "--model-size", "tiny", "--max-steps", "6", "--batch-size", "8", "--eval-steps", "0",
                     "--vocab-size", "3000", "--max-seq-length", "64"]) == 0
    assert "the corpus is a single document (book.txt), so it is read as 12 documents, one per section" in caplog.text
    assert "11 training documents and 1 held-out" in caplog.text
    assert json.loads((run_dir / "run_config.json").read_text())["tasks"] == tasks
    assert {r["task"] for r in read_records(run_dir, "eval")} == set(tasks)
