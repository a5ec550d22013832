"""The value experiment: does continued pre-training of a real checkpoint with ERNIE 2.0's tasks
transfer better than masked LM alone, or than no continued pre-training at all?

``ernie-cpt compare`` from all-MiniLM-L6-v2 (``--init-from``, the bf16 copy of ``make gpu-wheels``)
on the six Austen novels: ``joint`` and ``sequential`` over :data:`TASKS`, the ``mlm`` baseline
(knowledge masking alone for as many steps), ``none`` (MiniLM fine-tuned as it is) and ``tfidf``,
3 seeds, each encoder fine-tuned on the fortunes topics (3 learning rates chosen on a validation
split, 2 epochs). The report is compare's: means with 95 % intervals over seeds, paired by seed,
and its answer sentence, whatever it says. No single-task references (``--no-forward-transfer``):
forward transfer is not the question, and they would cost a quarter of the pre-training.

**Sizing.** The only free number is the steps per task S; the rest is fixed by the question. Every
arm pre-trains 4 S steps (joint and sequential: S per task; mlm: 4 S of knowledge masking), so the
experiment is 3 seeds x 3 arms x 4 S = 36 S steps, besides 9 pre-training runs' start-up, evaluation
and export, 12 fine-tunings (3 learning rates x 2 epochs each) and compare's own start. ``run``
measures these on the machine first (:func:`calibrate`) and sizes S to the time left (:func:`size`).

The estimate before any GPU run, for one H100. On Austen, MiniLM's tokenizer makes examples of 106
(knowledge masking, capitalization), 82 (sentence reordering) and 75 (token-document relation)
tokens on average (``ernie-cpt inspect-task``). A step of 128 examples of about 100 tokens is 1.0
TFLOP: 77 MFLOP a token (:func:`benchmarks.efficiency.training_flops` at 110 tokens: 6 x 10.6 M
weights, attention, the masked-LM head at 15 % of the tokens). Measured on this project's 2-core CPU
(load average 10), MiniLM trained at 194 tokens/s, 15 GFLOP/s, 8 % of the fp32 matmul peak measured
beside it. At an assumed 10 % of the H100's 798 TFLOP/s bf16 peak (KINDS.md; a 384-wide model runs
far below it: its matrices are small, launches and memory-bound layers dominate), 80 TFLOP/s is
5,300 times that CPU: about 1 M tokens/s, 12.5 ms a step, if making the examples keeps up (3 loader
workers per task; one core of this CPU makes about 2,000 knowledge-masking examples a second, row 5d
of the benchmarks, so 3 workers give a batch of 128 every 21 ms: the mlm arm may wait for its data,
which is why the calibration times knowledge masking alone). With 5 s of overhead per pre-training
run, 1.5 s per fine-tuning epoch and learning rate, and 20 s for compare's start, TF-IDF and the
report, about 280 s for the experiment leave 107 s for 36 S steps: S = 240 at 12.5 ms a step, 140
at 21 ms (36 x 140 x 128 = 645,000 examples, about 64 M tokens).

If compare overruns, ``finish`` writes the report from the seeds that finished (compare again with
``--seeds K``: every finished run is read back, nothing is trained). ``--quick`` (the CPU dry run):
the first 3 chapters of the bundled sample, S = 2, 2 seeds, batches of 4, one learning rate, one epoch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TASKS = ["knowledge_masking", "capitalization", "token_document_relation", "sentence_reordering"]
ARMS = ("joint", "sequential", "mlm", "none")
PRETRAINED_ARMS = 3  # joint, sequential, mlm
COMPARE_START = 20.0  # seconds: compare's own start, the TF-IDF baseline and the report (assumed)
MIN_STEPS, MAX_STEPS = 20, 5000


@dataclass
class Plan:
    """What compare runs; ``estimate`` says where each second is expected to go."""

    steps_per_task: int
    seeds: int = 3
    batch_size: int = 128
    seq_length: int = 128
    learning_rate: float = 1e-4
    downstream_learning_rates: tuple[float, ...] = (3e-5, 1e-4, 3e-4)
    downstream_epochs: int = 2
    workers: int = 3
    num_proc: int = 8
    estimate: dict[str, float] = field(default_factory=dict)


@dataclass
class Calibration:
    """Seconds measured on the machine: a pre-training step, a run's overhead once its examples are
    cached, and one fine-tuning epoch at one learning rate (start included)."""

    step: float
    run_overhead: float
    finetune_epoch: float
    first_build: float


def size(seconds: float, calibration: Calibration, plan: Plan) -> Plan:
    """``plan`` with the steps per task that fill ``seconds`` (between MIN_STEPS and MAX_STEPS)."""
    runs, finetunes = plan.seeds * PRETRAINED_ARMS, plan.seeds * len(ARMS)
    fixed = {"compare start, TF-IDF, report": COMPARE_START,
             "pre-training runs' overhead": runs * calibration.run_overhead,
             "fine-tuning": finetunes * calibration.finetune_epoch * len(plan.downstream_learning_rates)
             * plan.downstream_epochs}
    per_step = runs * len(TASKS) * calibration.step
    steps = int(min(MAX_STEPS, max(MIN_STEPS, (seconds - sum(fixed.values())) / per_step)))
    estimate = {**fixed, "pre-training steps": steps * per_step, "available": seconds}
    return Plan(**{**asdict(plan), "steps_per_task": steps, "estimate": estimate})


@dataclass
class Paths:
    corpus: list[str]
    cache: Path
    minilm: Path
    downstream: Path  # train.jsonl and test.jsonl
    work: Path


def model_args(plan: Plan, paths: Paths, device: str, tasks: list[str] = TASKS) -> list[str]:
    """The options every pre-training of the experiment shares (compare passes them to each run)."""
    return ["--corpus", *paths.corpus, "--cache-dir", str(paths.cache), "--init-from", str(paths.minilm),
            "--tasks", *tasks, "--batch-size", str(plan.batch_size), "--max-seq-length", str(plan.seq_length),
            "--learning-rate", str(plan.learning_rate), "--eval-steps", "0", "--eval-max-examples", "512",
            "--save-steps", "100000", "--report-to", "none", "--device", device, "--dataloader-workers",
            str(plan.workers), "--num-proc", str(plan.num_proc), "--seed", "42"]


def compare_args(plan: Plan, paths: Paths, device: str) -> list[str]:
    return ["compare", "--output-dir", str(paths.work / "compare"), *model_args(plan, paths, device),
            "--schedules", "joint,sequential", "--steps-per-task", str(plan.steps_per_task), "--seeds",
            str(plan.seeds), "--no-forward-transfer", "--downstream-train", str(paths.downstream / "train.jsonl"),
            "--downstream-test", str(paths.downstream / "test.jsonl"), "--downstream-epochs",
            str(plan.downstream_epochs), "--downstream-learning-rate", *map(str, plan.downstream_learning_rates),
            "--downstream-batch-size", "32"]


RESERVE = 30.0  # seconds kept after compare for `finish` (a report from the finished seeds) and the outputs
CALIBRATION_STEPS = 10  # x 4 steps of knowledge masking, timed step by step


def quick_plan() -> Plan:
    return Plan(steps_per_task=2, seeds=2, batch_size=4, seq_length=48, downstream_learning_rates=(1e-4,),
                downstream_epochs=1, workers=0, num_proc=1)


def _cli(argv: list[str]) -> float:
    """Seconds ``ernie-cpt ARGV`` took in this process; RuntimeError when it fails."""
    from ernie_cpt.cli import main

    start = time.perf_counter()
    if main(argv):
        raise RuntimeError(f"ernie-cpt {argv[0]} failed (see the log above)")
    return time.perf_counter() - start


class LineTimes(threading.Thread):
    """When each line of a growing file appeared (polled every 5 ms)."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.done = path, threading.Event()
        self.times: list[float] = []

    def run(self) -> None:
        while not self.done.wait(0.005):
            lines = self.path.read_text().count("\n") if self.path.exists() else 0
            self.times += [time.perf_counter()] * (lines - len(self.times))


