"""The folder of ``finetune --task`` (``--multitask-dir DIR``): the settings it was started with, and
when it may be used again.

``DIR/finetune_config.json`` records the settings of the fine-tuning (every option that changes a
result, the model's path and the content of each labelled file), written before the first run starts.
Started again in the same folder, finetune refuses other settings (naming each: value there, value
now) or labelled files whose content changed (a file replaced between a kill and ``--resume``), and the same ones
unless ``--resume`` (continue, with finished runs scored again) or ``--overwrite`` (remove what an
earlier fine-tuning wrote there: ``runs/``, the reports and this file, nothing else). ``--seeds``
may change under ``--resume``: each seed has its own runs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ernie_cpt.commands.finetune_output import check_output_dir
from ernie_cpt.commands.options import SINGLE_SET_ONLY, FinetuneOptions, MultiTaskFinetuneOptions
from ernie_cpt.data.labelled_sets import parse_specs
from ernie_cpt.errors import UserError
from ernie_cpt.files import content_digest
from ernie_cpt.options import to_dict
from ernie_cpt.training.checkpoint import atomic_write_text

SETTINGS = "finetune_config.json"
DATA = "data_sha256"  # the settings' entry of the labelled files' contents: name -> {"train": digest, "test": ...}
WRITTEN = ("runs", "report.json", "report.md", SETTINGS)  # what --overwrite removes
NOT_SETTINGS = {"seeds", "resume", "allow_changed_world_size", "overwrite", "output_json", "multitask_dir", "device",
                "num_threads", "save_steps", *SINGLE_SET_ONLY}


def multitask_settings(model_dir: str | Path, options: FinetuneOptions, multi: MultiTaskFinetuneOptions,
                       weighting: Mapping[type, Any]) -> dict[str, Any]:
    """The options that change the results of ``finetune --task``, and ``model`` (MODEL_DIR, absolute);
    ``weighting``: the loss weighting's option groups by class."""
    settings = {k: v for k, v in to_dict(options, multi, *weighting.values()).items() if k not in NOT_SETTINGS}
    data = {spec.name: {split: content_digest(getattr(spec, split)) for split in ("train", "test")}
            for spec in parse_specs(multi.task)}
    return {"model": str(Path(model_dir).resolve()), **settings, DATA: data}


def _changed_files(previous: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    """The labelled files (``NAME TRAIN file F``) whose content differs from the one recorded in ``previous`` (a
    fine-tuning recorded before contents were is not checked)."""
    before, now = previous.get(DATA), settings.get(DATA, {})
    if not isinstance(before, dict):
        return []
    specs = {spec.name: spec for spec in parse_specs(settings.get("task") or [])}
    return [f"{name} {split} file {getattr(specs[name], split)}" for name, digests in now.items() if name in specs
            for split, digest in digests.items() if (before.get(name) or {}).get(split, digest) != digest]


def _differences(previous: dict[str, Any], settings: dict[str, Any]) -> list[str]:
    flags = {key: "MODEL_DIR" if key == "model" else f"--{key.replace('_', '-')}" for key in settings}
    return [f"{flags[key]} {previous.get(key)!r} there, {value!r} now" for key, value in settings.items()
            if key != DATA and previous.get(key) != value]


def prepare_multitask_dir(out: Path, model_dir: str | Path, settings: dict[str, Any], resume: bool,
                          overwrite: bool) -> None:
    """Make ``out`` ready for a fine-tuning with ``settings`` (main process only; see the module).
    Raises UserError, before anything is written, for a folder that holds other work."""
    check_output_dir(out, Path(model_dir), True, "--multitask-dir")  # a file, or the model's own folder, is refused
    file = out / SETTINGS
    if overwrite:
        for name in WRITTEN:
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    elif file.is_file():
        previous = json.loads(file.read_text(encoding="utf-8"))
        changed = _differences(previous, settings)
        if changed:
            raise UserError(f"--multitask-dir {out} holds a fine-tuning with other settings ({'; '.join(changed)}); "
                            f"pass the same ones (with --resume to continue), --overwrite to start over, or choose "
                            f"another --multitask-dir")
        files = _changed_files(previous, settings)
        if files:
            raise UserError(f"--multitask-dir {out} holds a fine-tuning on other data: the content of "
                            f"{', '.join(files)} changed since it started; pass the files it was trained on (with "
                            f"--resume to continue), --overwrite to start over on these, or choose another "
                            f"--multitask-dir")
        if not resume:
            raise UserError(f"--multitask-dir {out} already holds this fine-tuning; pass --resume to continue it "
                            f"(finished runs are scored again), --overwrite to start over, or choose another "
                            f"--multitask-dir")
    elif out.is_dir() and any(out.iterdir()):
        raise UserError(f"--multitask-dir {out} is not empty and holds no fine-tuning; choose an empty or new folder, "
                        f"or pass --overwrite to write into it")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(file, json.dumps(settings, indent=2) + "\n")
