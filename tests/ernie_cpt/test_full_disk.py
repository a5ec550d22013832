"""A full disk during any write: one line that names what was being written and what to do, exit 2, and no
staging folder, temporary file or lock left behind. Every failure here happens for real, on a small file
system (``small_disk``: a filled tmpfs as root, else a file size limit, RLIMIT_FSIZE); nothing is mocked."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pytest
import torch
from safetensors.torch import save_file
from torch.utils.tensorboard import SummaryWriter
from transformers import AutoTokenizer

from ernie_cpt.cli import main
from ernie_cpt.full_disk import disk_problem, writing
from ernie_cpt.training.checkpoint import atomic_write_text

TOKENIZER = Path(__file__).resolve().parents[1] / "data" / "sample-tokenizer"
ROOM = 48 << 10  # bytes left on the small disk, or the file size limit, for the library writes


def _rows() -> list[dict]:
    return [{"text": "word " * 400}] * 200


WRITES = {  # each library's write of about 400 kB into a folder, and the exception type it fails with
    "open": lambda folder: (folder / "a.bin").write_bytes(b"x" * 400_000),
    "torch.save": lambda folder: torch.save({"w": torch.zeros(100_000)}, folder / "state.pt"),
    "safetensors": lambda folder: save_file({"w": torch.zeros(100_000)}, str(folder / "model.safetensors")),
    "tokenizers": lambda folder: AutoTokenizer.from_pretrained(TOKENIZER).save_pretrained(str(folder)),
    "datasets save_to_disk": lambda folder: datasets.Dataset.from_list(_rows()).save_to_disk(str(folder / "d")),
    "datasets from_generator": lambda folder: datasets.Dataset.from_generator(
        lambda: iter(_rows()), cache_dir=str(folder / "g")),
    "TensorBoard": lambda folder: _tensorboard(folder),
}


def _tensorboard(folder: Path) -> None:
    writer = SummaryWriter(str(folder / "tb"))
    for step in range(20_000):
        writer.add_scalar("train/loss", 1.0, step)
    writer.close()


def _atomic_write(folder: Path) -> None:
    atomic_write_text(folder / "metrics.json", json.dumps({"x": "y" * 400_000}))


def _child() -> None:
    """The body of a fresh interpreter (``python -c``): write ``WRITES[argv[1]]`` into folder ``argv[2]``
    under a file size limit of ``argv[3]`` bytes (0: none); prints what failed and how it reads, as JSON."""
    name, folder, limit = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    write = _atomic_write if name == "atomic_write_text" else WRITES[name]
    if limit:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        write(folder)
        answer: tuple[str, str | None, str | None] = ("no error", None, None)
    except Exception as e:
        answer = (type(e).__name__, str(e), disk_problem(e, folder))
    print(json.dumps(answer))


def write_on(disk, name: str) -> tuple[str, str | None, str | None]:
    """Run ``WRITES[name](folder)`` (or ``atomic_write_text``) in a fresh interpreter with ``disk`` full (a
    file size limit must not stop the test process, and a forked child of a process whose OpenMP threads
    have started can deadlock in torch: CI hung so); returns the exception's type name (or "no error"),
    its message and disk_problem's answer."""
    disk.fill(ROOM)
    folder = disk.root / "out"
    folder.mkdir(exist_ok=True)
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import test_full_disk; test_full_disk._child()"
    done = subprocess.run([sys.executable, "-c", code, name, str(folder), str(disk.limit or 0)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    kind, message, problem = json.loads(done.stdout.splitlines()[-1])
    return kind, message, problem


@pytest.mark.parametrize("name", list(WRITES))
def test_every_librarys_failed_write_is_recognised(name, small_disk):
    """Whatever the library wraps the errno in (torch.save: RuntimeError 'unexpected pos', which keeps none)."""
    kind, _, problem = write_on(small_disk, name)

    assert kind != "no error"
    assert problem == small_disk.problem


@pytest.mark.parametrize(("error", "problem"), [
    (OSError(122, "Disk quota exceeded"), "disk quota exceeded"),
    (RuntimeError("I/O error: Os { code: 122, kind: QuotaExceeded, message: \"Disk quota exceeded\" }"),
     "disk quota exceeded"),
    (Exception("Input/output error (os error 5)"),
     "input/output error (a failing device, or a network file system out of space)"),
])
def test_the_forms_a_quota_or_a_failing_device_take(error, problem):
    """What no small file system here can produce: a quota (EDQUOT) and a device error (EIO), as Python's
    OSError, a Rust library's io::Error, and a message that quotes only the words, raised as the cause of
    another exception (datasets' DatasetGenerationError raises from the OSError)."""
    try:
        try:
            raise error
        except Exception as e:
            raise datasets.exceptions.DatasetGenerationError("An error occurred while generating the dataset") from e
    except Exception as wrapped:
        assert disk_problem(wrapped) == problem


def test_other_errors_pass_unchanged_and_a_roomy_disk_is_not_blamed(tmp_path):
    with pytest.raises(ValueError), writing("x", tmp_path):
        raise ValueError("not a disk problem")
    with pytest.raises(RuntimeError), writing("x", tmp_path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")


def test_an_atomic_write_leaves_the_old_file_and_no_temporary_one(small_disk):
    folder = small_disk.root / "out"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")

    kind, message, _ = write_on(small_disk, "atomic_write_text")

    assert (kind, message) == ("DiskFull", f"{small_disk.problem} while writing metrics.json in {folder}; free "
                                           f"space, then run the same command again")
    assert [p.name for p in folder.iterdir()] == ["metrics.json"]
    assert (folder / "metrics.json").read_text() == "{}"


# --- whole commands -----------------------------------------------------------------------------------------


def pretrain_args(corpus: list[str], run_dir: Path, cache: str, *extra: str) -> list[str]:
    return ["pretrain", "--corpus", *corpus, "--output-dir", str(run_dir), "--cache-dir", cache, "--model-size",
            "tiny", "--max-steps", "6", "--batch-size", "8", "--max-seq-length", "64", "--eval-steps", "3",
            "--eval-max-examples", "16", "--vocab-size", "3000", "--seed", "5", "--num-threads", "1", *extra]


def left_behind(folder: Path) -> list[str]:
    """What a failed command may not leave: staging folders, temporary files and folders, locks."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if any(mark in p.name for mark in (".staging-", ".tmp-", ".tmp", ".trash-", ".lock", ".old-")))


@pytest.fixture(scope="module")
def corpus(sample_dir) -> list[str]:
    return [str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]


@pytest.fixture(scope="module")
def finished_run(corpus, cache_dir, tmp_path_factory) -> Path:
    """A tiny finished run, and its export (``<run>-export``)."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert main(pretrain_args(corpus, run_dir, cache_dir, "--save-steps", "6")) == 0
    assert main(["export", str(run_dir), str(run_dir) + "-export"]) == 0
    return run_dir


def test_the_first_checkpoint_on_a_full_disk_removes_the_new_run(corpus, cache_dir, small_disk, start_cli):
    """safetensors' write of model.safetensors (3.7 MB) fails; no checkpoint was saved, so the run is removed."""
    small_disk.fill(1 << 20)
    run_dir = small_disk.root / "run"
    command = start_cli(pretrain_args(corpus, run_dir, cache_dir, "--save-steps", "3"), small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [
        f"ernie-cpt: error: {small_disk.problem} while writing checkpoint step-00000003 in {run_dir}/checkpoints; no "
        f"checkpoint was saved yet: free space, then run the same command again"], command.output
    assert "Traceback" not in command.output
    assert sorted(p.name for p in small_disk.root.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])


def test_a_later_checkpoint_on_a_full_disk_keeps_the_last_one_and_resume_finishes(corpus, cache_dir, small_disk,
                                                                                  start_cli):
    """torch.save's write of training_state.pt (7.4 MB) fails once the disk fills after the first checkpoint's
    weights (the run stops itself there, as it opens that checkpoint's trainer state; the disk is filled; it goes
    on, and the checkpoint's last few kB fit)."""
    run_dir = small_disk.root / "run"
    args = pretrain_args(corpus, run_dir, cache_dir, "--save-steps", "2")
    command = start_cli(args, signal_at_open=(".tmp-step-", signal.SIGSTOP, 1))
    command.wait_stopped()
    small_disk.fill(6 << 20, command.pid)  # model.safetensors (3.7 MB) fits, training_state.pt does not
    os.kill(command.pid, signal.SIGCONT)

    assert command.wait() == 2, command.output
    assert command.error_lines == [
        f"ernie-cpt: error: {small_disk.problem} while writing checkpoint step-00000004 in {run_dir}/checkpoints; "
        f"the last checkpoint, step-00000002, is intact: free space, then run the same command with --resume"]
    assert "Traceback" not in command.output
    assert left_behind(small_disk.root) == []
    assert [p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-00000002"]

    small_disk.release()
    resumed = start_cli([*args, "--resume"])
    assert resumed.wait() == 0, resumed.output
    assert "Resumed from" in resumed.output and (run_dir / "metrics.json").is_file()


def test_the_logs_on_a_full_disk_keep_the_last_checkpoint(corpus, cache_dir, small_disk, start_cli, tmp_path):
    """After the checkpoint that ends stage 1, only the logs grow (a line a step) until the disk is full."""
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text("stages:\n- knowledge_masking: 2\n- knowledge_masking: 60\n")
    run_dir = small_disk.root / "run"
    command = start_cli([*pretrain_args(corpus, run_dir, cache_dir, "--logging-steps", "1", "--save-steps", "1000"),
                         "--schedule", "file", "--schedule-file", str(schedule)])
    while not (run_dir / "checkpoints" / "latest").exists():
        assert command.process.is_alive(), command.output
        time.sleep(0.01)
    small_disk.fill(0, command.pid)

    assert command.wait() == 2, command.output
    [line] = command.error_lines
    written = line.removeprefix(f"ernie-cpt: error: {small_disk.problem} while writing ").split(";")[0]
    assert written in {f"{kind}.jsonl in {run_dir}/logs" for kind in ("train", "eval")} | {
        f"the TensorBoard events in {run_dir}/logs/tensorboard"}, line
    assert line.endswith("; the last checkpoint, step-00000002, is intact: free space, then run the same command "
                         "with --resume")
    assert "Traceback" not in command.output


def test_prepare_into_a_full_cache_leaves_no_staging_folder(corpus, small_disk, start_cli):
    small_disk.fill(16 << 10)
    cache = small_disk.root / "cache"
    command = start_cli(["prepare", "--corpus", *corpus, "--cache-dir", str(cache), "--num-proc", "1"],
                        small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [f"ernie-cpt: error: {small_disk.problem} while writing the annotations in "
                                   f"{cache}/annotations; free space, then run the same command again"]
    assert "Traceback" not in command.output
    assert left_behind(small_disk.root) == [] and not any((cache / "annotations").iterdir())


def test_a_full_datasets_cache_while_reading_the_corpus(corpus, small_disk):
    """`datasets` writes the text files as Arrow into its own cache (HF_DATASETS_CACHE, read when it is imported:
    a process of its own)."""
    cache = small_disk.root / "hf"
    small_disk.fill(16 << 10)
    limit = small_disk.limit

    def limited() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "ernie_cpt", "prepare", "--corpus", *corpus], capture_output=True,
                          text=True, env={**os.environ, "HF_DATASETS_CACHE": str(cache)}, preexec_fn=limited,
                          timeout=300)

    assert done.returncode == 2, done.stderr
    assert [line for line in done.stderr.splitlines() if "error" in line] == [
        f"ernie-cpt: error: {small_disk.problem} while writing the corpus into the datasets cache {cache}; free "
        f"space, then run the same command again"]


def test_an_export_to_a_full_disk_leaves_nothing(finished_run, small_disk, start_cli):
    small_disk.fill(1 << 20)
    out = small_disk.root / "export"
    command = start_cli(["export", str(finished_run), str(out)], small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [f"ernie-cpt: error: {small_disk.problem} while writing the export {out}; nothing "
                                   f"was written to {out}: free space, then run the same command again"]
    assert sorted(p.name for p in small_disk.root.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])


def test_a_fine_tuned_model_on_a_full_disk_leaves_nothing(finished_run, small_disk, start_cli, tmp_path):
    rows = [{"text": f"{word} {word} and {word}", "label": label} for word, label in
            (("sea", "water"), ("rain", "water"), ("river", "water"), ("stone", "land"), ("hill", "land"),
             ("field", "land"))]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    small_disk.fill(1 << 20)
    out = small_disk.root / "ft"
    command = start_cli(["finetune", str(finished_run) + "-export", "--train", str(tmp_path / "train.jsonl"),
                         "--test", str(tmp_path / "test.jsonl"), "--epochs", "1", "--seeds", "1",
                         "--learning-rate", "1e-3", "--validation-fraction", "0", "--output-dir", str(out),
                         "--num-threads", "1"], small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [f"ernie-cpt: error: {small_disk.problem} while writing the fine-tuned model "
                                   f"{out}; free space, then run the same command again"]
    assert "the results, which could not be saved:" in command.output  # the scores are shown all the same
    assert "| majority class of train |" in command.output.split("could not be saved:")[1], command.output
    assert sorted(p.name for p in small_disk.root.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])


@pytest.mark.slow
def test_a_compare_rerun_on_a_full_disk_says_to_run_compare_again(corpus, cache_dir, small_disk, start_cli,
                                                                  tmp_path):
    """A finished comparison run again onto a full disk: the initial encoder of its ``none`` baseline, written
    again, and its report, each with compare's own advice, not pretrain's, and nothing staged left behind."""
    out = tmp_path / "compare"
    args = ["compare", "--corpus", *corpus, "--output-dir", str(out), "--cache-dir", cache_dir, "--tasks",
            "knowledge_masking", "capitalization", "--schedules", "continual", "--steps-per-task", "2",
            "--model-size", "tiny", "--batch-size", "8", "--max-seq-length", "64", "--eval-max-examples", "16",
            "--vocab-size", "3000", "--save-steps", "100", "--num-threads", "1"]
    assert main(args) == 0
    [none] = (out / "runs").glob("none-seed*")
    os.rename(none, tmp_path / "none")
    none.symlink_to(small_disk.root)
    small_disk.fill(64 << 10)

    command = start_cli(args, small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [
        f"ernie-cpt: error: {small_disk.problem} while writing the initial encoder {none}/export; free space, then "
        f"run the same command again: it keeps the finished runs and resumes the others from their last checkpoint"]
    assert sorted(p.name for p in small_disk.root.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])
    assert left_behind(out) == []
    small_disk.release()
    none.unlink()
    os.rename(tmp_path / "none", none)

    report = small_disk.root / "report"
    report.mkdir()
    os.rename(out / "report", tmp_path / "first-report")
    (out / "report").symlink_to(report)
    small_disk.fill(8 << 10)

    command = start_cli(args, small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [
        f"ernie-cpt: error: {small_disk.problem} while writing evidence.png in {out}/report; free space, then run the "
        f"same command again: it keeps the finished runs and resumes the others from their last checkpoint"]
    assert left_behind(small_disk.root) == [] and left_behind(out) == []


def test_the_run_folders_first_files_on_a_full_disk_remove_the_new_run(corpus, cache_dir, small_disk, start_cli):
    """The run's first writes (its config, tokenizer and encoder config, a few kB each) meet a full disk before any
    training: one line naming the file, and no run folder left behind."""
    small_disk.fill(4 << 10)
    run_dir = small_disk.root / "run"
    command = start_cli(pretrain_args(corpus, run_dir, cache_dir, "--save-steps", "3"), small_disk.limit)

    assert command.wait() == 2, command.output
    [line] = command.error_lines
    assert line.startswith(f"ernie-cpt: error: {small_disk.problem} while writing ") and str(run_dir) in line, line
    assert line.endswith("free space, then run the same command again"), line
    assert "Traceback" not in command.output
    assert sorted(p.name for p in small_disk.root.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])


def labelled_sets(folder: Path) -> tuple[Path, Path]:
    """A small labelled set (24 rows of two classes) as train.jsonl and test.jsonl in ``folder``."""
    rows = [{"text": f"{word} {word} and {word}", "label": label} for word, label in
            (("sea", "water"), ("rain", "water"), ("river", "water"), ("stone", "land"), ("hill", "land"),
             ("field", "land"))]
    for split in ("train", "test"):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows * 4))
    return folder / "train.jsonl", folder / "test.jsonl"


def test_the_lock_file_of_each_commands_folder_on_a_full_disk(finished_run, small_disk, start_cli, tmp_path):
    """The first write into an output folder's parent is its lock file (:mod:`ernie_cpt.claims`): on a full disk
    each command that claims a folder ends with one line naming it, and leaves neither lock nor folder (the
    folders above it that the claim made included)."""
    train, test = labelled_sets(tmp_path)
    small_disk.fill(0)
    disk = small_disk.root
    cases = {  # argv -> the folder whose lock file it writes
        ("pretrain", "--corpus", str(train), "--output-dir", f"{disk}/new/run"): disk / "new" / "run",
        ("compare", "--tasks", "knowledge_masking", "capitalization", "--output-dir", f"{disk}/compare"):
            disk / "compare",
        ("export", str(finished_run), f"{disk}/export"): disk / "export",
        ("finetune", str(finished_run), "--train", str(train), "--test", str(test), "--output-dir", f"{disk}/ft"):
            disk / "ft",
        ("finetune", str(finished_run), "--task", f"a:classification:{train}:{test}", "--multitask-dir",
         f"{disk}/mt", "--learning-rate", "1e-3"): disk / "mt",
    }
    for argv, folder in cases.items():
        command = start_cli(list(argv), small_disk.limit)

        assert command.wait() == 2, command.output
        lock = folder.parent / f".{folder.name}.lock"
        assert command.error_lines == [f"ernie-cpt: error: {small_disk.problem} while writing the lock file {lock}; "
                                       f"free space, then run the same command again"], command.output
        assert "Traceback" not in command.output
        assert sorted(p.name for p in disk.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])


