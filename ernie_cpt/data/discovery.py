"""Which files a ``--corpus`` path stands for: a file, a folder searched recursively, or a glob.

A folder is searched recursively, following links to folders, and holds the documents of its
``.txt`` files, the rows of its tables (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``),
any of them compressed as a whole (``.gz``, ``.bz2``, ``.xz``, ``.zst``), and the folders that
``datasets``' ``save_to_disk`` wrote. It skips, and names in one warning with the reason:

* hidden files and folders (``.DS_Store``, ``.ipynb_checkpoints/``, ``.git/``, ``._doc.txt``, the
  AppleDouble files macOS leaves beside every file on a foreign disk);
* editor backups and tool files (``doc.txt~``, ``#doc.txt#``, ``.swp``, ``.bak``, ``__MACOSX/``,
  ``Thumbs.db``);
* files of any other format (``report.pdf``, ``notes.md``);
* a link to a folder or file read already (a loop, or the same folder twice), and a link to nothing.

A glob (``data/*.jsonl.gz``, ``shards/**/*.parquet``; quoted, so that ernie-cpt expands it) stands for
the files it matches, in sorted order; like the shell, it matches no hidden file. A file named
itself is read whatever its name: a table by its format, any other file as text.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from ernie_cpt.compression import format_suffix
from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural

TEXT_SUFFIXES = (".txt",)
TABLE_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}
READ = f".txt, {', '.join(list(TABLE_FORMATS)[:-1])} or {list(TABLE_FORMATS)[-1]}, compressed or not"
TOOL_FOLDERS = {"__MACOSX", "__pycache__"}
TOOL_FILES = {"Thumbs.db", "desktop.ini", "Icon\r"}
BACKUP_SUFFIXES = (".swp", ".swo", ".swn", ".bak", ".orig", ".tmp", ".part", ".crdownload")
# reason -> (one, several), for the warning; a reason not here is a file's content: "file that is empty"
PHRASES = {
    "hidden": ("hidden file or folder", "hidden files or folders"),
    "tool": ("editor backup or tool file", "editor backups or tool files"),
    "format": (f"file of another format (not {READ})", f"files of another format (not {READ})"),
    "again": ("link to a folder or file that is read already (a loop, or the same one twice)",
              "links to folders or files that are read already (a loop, or the same one twice)"),
    "dangling": ("link to nothing", "links to nothing"),
    "unreadable": ("folder that cannot be read", "folders that cannot be read"),
}


@dataclass
class CorpusFile:
    """A file (or saved-dataset folder) to read: its ``kind`` ("text", "table" or "saved") and its ``name``,
    the path relative to the folder or glob it was found under (a text file's ``doc_id``)."""

    path: Path
    name: str
    kind: str


@dataclass
class Found:
    """What the ``--corpus`` paths hold: the files to read, in order, and what was skipped, by reason."""

    files: list[CorpusFile] = field(default_factory=list)
    skipped: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, name: str) -> None:
        self.skipped.setdefault(reason, []).append(name)

    def add(self, other: Found) -> None:
        self.files += other.files
        for reason, names in other.skipped.items():
            self.skipped.setdefault(reason, []).extend(names)


def skipped_summary(skipped: dict[str, list[str]]) -> str:
    """``"2 files that are empty: a.txt, b.txt; 1 hidden file or folder: .DS_Store"`` (three names at most)."""
    items = []
    for reason, names in skipped.items():
        one, several = PHRASES.get(reason, (f"file that is {reason}", f"files that are {reason}"))
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        items.append(f"{plural(len(names), one, several)}: {shown}")
    return "; ".join(items)


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``datasets``' ``save_to_disk``."""
    return os.path.isfile(path / "dataset_info.json") or os.path.isfile(path / "dataset_dict.json")


def kind_of(path: Path) -> str | None:
    """"text" or "table" by the format under any compression suffix, None for another format."""
    suffix = format_suffix(path)
    return "table" if suffix in TABLE_FORMATS else "text" if suffix in TEXT_SUFFIXES else None


def _artefact(name: str) -> str | None:
    """The reason a file or folder name is never read, or None."""
    if name.startswith("."):
        return "hidden"
    if name in TOOL_FOLDERS or name in TOOL_FILES or name.endswith("~") or name.lower().endswith(BACKUP_SUFFIXES) \
            or (name.startswith("#") and name.endswith("#")):
        return "tool"
    return None


