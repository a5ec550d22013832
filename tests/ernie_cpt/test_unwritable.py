"""Output paths that cannot be written are refused before any work, and a finished cache is read-only input.

Every command runs without root's override of file permissions (the ``unprivileged`` prefix: setpriv or capsh
as root, nothing for an ordinary user), so a mode-555 folder really cannot be written; as plain root every
write would succeed and the tests would prove nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

from ernie_cpt.cli import main
from ernie_cpt.data.read_only import load_read_only, saved_folder
from tests.helpers import snapshot

REPO = Path(__file__).resolve().parents[2]
NO_PIPELINE = "no_such_pipeline_xyz"
# Runs each argv in one process (one start-up for them all); prints [exit code, stderr] per command.
RUN_ALL = """
import contextlib, io, json, sys
from ernie_cpt.cli import main
from benchmarks.run import main as benchmarks
results = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = benchmarks(argv[1:]) if argv[0] == "benchmarks" else main(argv)
    results.append([code, err.getvalue()])
print(json.dumps(results))
"""


def run_unprivileged(prefix: list[str], *commands: list[str]) -> list[tuple[int, list[str]]]:
    """Each command's exit code and stderr lines, run in one process without root's override."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([*prefix, sys.executable, "-c", RUN_ALL, json.dumps(commands)], capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    return [(code, [line for line in err.splitlines() if line.strip()])
            for code, err in json.loads(done.stdout.splitlines()[-1])]


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro-run").mkdir()
    (tmp_path / "ro-run" / "run_config.json").write_text("{}")
    (tmp_path / "ro-cache").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "encoder_config.json").write_text("{}")  # what marks a run directory
    for name in ("train.jsonl", "test.jsonl"):
        (tmp_path / name).write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    for name in ("ro", "ro-run", "ro-cache"):
        (tmp_path / name).chmod(0o555)
    return {name: tmp_path / name for name in ("ro", "ro-run", "ro-cache", "run", "train.jsonl", "test.jsonl")}


def test_every_output_path_is_checked_for_permission_before_any_work(places, unprivileged, sample_dir, tmp_path):
    ro, labelled = places["ro"], ["--train", str(places["train.jsonl"]), "--test", str(places["test.jsonl"])]
    corpus = ["--corpus", str(sample_dir / "chapter-01.txt")]
    cases = {  # argv -> the start of its one error line
        ("finetune", str(tmp_path / "no-model"), *labelled, "--output-dir", f"{ro}/ft"):
            f"--output-dir {ro}/ft: cannot write in {ro} (Permission denied); make it writable, or choose another "
            f"path",
        ("finetune", str(tmp_path / "no-model"), *labelled, "--output-json", f"{ro}/r.json"):
            f"--output-json {ro}/r.json: cannot write in {ro} (Permission denied)",
        ("finetune", str(tmp_path / "no-model"), "--task", f"a:classification:{places['train.jsonl']}:"
         f"{places['test.jsonl']}", "--multitask-dir", f"{ro}/mt", "--learning-rate", "1e-3"):
            f"--multitask-dir {ro}/mt: cannot write in {ro} (Permission denied)",
        ("pretrain", *corpus, "--output-dir", f"{ro}/run", "--spacy-model", NO_PIPELINE):
            f"--output-dir {ro}/run: cannot write in {ro} (Permission denied)",
        ("pretrain", *corpus, "--output-dir", str(places["ro-run"]), "--resume", "--spacy-model", NO_PIPELINE):
            f"--output-dir {places['ro-run']}: cannot write in {places['ro-run']} (Permission denied)",
        ("compare", "--tasks", "knowledge_masking", "capitalization", "--output-dir", f"{ro}/compare"):
            f"--output-dir {ro}/compare: cannot write in {ro} (Permission denied)",
        ("export", str(places["run"]), f"{ro}/export"):
            f"OUT_DIR {ro}/export: cannot write in {ro} (Permission denied)",
        ("benchmarks", "--json", f"{ro}/bench.json"):
            f"--json {ro}/bench.json: cannot write in {ro} (Permission denied)",
        ("prepare", *corpus, "--cache-dir", str(places["ro-cache"])):
            f"the cache folder {places['ro-cache']} cannot be written (Permission denied), and it does not hold the "
            f"annotations of this corpus yet: make it writable, or pass --cache-dir (or set ERNIE_CPT_CACHE) to a "
            f"writable folder",
        ("pretrain", *corpus, "--output-dir", str(tmp_path / "new-run"), "--cache-dir", str(places["ro-cache"])):
            f"the cache folder {places['ro-cache']} cannot be written (Permission denied)",
    }
    before = snapshot(tmp_path)

    results = run_unprivileged(unprivileged, *(list(argv) for argv in cases))

    for (code, lines), (argv, expected) in zip(results, cases.items()):
        prog = "python -m benchmarks.run" if argv[0] == "benchmarks" else "ernie-cpt"
        errors = [line for line in lines if "error:" in line]
        assert code == 2 and len(errors) == 1, (argv, lines)
        assert errors[0].startswith(f"{prog}: error: {expected}"), (argv, errors[0])
        assert not any("Traceback" in line for line in lines), (argv, lines)
    assert snapshot(tmp_path) == before  # no work began: no run, cache entry, lock or staging folder


