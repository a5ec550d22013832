"""The runs of ``ernie-cpt compare``, each cached in its folder by a ``result.json`` written last.

* :func:`pretrained_run`: pre-train (or resume), compute the run's continual-learning metrics,
  export, fine-tune on the downstream set and score the linear probes. It serves the variants
  (``<variant>-seed<k>``), the ``mlm`` baseline (knowledge masking alone for the curricula's total
  steps) and the single-task references of forward transfer (``single-<task>-seed<k>``, no export).
* :func:`initial_run`: the ``none`` baseline, the encoder as pre-training would start it (same
  seed, config and tokenizer as the variants' runs; with ``--init-from``, that checkpoint with a
  zero task embedding, so it computes what the checkpoint computes), exported and fine-tuned.
* :func:`tfidf_run`: TF-IDF + logistic regression on the downstream set (no seed).

A finished run is read, not re-run: rescored from its logs when ``--metric`` changed, and an
error when it was made with other options.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from transformers import ErnieConfig, ErnieModel

from ernie_cpt.commands.export import export
from ernie_cpt.commands.finetune import finetune
from ernie_cpt.commands.options import FinetuneOptions
from ernie_cpt.commands.pretrain import pretrain
from ernie_cpt.data.labelled_data import LabelledData
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.errors import UserError
from ernie_cpt.evaluation.bag_of_words import tfidf_baseline
from ernie_cpt.evaluation.forgetting import continual_metrics
from ernie_cpt.evaluation.probes import ProbeSet, probe_scores
from ernie_cpt.evaluation.run_costs import parameter_count, training_tokens_per_s
from ernie_cpt.files import content_digest
from ernie_cpt.full_disk import writing
from ernie_cpt.modeling.encoder import encoder_from_checkpoint
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.options import absent_values, to_dict
from ernie_cpt.training.checkpoint import atomic_write_text, checkpoints
from ernie_cpt.training.run_dir import option_differences
from schedules import ScheduleOptions

log = logging.getLogger(__name__)

RESULT = "result.json"


def finetune_settings(options: FinetuneOptions | None) -> dict[str, Any] | None:
    """The fine-tuning options that change its result (not where it writes or on which device)."""
    if options is None:
        return None
    unused = ("output_json", "output_dir", "overwrite", "device", "num_threads")
    settings = {k: v for k, v in dataclasses.asdict(options).items() if k not in unused}
    return {**settings, **{f"{split}_sha256": content_digest(path) for split, path in
                           (("train", options.train), ("test", options.test)) if path}}


def _read_finished(run_dir: Path, downstream: FinetuneOptions | None) -> dict[str, Any] | None:
    """The result.json of a finished run, checked against the fine-tuning it would get now; None if unfinished."""
    result_file = run_dir / RESULT
    if not result_file.exists():
        return None
    result = json.loads(result_file.read_text(encoding="utf-8"))
    before, now = result.get("downstream_options") or {}, finetune_settings(downstream) or {}
    for digest in ("train_sha256", "test_sha256"):  # a run recorded before the files' contents were is not checked
        if digest not in before:
            now.pop(digest, None)
    if before != now:
        changed = [f"the content of the fine-tuning {key.split('_')[0]} file {now.get(key.split('_')[0])} changed"
                   if key.endswith("_sha256") else
                   f"fine-tuning {key.replace('_', ' ')} {before.get(key)!r} there, {now.get(key)!r} now"
                   for key in sorted(set(before) | set(now)) if before.get(key) != now.get(key)]
        raise UserError(f"{run_dir} was run with other downstream options ({'; '.join(changed)}); run compare with "
                        f"the options it was started with, or use a new --output-dir")
    return result


def _save(run_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    atomic_write_text(run_dir / RESULT, json.dumps(result, indent=2) + "\n")
    return result


def _transfer(result: dict[str, Any], model_dir: Path, downstream: FinetuneOptions | None,
              probes: list[ProbeSet] | None) -> None:
    """Fill the result's downstream score and probe scores (those still missing) from ``model_dir``."""
    if downstream is not None and result.get("downstream") is None:
        result["downstream"] = finetune(model_dir, downstream)
    if probes and not result.get("probes"):
        result["probes"] = probe_scores(model_dir, probes)


