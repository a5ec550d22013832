"""``ernie-cpt export``: a run's model, tokenizer and model card as one folder.

Where the architecture is one ``ErnieModel`` (hard sharing) the folder is a Hugging Face
checkpoint: an ``ErnieForMaskedLM`` with the trained knowledge-masking head (``pipeline("fill-mask")``,
``AutoModelForMaskedLM``), which ``AutoModel`` (an ``ErnieModel`` with the task embedding) and
``ErnieForSequenceClassification`` (a new classifier) load too; a run without knowledge masking
gives an ``ErnieModel``. Other architectures give ernie-cpt's own folder, never an approximation.
Either way ``ernie_cpt_model.json`` and the other heads let ernie-cpt rebuild every head and the
task embedding (``pretrain --init-from``); see ``ernie_cpt.modeling.saved_model``.

The tokenizer's ``model_max_length`` is the model's positions, and ``README.md`` is the model card
(``ernie_cpt.commands.model_card``). The folder is written under a temporary name and renamed into
place, with the modes the umask gives.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ernie_cpt.claims import claim
from ernie_cpt.commands.model_card import model_card
from ernie_cpt.commands.options import ExportOptions
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError
from ernie_cpt.files import apply_umask, check_output_path
from ernie_cpt.full_disk import RERUN, writing
from ernie_cpt.modeling.saved_model import save_model_folder
from ernie_cpt.staging import staging_dir
from ernie_cpt.training.loading import is_run_dir, load_model


def export(run_dir: str | Path, out_dir: str | Path, options: ExportOptions | None = None) -> Path:
    """Export the latest checkpoint of ``run_dir`` (or the one ``options`` choose) to the new folder
    ``out_dir``, claimed while it is written (:mod:`ernie_cpt.claims`); returns it. Raises UserError for
    a folder that is not a run, a run without such a checkpoint, an ``out_dir`` that is not empty or
    that another command is writing, or a full disk (nothing is left in ``out_dir``'s folder)."""
    options = options or ExportOptions()
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not is_run_dir(run_dir):
        raise UserError(f"{run_dir} is not an ernie-cpt run directory (no encoder_config.json); "
                        f"pass the --output-dir of a pretrain run")
    check_output_path(out_dir, "OUT_DIR", folder=True)
    if options.checkpoint is not None and options.stage is not None:
        raise UserError("give --checkpoint or --stage, not both")
    with claim(out_dir, "OUT_DIR", "export"):
        if out_dir.exists() and any(out_dir.iterdir()):
            raise UserError(f"{out_dir} exists and is not empty; choose a new folder to export to")
        return _export(run_dir, out_dir, options)


def _export(run_dir: Path, out_dir: Path, options: ExportOptions) -> Path:
    saved = load_model(run_dir, options.checkpoint, options.stage)
    tokenizer = load_tokenizer(saved.tokenizer_dir)
    tokenizer.model_max_length = saved.model.config.max_position_embeddings

    staging = None
    try:
        with writing(f"the export {out_dir}", out_dir.parent, advice=f"nothing was written to {out_dir}: {RERUN}"):
            staging = staging_dir(out_dir.parent, out_dir.name)
            info = {k: saved.description[k] for k in ("step", "checkpoint", "stage_end")}
            description = save_model_folder(saved.model, staging, info)
            tokenizer.save_pretrained(str(staging))
            parameters = sum(p.numel() for p in saved.model.parameters())
            card = model_card(run_dir, description, tokenizer, parameters, out_dir, options.license,
                              options.language)
            (staging / "README.md").write_text(card, encoding="utf-8")
            apply_umask(staging)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir
