"""The one entry point of the suite: ``python -m benchmarks.run [--quick] [--json PATH]``.

Measures (each a ratio to a baseline run beside it in the same run; the modules say how):

1. training throughput against the Hugging Face ``run_mlm`` recipe (:mod:`benchmarks.throughput`);
2. hardware efficiency, model FLOP/s over matmul FLOP/s (:mod:`benchmarks.efficiency`);
3. multi-task overhead (:mod:`benchmarks.multitask`);
4. annotation throughput and the cache hit (:mod:`benchmarks.annotation`), the fast annotator against
   the full one (:mod:`benchmarks.annotators`);
5. generation headroom per task (:mod:`benchmarks.generation`);
6. peak memory of training (:mod:`benchmarks.memory`), and of prepare and training as the corpus
   grows 4 and 16 times, on distinct documents, with prepare's words/s (:mod:`benchmarks.scale`);
7. training under CPU contention with the default settings (:mod:`benchmarks.contention`);
8. start-up of the command line (:mod:`benchmarks.startup`);
9. what each gradient-level loss weighting costs (:mod:`benchmarks.weighting`);
10. annotation scale-out over torchrun ranks (:mod:`benchmarks.scaleout`);
11. what dropout costs in training throughput (:mod:`benchmarks.dropout`).

``--device cuda`` runs only the training rows (1, 2, 3 and 11) on the GPU, with bf16 autocast, the
``sdpa`` attention and the ``base`` model size at batch 64 x 128, beside the same Trainer baselines
(bf16 too); row 2 is then the model FLOP utilisation against the GPU's bf16 matmul peak, measured
in the same run, and row 1 notes each side's peak GPU memory. Without a usable GPU it stops with a
one-line error. ``--training-rows`` runs the same rows on the CPU; ``--model-size`` and
``--batch-size`` change the sizes (``scripts/gpu_check.sh``'s dry run: tiny at batch 8), and
``--cache-dir DIR`` reads the annotations from DIR instead of a new temporary cache (with the
training rows only: the annotation rows measure cache misses), which lets a machine without spaCy
run them on annotations made elsewhere.

``--quick`` uses the bundled sample and short runs (about 6 minutes on 2 cores); the full run
uses the Austen novels of ``../shared/corpora/austen`` (the bundled sample, with a note, when
they are absent) and longer runs (21-35 minutes on 2 cores, 5-10 of them in row 10). Everything
is written to a temporary cache, so every annotation is a cache miss unless a measure says otherwise.
"""
# ruff: noqa: E402  (the OpenMP settings must be made before torch is imported)

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"

from ernie_cpt import threads

threads.configure_process()  # before torch loads: the product's defaults are what is measured

import datasets
import torch

# The training rows' modules; the CPU rows' load when they run (benchmarks.annotation imports spaCy, which a
# GPU machine given annotations made elsewhere need not have: python -m benchmarks.run --device cuda --cache-dir).
from benchmarks import dropout, efficiency, multitask, startup, throughput
from benchmarks.common import AUSTEN, Row, Settings, Workload
from ernie_cpt.data.corpus import bundled_corpus
from ernie_cpt.errors import UserError
from ernie_cpt.files import check_output_path
from ernie_cpt.training.checkpoint import atomic_write_text


def have_accelerate() -> bool:
    """``transformers.Trainer`` (the baselines) needs accelerate; the bench extra installs it."""
    return importlib.util.find_spec("accelerate") is not None


def machine() -> dict[str, str | int]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count() or 0, "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def table(rows: list[Row]) -> str:
    """The rows as a Markdown table, then one line of notes per row that has one."""
    lines = ["| measure | ours | baseline | ratio | target | met? |", "|---|---:|---:|---:|---:|:---:|"]
    for row in rows:
        target = "-" if row.target is None else f"{'≥' if row.higher_is_better else '≤'} {row.target:g}x"
        met = {None: "-", True: "yes", False: "**no**"}[row.met]
        lines.append(f"| {row.measure} | {_number(row.ours)} {row.unit} | {_number(row.baseline)} {row.unit} | "
                     f"{row.ratio:.2f}x | {target} | {met} |")
    notes = [f"- {row.measure.split(' ', 1)[0]} {row.note}" for row in rows if row.note]
    return "\n".join([*lines, "", *notes])


def row_order(row: Row) -> tuple[int, str]:
    """Rows by their number, then their letter: 1a, 1b, 2, ..., 9, 10."""
    label = row.measure.split(" ", 1)[0]
    digits = len(label) - len(label.lstrip("0123456789"))
    return int(label[:digits] or 0), label[digits:]


def check_device(device: str) -> str | None:
    """Why the suite cannot run on ``device`` (None when it can): a GPU must be there and usable."""
    if device == "cpu":
        return None
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        return (f"--device {device}: CUDA is not available here (torch {torch.__version__}, {build}, "
                f"{torch.cuda.device_count()} GPUs); run on a machine with a GPU, or without --device")
    if not torch.cuda.is_bf16_supported():
        return f"--device {device}: {torch.cuda.get_device_name(0)} has no bf16 support, which the GPU rows use"
    return None


def training_rows(workload: Workload) -> list[Row]:
    """The training rows (those ``--device cuda`` runs): throughput against the Trainer baselines,
    MFU, multi-task, dropout."""
    throughput_rows, km_log = throughput.measure(workload)
    return [*throughput_rows, efficiency.measure(workload, km_log), multitask.measure(workload)[0],
            dropout.measure(workload)]


