"""The run directory of ``pretrain``: a new run, a run to resume, or another run to leave alone.

``run_config.json`` marks a folder as a run: it is written (atomically) as soon as the folder is
created, before anything else, and again once the tasks the corpus supports are known. So a
run killed at any moment either left nothing, or can be continued with ``--resume``: from its
newest readable checkpoint, or from the start if it had not saved one yet.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ernie_cpt import distributed
from ernie_cpt.errors import UserError
from ernie_cpt.files import check_output_path
from ernie_cpt.full_disk import DiskFull, disk_problem
from ernie_cpt.modeling.safe_loading import UnreadableFile
from ernie_cpt.training.checkpoint import (
    Checkpoint,
    atomic_write_text,
    checkpoints,
    find_checkpoint,
    latest_checkpoint,
    read_checkpoint,
    resume_advice,
)
from ernie_cpt.training.run_environment import check_environment

log = logging.getLogger(__name__)

# Options that may change between a run and its resumption without changing the result (a run
# directory may also be moved).
# Each was checked: the batches and masks are seeded per example, whatever the workers or processes that make
# them; annotations are cached by content and spaCy version, not by batch size, processes or folder; logging,
# evaluating and saving more or less often change what is logged, not the training. --device may change
# from auto to cuda: the device type it gives is compared (run_environment), and so is --num-threads's result.
# --max-document-chars changes the result only through the documents it cuts, and the corpus's fingerprint
# (documents as read, parts included) is compared (run_environment.check_corpus).
RESUMABLE_CHANGES = {"output_dir", "resume", "overwrite", "save_steps", "save_total_limit", "logging_steps",
                     "eval_steps", "dataloader_workers", "num_proc", "cache_dir", "device", "spacy_batch_size",
                     "max_nonfinite_steps", "report_to", "resume_from_checkpoint", "num_threads",
                     "allow_changed_world_size", "max_document_chars"}
# Written to run_config.json but not options: what the corpus made of the tasks (checked later), the
# budget as asked (max_steps holds the task steps actually trained), the corpus's size and fingerprint
# (checked once it is read: run_environment.check_corpus), the torch thread count the run started with (a
# resumed run keeps it), and what else the numbers depend on (run_environment.check_environment).
DERIVED = {"stages", "requested_tasks", "skipped_tasks", "requested_max_steps", "corpus", "torch_threads",
           "environment", "world_size_changes"}
# Options recorded as what the run did, the value asked for kept under another name.
REQUESTED = {"tasks": "requested_tasks", "max_steps": "requested_max_steps"}
CONFIG = "run_config.json"


def option_differences(previous: dict[str, Any], config: dict[str, Any],
                       absent: Mapping[str, Any] | None = None) -> list[str]:
    """``option: value there -> value now`` for every option that differs from the earlier run. An
    option the earlier run did not record (it predates the option) counts as ``absent[option]``,
    what that run ran with (:func:`ernie_cpt.options.absent_values`)."""
    changed, absent = [], absent or {}
    for key, value in config.items():
        if key in REQUESTED:  # compare what was asked for, not what the corpus and schedule made of it
            before, value = previous.get(REQUESTED[key], previous.get(key)), config.get(REQUESTED[key], value)
        else:
            before = previous.get(key, absent.get(key))
        if key not in RESUMABLE_CHANGES | DERIVED and before != value:
            changed.append(f"--{key.replace('_', '-')} {before!r} there, {value!r} now")
    return changed


def resolve_resume(run_dir: Path, config: dict[str, Any], resume: bool, overwrite: bool,
                   checkpoint: str | None = None, absent: Mapping[str, Any] | None = None) -> Checkpoint | None:
    """The checkpoint to continue from, or None to start a new run in ``run_dir`` (main process only):
    with ``resume``, ``checkpoint`` (a checkpoint folder of the run, or its name) or the newest
    readable one. ``absent``: see :func:`option_differences`.

    Refuses a folder that holds something else, or another run, unless ``overwrite``; with
    ``resume``, a run started with other options or in another environment (``config["environment"]``,
    :func:`ernie_cpt.training.run_environment.check_environment`), or whose checkpoints are all unreadable."""
    check_output_path(run_dir, "--output-dir", folder=True)
    config_file = run_dir / CONFIG
    previous = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else None
    if resume:
        if previous is None and run_dir.is_dir() and any(run_dir.iterdir()):
            raise UserError(f"--resume: {run_dir} holds no ernie-cpt run (no {CONFIG}), only other files; pass "
                            f"--overwrite instead of --resume to replace them, or choose another --output-dir")
        if previous is None:
            raise UserError(f"--resume: {run_dir} holds no checkpoint to resume; run without --resume to start")
        changed = option_differences(previous, config, absent)
        if changed:
            raise UserError(f"--resume: the run in {run_dir} was started with other options ({'; '.join(changed)}); "
                            f"resume with the same options, or use a new --output-dir")
        if checkpoint is None and not checkpoints(run_dir):
            log.warning("--resume: the run in %s stopped before its first checkpoint; starting it over", run_dir)
            shutil.rmtree(run_dir)
            return None
        moved = check_environment(run_dir, previous.get("environment"), config["environment"],
                                  bool(config.get("allow_changed_world_size"))) if "environment" in config else None
        found = _chosen_checkpoint(run_dir, checkpoint) if checkpoint is not None else latest_checkpoint(run_dir)
        if found is None:
            raise UserError(f"--resume: no checkpoint in {run_dir / 'checkpoints'} can be read (damaged, or not "
                            f"written by ernie-cpt); start over with --overwrite, or use a new --output-dir")
        if moved is not None:  # recorded, so that the next resume with as many processes needs no flag
            change = {"step": found[1][2]["step"], "from": previous["environment"]["world_size"],
                      "to": moved["world_size"]}
            write_config(run_dir, {**previous, "environment": moved,
                                   "world_size_changes": [*previous.get("world_size_changes", []), change]})
        return found
    if run_dir.exists() and any(run_dir.iterdir()):
        if overwrite:
            shutil.rmtree(run_dir)
        elif previous is None:
            raise UserError(f"{run_dir} is not empty and holds no ernie-cpt run (no {CONFIG}); pass --overwrite to "
                            f"replace what is there, or choose another --output-dir")
        elif changed := option_differences(previous, config, absent):
            raise UserError(f"{run_dir} holds a different run ({'; '.join(changed)}); choose another --output-dir, "
                            f"or pass --overwrite to replace that run")
        else:
            raise UserError(f"{run_dir} already holds this run; pass --resume to continue it, --overwrite to start "
                            f"it over, or choose another --output-dir")
    return None


def _chosen_checkpoint(run_dir: Path, checkpoint: str) -> Checkpoint:
    """``--resume-from-checkpoint``: a checkpoint of the run in ``run_dir`` (a path or a name), read."""
    path = Path(checkpoint)
    if path.is_dir() and path.resolve().parent != (run_dir / "checkpoints").resolve():
        raise UserError(f"--resume-from-checkpoint {checkpoint} is not a checkpoint of the run in {run_dir} (its "
                        f"checkpoints are in {run_dir / 'checkpoints'}); to start a new run from its weights, pass "
                        f"--init-from with its run directory instead")
    chosen = find_checkpoint(run_dir, path.name)
    later = [c.name for c in checkpoints(run_dir) if c.name > chosen.name]
    if later:
        log.warning("resuming from %s: the later checkpoints (%s) are replaced as the run reaches their steps "
                    "again", chosen.name, ", ".join(later))
    try:
        return chosen, read_checkpoint(chosen)
    except (OSError, UnreadableFile, ValueError) as e:
        raise UserError(f"--resume-from-checkpoint: {chosen} cannot be read ({e}); choose another checkpoint") from e


def check_stages(run_dir: Path, stages: list[dict[str, int]]) -> None:
    """On --resume: the stages made of the corpus and options must be those the run was started with."""
    previous = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))["stages"]
    if previous != stages:
        raise UserError(f"--resume: the stages differ from those of the run in {run_dir} ({previous} there, {stages} "
                        f"now: the corpus or the schedule file changed); resume with the same data, or use a new "
                        f"--output-dir")


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Write run_config.json (the main process only: its callers check)."""
    atomic_write_text(run_dir / CONFIG, json.dumps(config, indent=2))


