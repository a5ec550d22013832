"""What a run's numbers depend on besides its options, recorded when it starts and compared on ``--resume``.

``run_config.json`` holds the options, and, under ``environment``:

* ``world_size`` (and ``processes_per_machine``): dropout masks are drawn per process, and the
  processes sum their gradients in another order than one process does;
* ``device_type`` (cpu, cuda) and ``autocast`` (the dtype ``--amp`` gives there: bfloat16 on a GPU
  that supports it, else float32);
* ``versions`` of the libraries that compute the numbers (torch, transformers, tokenizers, datasets,
  numpy) and of the spaCy library and pipeline that annotate the corpus;
* ``hardware``: the CPU's kernel set (AVX2, AVX-512) or the GPU's name, which change the last bits
  only: a change is logged, not refused, as no flag can bring the old machine back.

The corpus content is recorded as ``corpus.fingerprint`` (a hash of every document), and
:func:`check_corpus` compares it once the corpus is read. A change of any other of these refuses the
resume, naming what restores it; a changed number of processes is accepted with
``--allow-changed-world-size`` (logged, and listed in ``world_size_changes``), the losses then
differing from an uninterrupted run. A run recorded before a field existed is not checked for it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import torch

from ernie_cpt import distributed
from ernie_cpt.data.corpus import corpus_chars, corpus_fingerprint, corpus_words
from ernie_cpt.data.spacy_pipeline import pipeline_version, resolve_pipeline_name, spacy_version
from ernie_cpt.errors import UserError
from ernie_cpt.messages import plural

log = logging.getLogger(__name__)

LIBRARIES = ("torch", "transformers", "tokenizers", "datasets", "numpy")


def autocast_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The dtype of ``--amp``'s autocast on ``device``: bfloat16 on a GPU that supports it, else None (float32)."""
    return torch.bfloat16 if amp and device.type == "cuda" and torch.cuda.is_bf16_supported() else None


def _hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} {torch.backends.cpu.get_cpu_capability()}"


def environment(device: torch.device, amp: bool, spacy_model: str | None = None,
                annotates: bool = True) -> dict[str, Any]:
    """This process's environment, as run_config.json records it (every rank computes the same); the
    spaCy library and pipeline (``spacy_model``, or the default) only for a run that ``annotates``."""
    versions = {name: importlib.metadata.version(name) for name in LIBRARIES}
    if annotates:
        try:
            versions["spacy"] = spacy_version()
            pipeline = resolve_pipeline_name(spacy_model)
        except (UserError, importlib.metadata.PackageNotFoundError):
            pass  # not installed: the annotation says so, or finds annotations made where it is (their record)
        else:
            versions[os.path.basename(os.path.normpath(pipeline))] = pipeline_version(pipeline)
    return {"world_size": distributed.world_size(), "processes_per_machine": distributed.local_world_size(),
            "device_type": device.type, "autocast": str(autocast_dtype(device, amp) or torch.float32).split(".")[-1],
            "versions": versions, "hardware": _hardware(device)}


def _launch(world_size: int, per_machine: int | None) -> str:
    """How to start ``world_size`` processes, as a user would type it."""
    if world_size == 1:
        return "one process, without torchrun"
    if per_machine and per_machine != world_size:
        return f"torchrun --nnodes {world_size // per_machine} --nproc_per_node {per_machine}"
    return f"torchrun --nproc_per_node {world_size}"


def _install(versions: dict[str, str]) -> str:
    return "pip install " + " ".join(f"{name.replace('_', '-')}=={version}" for name, version in versions.items())