def test_a_saved_dataset_is_read_through_a_view_and_never_written(tmp_path):
    folder = tmp_path / "saved"
    datasets.Dataset.from_dict({"text": [f"document {i}" for i in range(20)]}).save_to_disk(str(folder))
    before = snapshot(folder)

    documents = load_read_only(folder, tmp_path / "view")
    split = documents.train_test_split(test_size=4, seed=1)
    split["train"].map(lambda row: {"n": len(row["text"])}).shuffle(seed=2).select(range(3))

    assert snapshot(folder) == before
    assert saved_folder(documents) == folder.resolve()
    assert any(p.name.startswith("cache-") for p in (tmp_path / "view").iterdir())  # what datasets derived
    assert load_read_only(folder, tmp_path / "view")["text"] == documents["text"]  # the view again, reused


@pytest.mark.slow
def test_pretrain_reads_a_filled_read_only_cache_and_writes_nothing_there(unprivileged, sample_dir, tmp_path):
    cache = tmp_path / "cache"
    args = ["pretrain", "--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:2]], "--cache-dir",
            str(cache), "--model-size", "tiny", "--max-steps", "2", "--batch-size", "8", "--max-seq-length", "64",
            "--eval-max-examples", "16", "--vocab-size", "3000", "--num-threads", "1", "--tasks",
            "knowledge_masking", "sentence_reordering"]
    assert main([*args, "--output-dir", str(tmp_path / "first")]) == 0
    entry = next((cache / "annotations").iterdir())
    # the annotations and their record (written by the annotation step); the run derived its examples elsewhere
    assert sorted(p.name for p in entry.iterdir()) == ["annotation.json", "data-00000-of-00001.arrow",
                                                       "dataset_info.json", "state.json"]
    shutil.rmtree(cache / "examples")  # the second run must derive its examples again, and cannot write them there
    for path in [cache, *cache.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(cache)

    [(code, lines)] = run_unprivileged(unprivileged, [*args, "--output-dir", str(tmp_path / "second")])

    assert code == 0, lines
    assert snapshot(cache) == before
    assert (tmp_path / "second" / "metrics.json").is_file()


def test_a_datasets_cache_this_user_cannot_write_is_one_line(unprivileged, sample_dir, tmp_path):
    """datasets writes (and locks) the corpus in its cache (HF_DATASETS_CACHE) even to read a cached copy."""
    ro = tmp_path / "hf-datasets"
    ro.mkdir()
    ro.chmod(0o555)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(ro)}
    done = subprocess.run([*unprivileged, sys.executable, "-m", "ernie_cpt", "prepare", "--corpus",
                           str(sample_dir / "chapter-01.txt"), "--cache-dir", str(tmp_path / "cache")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"ernie-cpt: error: the datasets cache {ro} cannot be written (Permission denied); datasets keeps the corpus "
        f"there as Arrow: make it writable, or set HF_DATASETS_CACHE to a writable folder")
    assert not (tmp_path / "cache").exists() and not any(ro.iterdir())