def calibrate(plan: Plan, paths: Paths, device: str) -> tuple[Calibration, Path]:
    """Time a run of 2 steps per task (it builds and caches every task's examples), a run of
    knowledge masking alone timed step by step (the slowest step of the experiment: the largest
    head and the most costly examples to make, so the plan errs on the short side), its export and
    one fine-tuning epoch of it; returns the times and the export."""
    base = ["pretrain", "--schedule", "joint", "--overwrite"]
    steps = 2 if plan.steps_per_task <= 2 else CALIBRATION_STEPS
    first = _cli([*base, *model_args(plan, paths, device), "--output-dir", str(paths.work / "calibrate-1"),
                  "--steps-per-task", "2"])
    timed = paths.work / "calibrate-2"
    shutil.rmtree(timed, ignore_errors=True)  # a log of an earlier check would count as this run's lines
    watcher = LineTimes(timed / "logs" / "train.jsonl")
    watcher.start()
    second = _cli([*base, *model_args(plan, paths, device, TASKS[:1]), "--output-dir", str(timed),
                   "--steps-per-task", str(4 * steps), "--logging-steps", "1"])
    watcher.done.set()
    watcher.join()
    times = watcher.times[1:]  # the first step warms up
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    step = span / (len(times) - 1) if span > 0 else second / (4 * steps)  # an upper bound, start-up included
    export = paths.work / "calibrate-export"
    shutil.rmtree(export, ignore_errors=True)
    exported = _cli(["export", str(timed), str(export)])
    epoch = _cli(["finetune", str(export), "--train", str(paths.downstream / "train.jsonl"), "--test",
                  str(paths.downstream / "test.jsonl"), "--epochs", "1", "--learning-rate", "1e-4", "--batch-size",
                  "32", "--max-seq-length", str(plan.seq_length), "--device", device])
    return Calibration(step, second - 4 * steps * step + exported, epoch, first), export


