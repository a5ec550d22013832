"""Which files a --corpus path stands for: folders (hidden files, editor backups, other formats, links),
globs, and what is named in the one warning. Every case is made of real files and links on disk."""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.discovery import discover, skipped_summary
from ernie_cpt.errors import UserError

TEXT = "Anne Elliot walked to Uppercross. She was glad of the walk.\n\nThe day was fine."


def write(path: Path, text: str | bytes = TEXT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def jupyter_and_editor_folder(root: Path) -> Path:
    """The folder of issue 23: documents beside what Jupyter, macOS and editors leave there."""
    folder = root / "folder"
    for i in range(4):
        write(folder / f"doc{i}.txt", f"Document {i}. {TEXT}")
    write(folder / ".ipynb_checkpoints" / "doc0-checkpoint.txt", f"Document 0. {TEXT}")  # a copy of doc0.txt
    write(folder / ".hidden-notes.txt", "my private notes")
    write(folder / "._doc1.txt", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")  # AppleDouble
    write(folder / ".DS_Store", b"\x00\x00\x00\x01Bud1\x00\x00")
    write(folder / "doc1.txt~", "an editor backup of doc1")
    write(folder / "#doc3.txt#", "an Emacs auto-save of doc3")
    write(folder / ".doc2.txt.swp", b"b0VIM 9.0\x00\x00")
    write(folder / "__MACOSX" / "._doc0.txt", b"\x00\x05\x16\x07")
    write(folder / "report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    write(folder / "notes.md", "# Notes\n\nNot a document of the corpus.")
    return folder


def test_hidden_files_tool_folders_and_editor_backups_are_skipped_and_named_once(tmp_path, caplog):
    folder = jupyter_and_editor_folder(tmp_path)
    caplog.set_level(logging.WARNING, logger="ernie_cpt.data.corpus")

    corpus = load_corpus(CorpusOptions(corpus=[str(folder)]))

    assert corpus["doc_id"] == ["doc0.txt", "doc1.txt", "doc2.txt", "doc3.txt"]  # no checkpoint copy of doc0.txt
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0] == (
        "skipped 5 hidden files or folders: .ipynb_checkpoints/, .DS_Store, ._doc1.txt, ...; "
        "3 editor backups or tool files: __MACOSX/, #doc3.txt#, doc1.txt~; "
        "2 files of another format (not .txt, .jsonl, .json, .csv, .tsv or .parquet, compressed or not): notes.md, "
        "report.pdf")


def test_the_skipped_names_are_all_kept_for_the_summary(tmp_path):
    found = discover([str(jupyter_and_editor_folder(tmp_path))])

    assert sorted(found.skipped["hidden"]) == [".DS_Store", "._doc1.txt", ".doc2.txt.swp", ".hidden-notes.txt",
                                               ".ipynb_checkpoints/"]
    assert sorted(found.skipped["tool"]) == ["#doc3.txt#", "__MACOSX/", "doc1.txt~"]
    assert skipped_summary({"empty": ["a.txt"]}) == "1 file that is empty: a.txt"


def test_office_lock_files_and_package_folders_are_tool_files(tmp_path):
    write(tmp_path / "doc.txt", f"Document. {TEXT}")
    write(tmp_path / "~$doc.txt", b"\x05owner\x00\x00")  # what an office suite keeps beside an open document
    write(tmp_path / "node_modules" / "pkg" / "README.txt", "a package's readme")

    found = discover([str(tmp_path)])

    assert [f.name for f in found.files] == ["doc.txt"]
    assert sorted(found.skipped["tool"]) == ["node_modules/", "~$doc.txt"]


def test_a_hidden_file_named_itself_is_read(tmp_path):
    hidden = write(tmp_path / ".notes.txt")
    assert load_corpus(CorpusOptions(corpus=[str(hidden)]))["doc_id"] == [".notes.txt"]


def test_a_linked_sub_folder_is_followed_and_a_loop_is_named(tmp_path, caplog):
    outside = tmp_path / "elsewhere"
    write(outside / "linked.txt")
    folder = tmp_path / "corpus"
    write(folder / "a.txt")
    write(folder / "sub" / "b.txt")
    (folder / "more").symlink_to(outside, target_is_directory=True)  # followed
    (folder / "sub" / "loop").symlink_to(folder, target_is_directory=True)  # back to the top: a loop
    (folder / "again").symlink_to(folder / "sub", target_is_directory=True)  # the same folder twice
    caplog.set_level(logging.WARNING, logger="ernie_cpt.data.corpus")

    corpus = load_corpus(CorpusOptions(corpus=[str(folder)]))

    assert corpus["doc_id"] == ["a.txt", "more/linked.txt", "sub/b.txt"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith("skipped 2 links to folders or files that are read already (a loop, or the same one "
                              "twice): ")
    assert f"again/ -> {folder / 'sub'}" in warning and f"sub/loop/ -> {folder}" in warning


def test_a_dangling_link_is_named(tmp_path, caplog):
    folder = tmp_path / "corpus"
    write(folder / "a.txt")
    (folder / "gone.txt").symlink_to(tmp_path / "deleted.txt")
    caplog.set_level(logging.WARNING, logger="ernie_cpt.data.corpus")

    assert load_corpus(CorpusOptions(corpus=[str(folder)]))["doc_id"] == ["a.txt"]
    assert f"skipped 1 link to nothing: gone.txt -> {tmp_path / 'deleted.txt'}" in caplog.text


def test_a_dangling_link_given_as_the_corpus(tmp_path):
    (tmp_path / "corpus.txt").symlink_to(tmp_path / "deleted.txt")
    with pytest.raises(UserError) as error:
        load_corpus(CorpusOptions(corpus=[str(tmp_path / "corpus.txt")]))
    assert str(error.value) == (f"corpus path {tmp_path / 'corpus.txt'} is a link to {tmp_path / 'deleted.txt'}, "
                                f"which does not exist; pass existing files or folders to --corpus")


def test_an_unreadable_sub_folder_and_file_are_named(tmp_path):
    """Run as an ordinary user would: root's override of file permissions is dropped (setpriv)."""
    folder = tmp_path / "corpus"
    write(folder / "a.txt")
    write(folder / "locked" / "b.txt")
    write(folder / "secret.txt").chmod(0)
    (folder / "locked").chmod(0)
    code = ("import logging; from ernie_cpt.data.corpus import CorpusOptions, load_corpus; logging.basicConfig(); "
            f"print(list(load_corpus(CorpusOptions(corpus=[{str(folder)!r}]))['doc_id']))")
    drop = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"] if os.geteuid() == 0 else []
    if drop and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: every folder is readable")
    try:
        done = subprocess.run([*drop, sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "hf")})
    finally:
        (folder / "locked").chmod(0o755)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['a.txt']"
    assert ("skipped 1 folder that cannot be read: locked/ (Permission denied); 1 file that is unreadable "
            "(Permission denied): secret.txt") in done.stderr


def test_a_folder_with_only_files_that_are_not_read_says_what_it_holds(tmp_path):
    folder = tmp_path / "corpus"
    write(folder / "report.pdf", b"%PDF-1.7")
    write(folder / ".DS_Store", b"\x00")

    with pytest.raises(UserError) as error:
        load_corpus(CorpusOptions(corpus=[str(folder)]))
    assert str(error.value).startswith(
        f"corpus folder {folder} contains no .txt files or tables to read (it holds 1 hidden file or folder: "
        f".DS_Store; 1 file of another format")


def test_a_glob_reads_the_files_it_matches_named_from_its_fixed_folder(tmp_path):
    for shard in ("a", "b"):
        write(tmp_path / "shards" / shard / "part.txt", f"Shard {shard}. {TEXT}")
        with gzip.open(tmp_path / "shards" / shard / "more.txt.gz", "wt", encoding="utf-8") as handle:
            handle.write(f"More of shard {shard}. {TEXT}")
    write(tmp_path / "shards" / ".hidden" / "secret.txt")  # like the shell, ** matches no hidden folder

    corpus = load_corpus(CorpusOptions(corpus=[str(tmp_path / "shards" / "**" / "*.txt*")]))

    assert corpus["doc_id"] == ["a/more.txt.gz", "a/part.txt", "b/more.txt.gz", "b/part.txt"]
    assert corpus["text"][0] == f"More of shard a. {TEXT}"


def test_a_glob_that_matches_nothing(tmp_path):
    with pytest.raises(UserError, match=r"corpus pattern .*\*\.jsonl\.gz matches no file; check it \(quote it"):
        load_corpus(CorpusOptions(corpus=[str(tmp_path / "data" / "*.jsonl.gz")]))