def pretrained_run(name: str, kind: str, seed: int, run_dir: Path, make_options: Callable[[bool], dict[type, Any]],
                   metric: str, downstream: FinetuneOptions | None, probes: list[ProbeSet] | None,
                   export_model: bool = True) -> dict[str, Any]:
    """Pre-train ``run_dir`` with ``make_options(resume)`` (resumed from its checkpoint if it has one),
    then metrics, export, fine-tuning and probes; returns (and writes) its result. A finished run is
    read instead, after checking its options."""
    resume = bool(checkpoints(run_dir))
    run_options = make_options(resume)
    result = _read_finished(run_dir, downstream)
    if result is not None:
        previous = json.loads((run_dir / "run_config.json").read_text(encoding="utf-8"))
        changed = option_differences(previous, to_dict(*run_options.values()), absent_values(*run_options.values()))
        if changed:
            raise UserError(f"{run_dir} was run with other options ({'; '.join(changed)}); run compare with the "
                            f"options it was started with, or use a new --output-dir")
        log.info("%s, seed %d: done before, not re-run (%s)", name, seed, run_dir / RESULT)
        rescore = result["metrics"]["metric"] != metric  # another --metric: rescored from the logs
        # --probes added later, or a routed model that an older ernie-cpt did not fine-tune or probe
        missing = export_model and ((bool(probes) and not result.get("probes"))
                                    or (downstream is not None and result.get("downstream") is None))
        if rescore:
            result["metrics"] = continual_metrics(run_dir, metric)
        if missing:
            _transfer(result, run_dir / "export", downstream, probes)
        return _save(run_dir, result) if rescore or missing else result

    log.info("%s, seed %d: %s pre-training in %s", name, seed, "resuming" if resume else "starting", run_dir)
    start = time.perf_counter()
    pretrain(run_options)
    result = {"variant": name, "kind": kind, "seed": seed, "schedule": run_options[ScheduleOptions].schedule,
              "architecture": run_options[ArchitectureOptions].architecture,
              "pretrain_seconds": time.perf_counter() - start, "resumed": resume,
              "parameters": parameter_count(run_dir), "tokens_per_s": training_tokens_per_s(run_dir),
              "metrics": continual_metrics(run_dir, metric), "downstream": None, "probes": None,
              "downstream_options": finetune_settings(downstream)}
    if export_model:
        export_dir = run_dir / "export"
        shutil.rmtree(export_dir, ignore_errors=True)  # a part-written export of an interrupted compare
        export(run_dir, export_dir)
        _transfer(result, export_dir, downstream, probes)
    return _save(run_dir, result)


def _write_initial_encoder(source_run: Path, model: ModelOptions, seed: int, out_dir: Path) -> None:
    """The encoder that pre-training with ``seed`` starts from, and ``source_run``'s tokenizer, saved
    with ``save_pretrained`` to ``out_dir``. The builder makes the encoder first after seeding torch
    (ernie_cpt.modeling.builder), so the same seed and config give the same weights."""
    torch.manual_seed(seed)
    config = ErnieConfig.from_json_file(str(source_run / "encoder_config.json"))
    if model.init_from:
        encoder, _ = encoder_from_checkpoint(model.init_from, config.task_type_vocab_size)
        with torch.no_grad():
            encoder.embeddings.task_type_embeddings.weight.zero_()  # adds nothing: the checkpoint's function
    else:
        encoder = ErnieModel(config)
    staging = None
    try:
        with writing(f"the initial encoder {out_dir}", out_dir.parent):
            staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
            encoder.save_pretrained(str(staging))
            load_tokenizer(source_run / "tokenizer").save_pretrained(str(staging))
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(staging, out_dir)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def initial_run(seed: int, run_dir: Path, source_run: Path, model: ModelOptions, downstream: FinetuneOptions | None,
                probes: list[ProbeSet] | None) -> dict[str, Any]:
    """The ``none`` baseline with ``seed``: no pre-training (see :func:`_write_initial_encoder`)."""
    origin = {"init_from": model.init_from, "encoder_config": None if model.init_from else json.loads(
        (source_run / "encoder_config.json").read_text(encoding="utf-8"))}
    result = _read_finished(run_dir, downstream)
    if result is not None and result.get("origin") != origin:
        raise UserError(f"{run_dir} was made from another model (--init-from or model size); run compare with the "
                        f"options it was started with, or use a new --output-dir")
    if result is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_initial_encoder(source_run, model, seed, run_dir / "export")
        result = {"variant": "none", "kind": "baseline", "seed": seed, "pretrain_seconds": None, "resumed": False,
                  "metrics": None, "downstream": None, "probes": None, "origin": origin,
                  "downstream_options": finetune_settings(downstream)}
    elif not (probes and not result.get("probes")):
        return result
    _transfer(result, run_dir / "export", downstream, probes)
    return _save(run_dir, result)


def tfidf_run(run_dir: Path, data: LabelledData, downstream: FinetuneOptions) -> dict[str, Any]:
    """The ``tfidf`` baseline on the downstream set (deterministic: one run, no seed)."""
    result = _read_finished(run_dir, downstream)
    if result is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        result = _save(run_dir, {"variant": "tfidf", "kind": "baseline", "seed": None, "pretrain_seconds": None,
                                 "resumed": False, "metrics": None, "downstream": tfidf_baseline(data),
                                 "probes": None, "downstream_options": finetune_settings(downstream)})
    return result
