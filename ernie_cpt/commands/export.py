"""``ernie-cpt export``: a run's encoder and tokenizer as a Hugging Face model folder.

The folder loads with ``AutoModel`` (an ``ErnieModel`` with the task embedding),
``AutoTokenizer`` and ``ErnieForSequenceClassification`` (only the classifier is new).
``ernie_cpt_tasks.json`` records which task id each pre-task used.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from transformers import ErnieConfig, ErnieModel

from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError
from ernie_cpt.staging import staging_dir
from ernie_cpt.training.checkpoint import latest_checkpoint

ENCODER_PREFIX = "encoder."


def export(run_dir: str | Path, out_dir: str | Path) -> Path:
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / "encoder_config.json").exists():
        raise UserError(f"{run_dir} is not an ernie-cpt run directory (no encoder_config.json); "
                        f"pass the --output-dir of a pretrain run")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UserError(f"{out_dir} exists and is not empty; choose a new folder to export to")
    found = latest_checkpoint(run_dir)
    if found is None:
        raise UserError(f"{run_dir} has no readable checkpoint yet; let pretrain save one (see --save-steps)")
    path, (weights, _, trainer_state) = found
    encoder = ErnieModel(ErnieConfig.from_json_file(str(run_dir / "encoder_config.json")))
    encoder_weights = {k.removeprefix(ENCODER_PREFIX): v for k, v in weights.items() if k.startswith(ENCODER_PREFIX)}
    encoder.load_state_dict(encoder_weights, strict=True)
    tokenizer = load_tokenizer(run_dir / "tokenizer")

    staging = staging_dir(out_dir.parent, out_dir.name)
    try:
        encoder.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        tasks = json.loads((run_dir / "tasks.json").read_text(encoding="utf-8"))
        (staging / "ernie_cpt_tasks.json").write_text(
            json.dumps({"task_ids": tasks, "step": trainer_state["step"], "checkpoint": path.name}, indent=2),
            encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