def _save(work: Path, name: str, data: dict) -> None:
    (work / name).write_text(json.dumps(data, indent=1, default=str) + "\n")


def run(paths: Paths, device: str, deadline: float, quick: bool) -> dict:
    """Calibrate, size and run compare (``work/compare``), leaving RESERVE seconds before ``deadline``
    (a ``time.time()``); what happened goes to ``work/value-run.json`` as it happens."""
    from scripts.gpu.phases import fill_mask

    plan = quick_plan() if quick else Plan(steps_per_task=MIN_STEPS)
    shutil.rmtree(paths.work / "compare", ignore_errors=True)  # an earlier check's runs, maybe of another size
    (paths.work / "value-run.json").unlink(missing_ok=True)
    calibration, export = calibrate(plan, paths, device)
    result: dict[str, Any] = {"calibration": asdict(calibration), "fill_mask_pipeline": fill_mask(export, device)}
    sized = size(deadline - time.time() - RESERVE, calibration, plan)
    plan = Plan(**{**asdict(sized), "steps_per_task": plan.steps_per_task}) if quick else sized
    result.update(plan=asdict(plan), command="ernie-cpt " + " ".join(compare_args(plan, paths, device)))
    _save(paths.work, "value-run.json", result)
    result["compare_seconds"] = _cli(compare_args(plan, paths, device))
    _save(paths.work, "value-run.json", result)
    return result


def finished_seeds(runs: Path, plan: Plan) -> int:
    """How many seeds, from the first, have every arm done (a result.json each)."""
    done = 0
    for seed in range(42, 42 + plan.seeds):
        if not all((runs / f"{arm}-seed{seed}" / "result.json").is_file() for arm in ARMS):
            break
        done += 1
    return done


def finish(paths: Paths, device: str, out: Path) -> dict:
    """Compare's report into ``out`` (value-report.md, value-summary.json, value-evidence.png): the
    full one, or else one written from the seeds that finished; returns what ``run`` recorded with
    the seeds reported and the report's answer."""
    run_file = paths.work / "value-run.json"
    result = json.loads(run_file.read_text()) if run_file.is_file() else {}
    if "plan" not in result:
        return {**result, "seeds_reported": 0}
    plan = Plan(**{**result["plan"], "downstream_learning_rates": tuple(result["plan"]["downstream_learning_rates"])})
    seeds = plan.seeds if "compare_seconds" in result else finished_seeds(paths.work / "compare" / "runs", plan)
    if seeds and "compare_seconds" not in result:
        _cli(compare_args(Plan(**{**asdict(plan), "seeds": seeds}), paths, device))  # reads the finished runs
    report = paths.work / "compare" / "report"
    for name, target in (("report.md", "value-report.md"), ("summary.json", "value-summary.json"),
                         ("evidence.png", "value-evidence.png")):
        if seeds and (report / name).is_file():
            shutil.copyfile(report / name, out / target)
    text = (report / "report.md").read_text() if seeds and (report / "report.md").is_file() else ""
    answer = next((block for block in text.split("\n\n")[1:] if block.startswith("**")), "")  # after the title
    return {**result, "seeds_reported": seeds, "answer": answer}


def main(argv: list[str] | None = None) -> int:
    from ernie_cpt import threads

    threads.configure_process()  # before torch loads, as the console script does (OpenMP under contention)
    parser = argparse.ArgumentParser(prog="python -m scripts.gpu.value")
    parser.add_argument("step", choices=("run", "finish"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--deadline", type=float, help="run: time.time() by which compare must be done")
    parser.add_argument("--corpus", nargs="+", required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--minilm", type=Path, required=True)
    parser.add_argument("--downstream", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="finish: where the report goes")
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args(argv)
    paths = Paths(args.corpus, args.cache, args.minilm, args.downstream, args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    result = (run(paths, args.device, args.deadline, args.quick) if args.step == "run"
              else finish(paths, args.device, args.out))
    args.result.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