def run(settings: Settings, training_only: bool = False, cache: str | None = None) -> tuple[list[Row], str]:
    """Every measure, in an order that lets later ones reuse the annotations of the first; only the
    training rows on a GPU or with ``training_only``, then with the annotations of ``cache`` if given."""
    corpus, name, remark = bundled_corpus(), "bundled sample", ""
    if not settings.quick:
        if AUSTEN.is_dir():
            corpus, name = AUSTEN, "Austen (6 novels)"
        else:
            remark = f"{AUSTEN} is absent: the full run used the bundled sample"
    with tempfile.TemporaryDirectory(prefix="bench-cache-") as cache_dir:
        cache_dir = cache or cache_dir
        os.environ["ERNIE_CPT_CACHE"] = cache_dir
        if settings.device != "cpu" or training_only:
            return sorted(training_rows(Workload.load(name, corpus, cache_dir, settings)), key=row_order), remark
        from benchmarks import annotation, annotators, contention, generation, memory, scale, scaleout, weighting

        first = memory.prepare(corpus, cache_dir)[1]
        rows = annotation.measure(name, corpus, cache_dir, first)
        rows.append(annotators.measure(name, corpus, settings))
        workload = Workload.load(name, corpus, cache_dir, settings)
        rows += memory.measure(workload, corpus)
        throughput_rows, km_log = throughput.measure(workload)
        rows += throughput_rows
        rows.append(efficiency.measure(workload, km_log))
        overhead, joint_log = multitask.measure(workload)
        rows.append(overhead)
        rows += generation.measure(workload, joint_log)
        rows += weighting.measure(workload)
        rows.append(dropout.measure(workload))
        rows += contention.measure(workload, corpus)
        rows.append(scaleout.measure(name, corpus, settings))
        rows += scale.measure(settings)
    rows += startup.measure()
    return sorted(rows, key=row_order), remark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="bundled sample and short runs (about 6 minutes)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    parser.add_argument("--device", default="cpu", help="cpu (default), or cuda / cuda:N: the training rows only, "
                        "on the GPU with bf16 autocast and the base model at batch 64 x 128")
    parser.add_argument("--training-rows", action="store_true", help="only the training rows (1, 2, 3, 11), as "
                        "--device cuda runs them")
    parser.add_argument("--model-size", help="model size of the training rows (default: mini; base on CUDA)")
    parser.add_argument("--batch-size", type=int, help="batch size of the training rows (default: 32; 64 on CUDA)")
    parser.add_argument("--cache-dir", metavar="DIR", help="read the annotations from DIR (with the training rows "
                        "only); a corpus annotated there needs no spaCy")
    args = parser.parse_args(argv)
    training_only = args.training_rows or args.device != "cpu"
    if args.cache_dir and not training_only:
        print("python -m benchmarks.run: error: --cache-dir applies to the training rows only (the annotation "
              "rows measure cache misses); add --training-rows or --device cuda", file=sys.stderr)
        return 2
    if args.json:  # before the 6 to 60 minutes of measuring, not after
        try:
            check_output_path(args.json, "--json")
        except UserError as e:
            print(f"python -m benchmarks.run: error: {e}", file=sys.stderr)
            return 2
    if not have_accelerate():
        print("The Trainer baselines need accelerate: pip install -e '.[bench]' (make bench does)", file=sys.stderr)
        return 2
    if problem := check_device(args.device):
        print(f"python -m benchmarks.run: error: {problem}", file=sys.stderr)
        return 2
    datasets.disable_progress_bars()
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    settings = Settings.for_device(args.quick, args.device)
    settings = dataclasses.replace(settings, model_size=args.model_size or settings.model_size,
                                   batch_size=args.batch_size or settings.batch_size)
    rows, remark = run(settings, training_only, args.cache_dir)
    command = " ".join(["python -m benchmarks.run", *(["--quick"] if args.quick else []),
                        *(["--device", args.device] if args.device != "cpu" else []),
                        *(["--training-rows"] if args.training_rows else []),
                        *(["--model-size", args.model_size] if args.model_size else []),
                        *(["--batch-size", str(args.batch_size)] if args.batch_size else [])])
    header = {"date": datetime.date.today().isoformat(), "mode": "quick" if args.quick else "full",
              "command": command, **machine(), "device": args.device, "model_size": settings.model_size,
              "batch": f"{settings.batch_size} x {settings.seq_length}",
              **({"gpu": torch.cuda.get_device_name(args.device)} if args.device != "cpu" else {}),
              "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
              "minutes": round((time.perf_counter() - start) / 60, 1), **({"remark": remark} if remark else {})}
    print(f"ernie-cpt benchmarks, {header['mode']} run, {header['date']}: {header['cpu']}, {header['cores']} cores, "
          f"{'GPU ' + header['gpu'] + ', ' if 'gpu' in header else ''}"
          f"torch {header['torch']}; load average {header['load_average_1min'][0]} at the start, "
          f"{header['load_average_1min'][1]} at the end; {header['minutes']} minutes\n")
    print(table(rows))
    if remark:
        print(f"\nNote: {remark}")
    if args.json:
        results = [{**dataclasses.asdict(row), "ratio": row.ratio, "met": row.met} for row in rows]
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(Path(args.json), json.dumps({**header, "rows": results}, indent=2) + "\n",
                              advice="the results are in the table above: free space to measure again")
        except UserError as e:  # a full disk
            print(f"python -m benchmarks.run: error: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