@contextlib.contextmanager
def run_directory(run_dir: Path, config: dict[str, Any], resume_from: Checkpoint | None) -> Iterator[None]:
    """Create ``run_dir`` with its run_config.json (a new run); if the new run fails before its first
    checkpoint, leave the folder as it was (absent, or empty). A write that fails for want of space,
    in the run or a cache, raises :class:`~ernie_cpt.full_disk.DiskFull` saying whether to resume."""
    existed = run_dir.exists()
    new_run = distributed.is_main() and resume_from is None
    try:
        if new_run:
            run_dir.mkdir(parents=True, exist_ok=True)
            write_config(run_dir, config)
        yield
    except BaseException as e:
        full = _as_disk_full(e, run_dir)
        if new_run and not checkpoints(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
            if existed:
                run_dir.mkdir()
        if full is not None:
            raise full from e
        raise


def _as_disk_full(error: BaseException, run_dir: Path) -> DiskFull | None:
    """``error`` as a DiskFull that says whether to resume the run, when it is a full disk (one no inner
    block named is recognised by its errno alone); else None."""
    if isinstance(error, DiskFull):
        return error.with_advice(resume_advice(run_dir))
    problem = None if isinstance(error, UserError) else disk_problem(error)
    return None if problem is None else DiskFull(problem, f"the run in {run_dir}", resume_advice(run_dir))