def test_the_tokenizer_cache_on_a_full_disk_removes_the_new_run(corpus, cache_dir, small_disk, start_cli, tmp_path):
    """The tokenizer trained on the corpus is cached (CACHE/tokenizers) before the run uses it: here that folder
    is on the full disk, the annotations are not."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (Path(cache_dir) / "annotations").mkdir(parents=True, exist_ok=True)
    (cache / "annotations").symlink_to(Path(cache_dir) / "annotations")  # annotated once per session
    (cache / "tokenizers").symlink_to(small_disk.root)
    small_disk.fill(16 << 10)
    run_dir = tmp_path / "run"
    command = start_cli(pretrain_args(corpus, run_dir, str(cache)), small_disk.limit)

    assert command.wait() == 2, command.output
    assert command.error_lines == [f"ernie-cpt: error: {small_disk.problem} while writing the tokenizer cache in "
                                   f"{cache}/tokenizers; no checkpoint was saved yet: free space, then run the same "
                                   f"command again"], command.output
    assert "Traceback" not in command.output
    assert not run_dir.exists() and left_behind(tmp_path) == []
    assert sorted(p.name for p in small_disk.root.iterdir()) == (["filler"] if small_disk.mode == "tmpfs" else [])


def test_a_multitask_dir_on_a_full_disk_resumes_once_there_is_room(finished_run, small_disk, start_cli, tmp_path):
    """finetune --task writes its runs' checkpoints into --multitask-dir: the one that meets the full disk is
    removed, the line says to resume, and --resume after freeing space finishes with the report."""
    train, test = labelled_sets(tmp_path)
    out = small_disk.root / "mt"
    args = ["finetune", str(finished_run) + "-export", "--task", f"a:classification:{train}:{test}",
            "--multitask-dir", str(out), "--learning-rate", "1e-3", "--seeds", "1", "--epochs", "1",
            "--batch-size", "8", "--num-threads", "1"]
    small_disk.fill(1 << 20)
    command = start_cli(args, small_disk.limit)

    assert command.wait() == 2, command.output
    [line] = command.error_lines
    assert line.startswith(f"ernie-cpt: error: {small_disk.problem} while writing checkpoint step-00000003 in "
                           f"{out}/runs/multi_task-seed1/checkpoints; "), command.output
    assert line.endswith("; free space, then run the same command with --resume (finished runs are kept)"), line
    assert "Traceback" not in command.output and left_behind(small_disk.root) == []

    small_disk.release()
    resumed = start_cli([*args, "--resume"])
    assert resumed.wait() == 0, resumed.output
    assert json.loads((out / "report.json").read_text())["sets"]["a"]["variants"].keys() == {"multi_task",
                                                                                              "single_task"}


def test_a_ranks_annotation_shard_on_a_full_disk(corpus, small_disk, start_ranks):
    """Under torchrun every rank parses a shard of the corpus into the cache (ernie_cpt.data.sharded_annotation):
    a real group of 2 processes on a full disk both stop with exit 2, rank 0 prints one line naming the shard,
    and neither a shard nor a staging folder is left."""
    cache = small_disk.root / "cache"
    small_disk.fill(16 << 10)
    ranks = start_ranks(["prepare", "--corpus", *corpus[:2], "--cache-dir", str(cache), "--num-proc", "1"],
                        file_size_limit=small_disk.limit)

    assert [rank.wait() for rank in ranks] == [2, 2], [rank.output for rank in ranks]
    [line] = ranks[0].error_lines
    assert ranks[1].error_lines == []  # every rank has the error; rank 0 prints it
    assert line.startswith(f"ernie-cpt: error: {small_disk.problem} while writing annotation shard rank-"), line
    assert line.endswith("; free space, then run the same command again"), line
    assert not any("Traceback" in rank.output for rank in ranks), ranks[0].output + ranks[1].output
    assert left_behind(small_disk.root) == [] and not [p for p in cache.rglob("*") if p.is_dir()
                                                         and ".shards-of-" in p.name], sorted(cache.rglob("*"))