def _identity(path: str) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _real_entries(top: Path) -> set[tuple[int, int]]:
    """The identities of the folders and files under ``top`` reached without following a link (hidden and tool
    folders left out): a link to one of them is skipped, so the entry itself is read, under its own name."""
    real = {_identity(str(top))}
    for folder, dirs, files in os.walk(top):
        dirs[:] = [name for name in dirs if not _artefact(name)]
        for name in dirs + files:
            full = os.path.join(folder, name)
            if not os.path.islink(full):
                real.add(_identity(full))
    return real


def _walk(top: Path, prefix: Path, seen: set[tuple[int, int]]) -> Found:
    """The files of the folder ``top`` (named ``prefix``/their path in it), and what it holds that is not read.
    A link is followed unless it leads to a folder or file that is read anyway (``seen`` holds those of
    earlier sources), which is named instead: so a loop ends."""
    found = Found()
    real = _real_entries(top)
    seen.add(_identity(str(top)))

    def unreadable(error: OSError) -> None:
        found.skip("unreadable", f"{prefix / os.path.relpath(error.filename, top)}/ ({error.strerror})")

    def read_already(full: str) -> bool:
        identity = _identity(full)
        again = os.path.islink(full) and (identity in real or identity in seen)
        seen.add(identity)
        return again

    for folder, dirs, files in os.walk(top, followlinks=True, onerror=unreadable):
        rel = prefix / Path(folder).relative_to(top)
        kept = []
        for name in sorted(dirs):
            full, shown = os.path.join(folder, name), str(rel / name) + "/"
            if why := _artefact(name):
                found.skip(why, shown)
            elif read_already(full):
                found.skip("again", f"{shown} -> {os.path.realpath(full)}")
            elif is_saved_dataset(Path(full)):
                found.files.append(CorpusFile(Path(full), str(rel / name), "saved"))
            else:
                kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            full, shown = os.path.join(folder, name), str(rel / name)
            kind = kind_of(Path(name))
            if why := _artefact(name):
                found.skip(why, shown)
            elif not os.path.exists(full):
                found.skip("dangling", f"{shown} -> {os.readlink(full)}")
            elif kind is None:
                found.skip("format", shown)
            elif read_already(full):
                found.skip("again", f"{shown} -> {os.path.realpath(full)}")
            else:
                found.files.append(CorpusFile(Path(full), shown, kind))
    return found


def _glob_root(pattern: str) -> Path:
    """The folder a glob's matches are named relative to: its leading parts without wildcards."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


def discover(sources: list[str]) -> Found:
    """The files the ``--corpus`` paths stand for, in order, and what their folders hold that is not read.
    Raises UserError for a path that does not exist, a glob that matches nothing, a link to nothing, or a
    folder without a file to read."""
    found, seen = Found(), set[tuple[int, int]]()
    for source in sources:
        path = Path(source)
        if path.is_symlink() and not path.exists():
            raise UserError(f"corpus path {path} is a link to {os.readlink(path)}, which does not exist; pass "
                            f"existing files or folders to --corpus")
        if not path.exists() and glob.has_magic(source):
            matches = sorted(glob.glob(source, recursive=True))
            if not matches:
                raise UserError(f"corpus pattern {source} matches no file; check it (quote it, so that the shell "
                                f"leaves it to ernie-cpt)")
            root = _glob_root(source)
            for match in map(Path, matches):
                kind = "saved" if match.is_dir() and is_saved_dataset(match) else kind_of(match)
                if match.is_dir() and kind != "saved":
                    found.add(_walk(match, match.relative_to(root), seen))
                elif kind is None:
                    found.skip("format", str(match.relative_to(root)))
                else:
                    found.files.append(CorpusFile(match, str(match.relative_to(root)), kind))
        elif not path.exists():
            raise UserError(f"corpus path {path} does not exist; pass existing files or folders to --corpus")
        elif path.is_dir() and is_saved_dataset(path):
            found.files.append(CorpusFile(path, path.name, "saved"))
        elif path.is_dir():
            inside = _walk(path, Path(), seen)
            if not inside.files:
                held = f" (it holds {skipped_summary(inside.skipped)})" if inside.skipped else ""
                raise UserError(f"corpus folder {path} contains no .txt files or tables to read{held}; add text files "
                                f"({READ}), or pass the files to read")
            found.add(inside)
        else:
            found.files.append(CorpusFile(path, path.name, "table" if kind_of(path) == "table" else "text"))
    return found
