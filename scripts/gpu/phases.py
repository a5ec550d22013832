"""The phases of ``scripts/gpu_check.sh`` before the value experiment, each run by
:mod:`scripts.gpu.check` as ``python -m scripts.gpu.phases PHASE ...`` under its own time limit.

* ``env``: ``nvidia-smi``, the versions of Python, torch (and its CUDA), transformers, datasets and
  the rest, the image's packages against :mod:`scripts.gpu.image`, and the matmul peak: bf16 on CUDA
  (the best of 4096^3 and 8192^3 ``torch.mm``, as benchmark row 2 measures it), fp32 on the CPU.
* ``smoke``: a ``small`` model (``tiny`` with ``--quick``) pre-trained on the bundled sample with all
  seven tasks, ``--task-mixing all``, PCGrad (a gradient-level weighting) and MMoE (a routed
  architecture), under bf16 autocast on CUDA: every logged loss finite, each task's falling (the mean
  of the last fifth of its steps below that of the first fifth), the export, and fill-mask on the
  device. Then the same run again, killed (SIGKILL) 10 steps past its checkpoint and resumed
  (:func:`resume_check`).

The runs go through :func:`cli`, which makes CUDA deterministic where it can
(``CUBLAS_WORKSPACE_CONFIG=:4096:8``, ``torch.use_deterministic_algorithms(True, warn_only=True)``),
as ``TrainingArguments(full_determinism=True)`` does.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TASKS = ["knowledge_masking", "capitalization", "token_document_relation", "sentence_reordering",
         "sentence_distance", "discourse_relation", "ir_relevance"]
DETERMINISTIC = {"CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
FILL_MASK = "It is a truth universally {} that a single man in possession of a good fortune must be in want of a wife."
WINDOW = 10  # steps compared on each side of the checkpoint a resumed run starts from
RESUME_SLACK = 1e-3  # nats: the resumed run's loss differences may exceed the run-to-run ones by this much


def cli(argv: list[str]) -> int:
    """``ernie-cpt ARGV`` with deterministic CUDA kernels where torch has them."""
    import torch

    torch.use_deterministic_algorithms(True, warn_only=True)
    from ernie_cpt.cli import main

    return main(argv)


def _run(argv: list[str], log: Path, **kw: Any) -> subprocess.Popen:
    env = {**os.environ, **DETERMINISTIC, "TQDM_DISABLE": "1", "PYTHONUNBUFFERED": "1"}
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n[{time.strftime('%H:%M:%S')}] $ ernie-cpt {' '.join(argv)}\n")
        out.flush()
        return subprocess.Popen([sys.executable, "-m", "scripts.gpu.phases", "cli", *argv], stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True, **kw)


def _finish(argv: list[str], log: Path) -> None:
    start = time.perf_counter()
    code = _run(argv, log).wait()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"[{time.strftime('%H:%M:%S')}] exit {code} after {time.perf_counter() - start:.1f} s\n")
    if code:
        raise RuntimeError(f"ernie-cpt {argv[0]} exited {code} (see the log)")


def versions() -> dict[str, str]:
    import importlib.metadata

    names = ["torch", "transformers", "datasets", "tokenizers", "accelerate", "huggingface-hub", "safetensors",
             "numpy", "pyarrow", "fsspec", "scikit-learn", "ernie-cpt", "spacy"]
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def environment(device: str) -> dict[str, Any]:
    """What the machine is: GPU, versions, the matmul peak (GFLOP/s), the image against its description."""
    import platform

    import torch

    from benchmarks.efficiency import matmul_flops_per_second
    from scripts.gpu.image import IMAGE_VERSIONS

    smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True) if shutil.which("nvidia-smi") else None
    print(smi.stdout if smi else "nvidia-smi: not found")
    found = versions()
    differs = {name: found.get(name) for name, version in IMAGE_VERSIONS.items() if found.get(name, version) != version}
    info: dict[str, Any] = {"python": platform.python_version(), **found, "cuda": torch.version.cuda,
                            "image_differs": differs}
    if device == "cpu":
        info.update(device_name=platform.processor() or "CPU", matmul_dtype="fp32",
                    matmul_peak_gflops=matmul_flops_per_second(1024, 1024, 1024) / 1e9)
        return info
    props = torch.cuda.get_device_properties(device)
    peak = max(matmul_flops_per_second(n, n, n, device=device, dtype=torch.bfloat16) for n in (4096, 8192))
    info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                matmul_dtype="bf16", matmul_peak_gflops=peak / 1e9, nvidia_smi=smi.stdout.strip()[:4000] if smi else "")
    return info


def pretrain_args(run_dir: Path, device: str, quick: bool, cache: Path, corpus: list[str]) -> list[str]:
    size = (["--model-size", "tiny", "--steps-per-task", "4", "--batch-size", "8", "--max-seq-length", "64"] if quick
            else ["--model-size", "small", "--steps-per-task", "100", "--batch-size", "32", "--max-seq-length", "128"])
    save = "2" if quick else "50"
    return ["pretrain", "--output-dir", str(run_dir), "--overwrite", *(["--corpus", *corpus] if corpus else []),
            "--cache-dir", str(cache), "--device", device,
            "--tasks", *TASKS, "--task-mixing", "all", "--loss-weighting", "pcgrad", "--architecture", "mmoe",
            *size, "--learning-rate", "1e-3" if quick else "3e-4", "--logging-steps", "1", "--eval-steps", save,
            "--save-steps", save, "--report-to", "none", "--seed", "7"]


def task_losses(run_dir: Path) -> dict[int, dict[str, float]]:
    """Step -> each task's loss, from the run's train log (the last record of a step wins)."""
    records = [json.loads(line) for line in (run_dir / "logs" / "train.jsonl").read_text().splitlines() if line]
    return {r["step"]: r.get("losses", {r["task"]: r["loss"]}) for r in records}


def loss_checks(losses: dict[int, dict[str, float]]) -> dict[str, Any]:
    """Per task: finite everywhere, and falling (mean of the last fifth of the steps below the first fifth)."""
    steps = sorted(losses)
    fifth = max(1, len(steps) // 5)
    result = {}
    for task in losses[steps[0]]:
        series = [losses[s][task] for s in steps if task in losses[s]]
        first, last = sum(series[:fifth]) / fifth, sum(series[-fifth:]) / fifth
        result[task] = {"finite": all(math.isfinite(v) for v in series), "first": first, "last": last,
                        "falling": last < first}
    return result


def fill_mask(export: Path, device: str) -> dict[str, Any]:
    """The top 5 of the export's knowledge-masking head for a masked sentence, on ``device``: through
    transformers' fill-mask pipeline for a hard-sharing export (an ErnieForMaskedLM folder), through
    ``ernie_cpt.training.loading.load_model`` for a routed one (ernie-cpt's own folder)."""
    import torch
    from transformers import AutoTokenizer, pipeline

    from ernie_cpt.training.loading import is_saved_model, load_model

    if not is_saved_model(export):
        fill = pipeline("fill-mask", model=str(export), device=device)
        assert fill.tokenizer is not None  # the export carries its tokenizer
        predictions = fill(FILL_MASK.format(fill.tokenizer.mask_token))
        top = [(p["token_str"], p["score"]) for p in predictions]
        where = str(fill.model.device)
    else:
        saved = load_model(export)
        tokenizer = AutoTokenizer.from_pretrained(str(saved.tokenizer_dir))
        batch = tokenizer(FILL_MASK.format(tokenizer.mask_token), return_tensors="pt")
        batch["labels"] = torch.where(batch["input_ids"] == tokenizer.mask_token_id, 0, -100)
        model = saved.model.to(device)
        with torch.no_grad():
            logits = model("knowledge_masking", {k: v.to(device) for k, v in batch.items()}).logits[0]
        scores, ids = logits.float().softmax(-1).topk(5)
        top = [(tokenizer.decode([i]), s) for i, s in zip(ids.tolist(), scores.tolist())]
        where = str(next(model.parameters()).device)
    return {"model_device": where, "top5": [(token, round(score, 4)) for token, score in top],
            "scores_finite": all(math.isfinite(score) for _, score in top)}


def _steps_logged(run_dir: Path) -> int:
    path = run_dir / "logs" / "train.jsonl"
    return path.read_text().count("\n") if path.exists() else 0


def resume_check(argv: list[str], reference: dict[int, dict[str, float]], run_dir: Path, save: int, steps: int,
                 log: Path) -> dict[str, Any]:
    """Run ``argv`` into ``run_dir``, SIGKILL it halfway between its checkpoint at ``save`` and its end,
    resume it, and compare its losses with the uninterrupted run's (``reference``): the largest
    difference over the ``WINDOW`` steps after the checkpoint must stay within twice that over the
    ``WINDOW`` steps before it (two independent runs, the spread of the kernels) plus RESUME_SLACK."""
    kill_after = save + (steps - save) // 2
    process = _run(argv, log)
    while process.poll() is None and _steps_logged(run_dir) < kill_after:
        time.sleep(0.02)
    killed_at = _steps_logged(run_dir)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    _finish([a for a in argv if a != "--overwrite"] + ["--resume"], log)
    resumed = task_losses(run_dir)

    def largest(window: range) -> float:
        return max(abs(resumed[s][t] - reference[s][t]) for s in window for t in reference[s])

    before = largest(range(max(1, save - WINDOW + 1), save + 1))
    after = largest(range(save + 1, min(steps, save + WINDOW) + 1))
    tolerance = 2 * before + RESUME_SLACK
    return {"killed_after_step": killed_at, "resumed_from_step": save, "max_diff_before": before,
            "max_diff_after": after, "tolerance": tolerance, "within": after <= tolerance,
            "bit_exact": all(resumed[s] == reference[s] for s in reference),
            "max_diff_whole_run": largest(range(1, steps + 1))}


def _save(result: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")


def smoke(device: str, quick: bool, cache: Path, work: Path, log: Path, corpus: list[str],
          out: Path) -> dict[str, Any]:
    """The smoke test (see the module's docstring), its result saved to ``out`` after each part (a
    part that overruns the phase's time leaves the earlier ones); "ok" says whether it passed."""
    argv = pretrain_args(work / "smoke", device, quick, cache, corpus)
    steps, save = (4, 2) if quick else (100, 50)
    start = time.perf_counter()
    _finish(argv, log)
    result: dict[str, Any] = {"command": "ernie-cpt " + " ".join(argv), "train_seconds": time.perf_counter() - start}
    losses = task_losses(work / "smoke")
    records = [json.loads(line) for line in (work / "smoke" / "logs" / "train.jsonl").read_text().splitlines()]
    result.update(steps=len(losses), tasks=loss_checks(losses),
                  skipped_steps=sum(bool(r.get("skipped")) for r in records),
                  tokens_per_s=sorted(r["tokens_per_s"] for r in records[1:])[len(records[1:]) // 2],
                  max_memory_allocated_mib=max((r.get("max_memory_allocated_mib", 0) for r in records), default=0))
    _save(result, out)
    shutil.rmtree(work / "smoke-export", ignore_errors=True)  # a run before this one on the same machine
    _finish(["export", str(work / "smoke"), str(work / "smoke-export")], log)
    result["fill_mask"] = fill_mask(work / "smoke-export", device)
    _save(result, out)
    resume_dir = work / "resume"
    result["resume"] = resume_check([*argv[:2], str(resume_dir), *argv[3:]], losses, resume_dir, save, steps, log)
    finite = all(t["finite"] for t in result["tasks"].values()) and not result["skipped_steps"]
    falling = all(t["falling"] for t in result["tasks"].values())
    result["ok"] = bool(finite and (falling or quick) and result["fill_mask"]["scores_finite"]
                        and result["fill_mask"]["model_device"].startswith(device.split(":")[0])
                        and result["resume"]["within"] and len(losses) == steps)
    return result


def main(argv: list[str] | None = None) -> int:
    from ernie_cpt import threads

    threads.configure_process()  # before torch loads, as the console script does (OpenMP under contention)
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "cli":
        return cli(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m scripts.gpu.phases")
    parser.add_argument("phase", choices=("env", "smoke"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--cache", type=Path, required=True, help="the unpacked annotation cache")
    parser.add_argument("--work", type=Path, required=True, help="where the runs go")
    parser.add_argument("--corpus", nargs="+", default=[], help="smoke: the corpus (default: the bundled sample)")
    parser.add_argument("--result", type=Path, required=True, help="the phase's JSON result")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / f"{args.phase}.log"
    result = (environment(args.device) if args.phase == "env"
              else smoke(args.device, args.quick, args.cache, args.work, log, args.corpus, args.result))
    _save(result, args.result)
    return 0 if result.get("ok", True) else 1


if __name__ == "__main__":
    sys.exit(main())