def check_environment(run_dir: Path, before: dict[str, Any] | None, now: dict[str, Any],
                      allow_changed_world_size: bool) -> dict[str, Any] | None:
    """On --resume: refuse (UserError) an environment that changes the numbers of the run in ``run_dir``
    (``before``, None for a run recorded before environments were), naming what restores it; warn
    about other hardware. Returns the environment to record when the resume changes the world size
    (allowed), else None."""
    if not before:
        return None
    fresh = f"or start a new run from its weights with --init-from {run_dir} and another --output-dir"
    if before.get("device_type", now["device_type"]) != now["device_type"]:
        gpu = " on a machine with a GPU" if before["device_type"] == "cuda" else ""
        raise UserError(f"--resume: the run in {run_dir} was trained on {before['device_type']}, this is "
                        f"{now['device_type']}; the device changes the numbers: resume with --device "
                        f"{before['device_type']}{gpu}, {fresh}")
    if before.get("autocast", now["autocast"]) != now["autocast"]:
        raise UserError(f"--resume: the run in {run_dir} computed in {before['autocast']} autocast (--amp), this "
                        f"device in {now['autocast']}; the dtype changes the numbers: resume on a device that "
                        f"computes in {before['autocast']} ({before.get('hardware', 'the one it started on')}), "
                        f"{fresh}")
    changed = {name: version for name, version in before.get("versions", {}).items()
               if now["versions"].get(name) != version}
    if changed:
        listed = ", ".join(f"{name} {version} (now {now['versions'].get(name, 'absent')})"
                           for name, version in changed.items())
        raise UserError(f"--resume: the run in {run_dir} was trained with {listed}; other versions change the "
                        f"numbers: reinstall those ({_install(changed)}), {fresh}")
    if before.get("hardware", now["hardware"]) != now["hardware"]:
        log.warning("--resume: the run in %s was trained on %s, this is %s; the last digits of the losses may "
                    "differ from an uninterrupted run", run_dir, before["hardware"], now["hardware"])
    size = before.get("world_size", now["world_size"])
    if size == now["world_size"]:
        return None
    processes = plural(size, "process", "processes")
    if not allow_changed_world_size:
        raise UserError(f"--resume: the run in {run_dir} was trained by {processes} "
                        f"({_launch(size, before.get('processes_per_machine'))}); resume with the same number of "
                        f"processes, or pass --allow-changed-world-size to continue with {now['world_size']} (the "
                        f"losses will then differ from an uninterrupted run)")
    log.warning("--allow-changed-world-size: the run in %s was trained by %s and continues with %d; from here on "
                "its losses differ from an uninterrupted run (dropout masks are drawn per process)", run_dir,
                processes, now["world_size"])
    return {**before, "world_size": now["world_size"], "processes_per_machine": now["processes_per_machine"]}


def check_corpus(run_dir: Path, recorded: dict[str, Any] | None, corpus: datasets.Dataset) -> None:
    """On --resume: refuse a corpus whose content differs from the one the run in ``run_dir`` recorded
    (``recorded``: run_config.json's ``corpus``; None or without a fingerprint: not checked)."""
    if not recorded or "fingerprint" not in recorded or corpus_fingerprint(corpus) == recorded["fingerprint"]:
        return
    there = f"{plural(recorded['documents'], 'document')}, {plural(recorded['words'], 'word')}"
    now = f"{plural(len(corpus), 'document')}, {plural(corpus_words(corpus), 'word')}"
    same = (" (a text changed: the same number of documents and characters)"
            if (recorded["documents"], recorded.get("characters")) == (len(corpus), corpus_chars(corpus)) else "")
    raise UserError(f"--resume: the corpus is not the one the run in {run_dir} was trained on ({there} there, {now} "
                    f"now{same}); resume with the corpus it was trained on, or start a new run on this one from its "
                    f"weights with --init-from {run_dir} and another --output-dir")


def held_out_fingerprint(held_out: datasets.Dataset) -> str:
    """A hash of the ids of the held-out documents, in their order (read in batches)."""
    digest = hashlib.sha256()
    for batch in held_out.select_columns(["doc_id"]).iter(batch_size=10_000):
        for doc_id in batch["doc_id"]:
            digest.update(doc_id.encode("utf-8") + b"\x1f")
    return digest.hexdigest()


def check_split(run_dir: Path, recorded: dict[str, Any] | None, held_out: datasets.Dataset) -> None:
    """On --resume: refuse a held-out split other than the one the run in ``run_dir`` recorded (run_config.json's
    ``corpus``; a run recorded before ``held_out_fingerprint`` existed is not checked). The corpus is the same
    by then (:func:`check_corpus`), so only the way ernie-cpt splits it can have changed."""
    if not recorded or "held_out_fingerprint" not in recorded:
        return
    if held_out_fingerprint(held_out) == recorded["held_out_fingerprint"]:
        return
    raise UserError(f"--resume: the held-out documents differ from those of the run in {run_dir} "
                    f"({recorded['held_out_documents']} there, {len(held_out)} now: this version of ernie-cpt splits "
                    f"the corpus otherwise), so its evaluations would not continue the run's; finish it with the "
                    f"ernie-cpt it was started with, or start a new run from its weights with --init-from {run_dir} "
                    f"and another --output-dir")
