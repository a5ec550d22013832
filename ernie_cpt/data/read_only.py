"""Saved datasets (a finished annotation cache entry, a ``save_to_disk`` corpus) read as read-only input.

`datasets` writes what it derives from a dataset loaded from disk (the indices of
``train_test_split``, ``shuffle`` and ``select``, the results of ``map`` and ``filter``) as
``cache-*.arrow`` files into the dataset's own folder. For a finished cache entry, or a user's
saved dataset, that would make input into output: a read-only cache or dataset could not be used,
and every run would add files to it. So the folder is loaded through a *view*: a folder of
symbolic links to its files, where those derived files go instead. The view of an annotation
entry is ``<cache-dir>/examples/<fingerprint>/``, so later runs reuse the task examples derived
there (the tasks' map fingerprints name them); where that cannot be written, and for a saved
corpus, the view is a temporary folder removed when the process ends.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
from pathlib import Path

import datasets

from ernie_cpt.files import existing_folder, unwritable

log = logging.getLogger(__name__)


def _link_all(folder: Path, view: Path) -> None:
    """Make ``view`` hold a symbolic link to every file of ``folder``, sub-folders mirrored as folders
    (a DatasetDict's splits); a link that points elsewhere (the cache was moved) is replaced."""
    view.mkdir(parents=True, exist_ok=True)
    for item in folder.iterdir():
        if item.is_dir():
            _link_all(item, view / item.name)
            continue
        link, target = view / item.name, str(item.resolve())
        if link.is_symlink() and os.readlink(link) == target:
            continue
        staged = view / f".{item.name}.link-{os.getpid()}"
        staged.unlink(missing_ok=True)
        staged.symlink_to(target)
        os.replace(staged, link)


def temporary_folder(prefix: str) -> Path:
    """A new folder under the system's temporary folder, removed when this process ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def load_read_only(folder: Path, view: Path | None = None) -> datasets.Dataset | datasets.DatasetDict:
    """The dataset saved in ``folder`` (``save_to_disk``), loaded through a view (see the module) at
    ``view`` when that can be written, else in a temporary folder; nothing is ever written in ``folder``."""
    if view is not None and unwritable(existing_folder(view)):
        log.info("%s cannot be written, so what is derived from %s goes to a temporary folder (not kept)",
                 existing_folder(view), folder)
        view = None
    if view is None:
        view = temporary_folder("ernie-cpt-view-") / folder.name
    _link_all(folder, view)
    return datasets.load_from_disk(str(view))


def saved_folder(dataset: datasets.Dataset) -> Path:
    """The folder a dataset loaded by :func:`load_read_only` was saved in (not its view)."""
    return Path(os.path.realpath(dataset.cache_files[0]["filename"])).parent
