"""``scripts/gpu_check.sh``: install, check, benchmark and run the value experiment against one deadline.

Each phase is a child process in its own process group with a time limit: its share of the budget
(:data:`BUDGETS`) or what is left before the deadline, whichever is less; a phase that overruns is
killed and the next one starts. The value experiment gets all the time that is left. After every
phase the results so far are written to ``OUT/gpu-check.json`` and ``OUT/gpu-check.md``, and every
child's output goes to ``OUT/log.txt``; the benchmark rows to ``OUT/bench.json``, compare's report
to ``OUT/value-report.md``, ``value-summary.json`` and ``value-evidence.png`` (7 files at most).

On a GPU machine (``--device cuda``), ``install`` lets pip's resolver choose, from ``.whl/`` and
against the image's installed packages (a constraints file pins them: none may be replaced;
``--no-index``: nothing is downloaded), what the image lacks, installs exactly that into
``.gpu-run/site`` (``--target``, no dependencies), which the phases get on their PYTHONPATH with the
repository root (this project, run from its source), and unpacks ``.gpu/data.tar.xz`` into
``.gpu-run/``. The image's own site-packages are never written to. On the CPU (``--device cpu``, the dry run),
``install`` prepares what a GPU run carries (``make gpu-wheels gpu-data``), checks the wheelhouse
with pip's resolver for Python 3.12, and builds the image-like Python (:mod:`scripts.gpu.image`,
no spaCy) that runs every later phase.

Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from scripts.gpu.carry import QUICK_CHAPTERS
from scripts.gpu.report import page

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / ".gpu-run"
BUDGETS = {"install": 120, "env": 45, "smoke": 150, "bench": 150}  # seconds, at most; value: the rest
QUICK_BUDGETS = {"install": 600, "env": 120, "smoke": 600, "bench": 600}  # the CPU dry run on 2 busy cores
FINAL = 10.0  # seconds kept for the last writes
FINISH = 25.0  # seconds kept for the value experiment's report from the seeds that finished
PINNED = ("torch", "transformers", "tokenizers", "accelerate", "safetensors", "huggingface-hub", "numpy",
          "pyarrow", "pandas", "scipy", "scikit-learn")  # the image's, never replaced


class Check:
    """The phases run so far, their results, and the deadline."""

    def __init__(self, out: Path, device: str, quick: bool, start: float, budget: float) -> None:
        self.out, self.device, self.quick, self.deadline = out, device, quick, start + budget
        self.python, self.pythonpath = sys.executable, str(ROOT)
        self.log = out / "log.txt"
        self.log.write_text("")  # this check's output only
        command = "GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 scripts/gpu_check.sh" if quick else "scripts/gpu_check.sh"
        self.results: dict[str, Any] = {"date": datetime.date.today().isoformat(), "device": device, "quick": quick,
                                        "command": command, "budget_seconds": budget, "start": start, "phases": {}}

    def left(self) -> float:
        return self.deadline - time.time()

    def write(self) -> None:
        self.results["seconds"] = time.time() - self.results["start"]
        (self.out / "gpu-check.json").write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        try:
            text = page(self.results)
        except Exception as e:  # the page must never stop the check: the JSON holds everything
            text = f"# GPU check\n\nThe page could not be written ({type(e).__name__}: {e}); see gpu-check.json.\n"
        (self.out / "gpu-check.md").write_text(text)

    def child(self, argv: list[str], limit: float) -> tuple[str, int | None]:
        """Run ``argv`` (its output to the log) for at most ``limit`` seconds: ("ok"|"failed"|"timed out", code)."""
        with open(self.log, "a", encoding="utf-8") as log:
            log.write(f"\n[{time.strftime('%H:%M:%S')}] $ {' '.join(argv)}\n")
            log.flush()
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1",
                   "PYTHONPATH": self.pythonpath}
            start = time.time()
            process = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
                                       start_new_session=True)
            try:
                code = process.wait(timeout=max(limit, 1))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = None
            ended = "killed at its time limit" if code is None else f"exit {code}"
            log.write(f"[{time.strftime('%H:%M:%S')}] {ended} after {time.time() - start:.0f} s\n")
        return ("ok" if code == 0 else "failed" if code is not None else "timed out"), code

    def phase(self, name: str, argv: list[str], budget: float, result: Path | None = None) -> dict[str, Any]:
        """Run one phase under min(budget, time left), record it (with its JSON ``result``) and write."""
        limit = min(budget, self.left() - FINAL)
        start = time.time()
        status, code = self.child(argv, limit) if limit > 5 else ("skipped (no time left)", None)
        record: dict[str, Any] = {"status": status, "seconds": time.time() - start, "limit_seconds": limit}
        if result is not None and result.is_file():
            record.update(json.loads(result.read_text()))
        if status != "ok":
            record.setdefault("error", f"{status}{f' (exit {code})' if code else ''}; see log.txt")
        self.results["phases"][name] = {**self.results["phases"].get(name, {}), **record}
        self.write()
        print(f"gpu_check: {name}: {status} in {record['seconds']:.0f} s", flush=True)
        return record


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def _installed(names: tuple[str, ...]) -> dict[str, str]:
    import importlib.metadata

    found = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in names:
            found[name] = dist.version
    return found


def _unpack(data: Path) -> None:
    """The data file into ``.gpu-run/`` (the annotation cache, the corpora, the downstream set)."""
    with tarfile.open(data) as tar:
        tar.extractall(RUN, filter="data")


def install_gpu() -> dict[str, Any]:
    """The wheels the image lacks into ``.gpu-run/site`` (on the phases' PYTHONPATH), chosen by pip's
    resolver against the image's installed packages, which it may not replace (constraints pin them);
    the image's own site-packages are not written to. Then the data, unpacked."""
    needed = (ROOT / ".whl", ROOT / ".gpu" / "data.tar.xz", ROOT / ".gpu" / "minilm-bf16")
    missing = [path for path in needed if not path.exists()]
    if missing:
        raise SystemExit(f"{', '.join(map(str, missing))} absent: run make gpu-wheels gpu-data on the CPU machine and "
                         f"carry .whl and .gpu")
    image = _installed(PINNED)
    RUN.mkdir(exist_ok=True)
    constraints, report = RUN / "constraints.txt", RUN / "resolved.json"
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in image.items()))
    _pip("install", "--quiet", "--dry-run", "--no-index", "--find-links", str(ROOT / ".whl"), "--constraint",
         str(constraints), "--report", str(report), "datasets")
    chosen = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    files = [unquote(urlparse(i["download_info"]["url"]).path) for i in json.loads(report.read_text())["install"]]
    site = RUN / "site"
    if files:
        _pip("install", "--quiet", "--no-index", "--no-deps", "--no-compile", "--upgrade", "--target", str(site),
             *files)
    _unpack(ROOT / ".gpu" / "data.tar.xz")
    return {"installed": chosen, "image": image, "python": sys.executable,
            "pythonpath": f"{site}{os.pathsep}{ROOT}"}


def install_dry_run() -> dict[str, Any]:
    """What ``make gpu-wheels gpu-data`` prepares, pip's resolver over it for Python 3.12, and the
    image-like Python the later phases run in."""
    from scripts.gpu import carry, wheelhouse
    from scripts.gpu.image import image_python, overlay_wheels

    wheels = wheelhouse.download_wheels()
    wheelhouse.convert_minilm()
    resolved = wheelhouse.check()
    carry.build(quick=True)
    sizes = carry.sizes()
    if sum(sizes.values()) >= carry.LIMIT:
        raise SystemExit(f"a device command would send {sum(sizes.values()) / 2**20:.1f} MiB, over 64 MiB")
    names = {w.name.split("-")[0].replace("_", "-") for w in wheels}
    python = image_python(wheelhouse.BUILD / "image-python", overlay_wheels(wheelhouse.BUILD / "image-wheels"), names)
    _unpack(carry.data_file(quick=True))
    return {"installed": {"wheelhouse": f"{len(wheels)} wheels"}, "resolver": resolved,
            "sizes_mib": {k: round(v / 2**20, 2) for k, v in sizes.items()}, "python": str(python)}


def run_phases(check: Check, chosen: set[str]) -> None:
    """env, smoke, bench and the value experiment (those ``chosen``), in the Python ``install`` chose."""
    results, quick, device = RUN / "results", check.quick, check.device
    results.mkdir(parents=True, exist_ok=True)
    budgets = QUICK_BUDGETS if quick else BUDGETS
    common = ["--device", device, "--cache", str(RUN / "cache"), "--work", str(RUN / "work")]
    for name in ("env", "smoke"):  # the smoke test trains on the bundled sample: every task has examples there
        if name in chosen:
            check.phase(name, [check.python, "-m", "scripts.gpu.phases", name, *common,
                               *(["--quick"] if quick else []), "--result", str(results / f"{name}.json")],
                        budgets[name], results / f"{name}.json")
    sizes = ["--quick", "--training-rows", "--model-size", "tiny", "--batch-size", "8"] if quick else []
    if "bench" in chosen:
        check.phase("bench", [check.python, "-m", "benchmarks.run", "--device", device, *sizes, "--cache-dir",
                              str(RUN / "cache"), "--json", str(check.out / "bench.json")], budgets["bench"],
                    check.out / "bench.json")
    if "value" not in chosen:
        return
    corpus = QUICK_CHAPTERS if quick else [str(RUN / "corpora" / "austen")]
    value = ["--device", device, "--corpus", *corpus, "--cache",
             str(RUN / "cache"), "--minilm", str(ROOT / ".gpu" / "minilm-bf16"), "--downstream",
             str(RUN / "corpora" / "fortunes-topics"), "--work", str(RUN / "work" / "value"), "--result"]
    deadline = check.deadline - FINISH - FINAL
    check.phase("value", [check.python, "-m", "scripts.gpu.value", "run", *value, str(results / "value.json"),
                          "--deadline", str(deadline), *(["--quick"] if quick else [])],
                deadline - time.time(), results / "value.json")
    ran = dict(check.results["phases"]["value"])
    finished = check.phase("value", [check.python, "-m", "scripts.gpu.value", "finish", *value,
                                     str(results / "value.json"), "--out", str(check.out)], check.left() - FINAL,
                           results / "value.json")
    record = check.results["phases"]["value"]
    record["seconds"] = ran["seconds"] + finished["seconds"]
    if ran["status"] != "ok":  # the run's status stays; finish reported the seeds that finished
        record.update(status=f"{ran['status']}; {finished['status']} from finished seeds", error=ran.get("error"))
    check.write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/gpu_check.sh", description=__doc__.splitlines()[0])
    parser.add_argument("step", nargs="?", choices=("all", "install"), default="all")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-check-out"),
                        help="where the results go (default: $OUT, else gpu-check-out)")
    parser.add_argument("--device", default=os.environ.get("GPU_CHECK_DEVICE", "cuda"))
    parser.add_argument("--quick", action="store_true", default=os.environ.get("GPU_CHECK_QUICK") == "1",
                        help="toy sizes (the CPU dry run)")
    parser.add_argument("--budget", type=float, default=float(os.environ.get("GPU_CHECK_SECONDS", 540)),
                        help="seconds for everything (default 540: 9 minutes)")
    parser.add_argument("--start", type=float, default=float(os.environ.get("GPU_CHECK_START", time.time())),
                        help="when the budget started (time.time(); gpu_check.sh passes its own start)")
    parser.add_argument("--phases", default="env,smoke,bench,value", help="the phases to run after install, "
                        "comma-separated (default: all: env,smoke,bench,value)")
    parser.add_argument("--result", type=Path, help="install: where its JSON result goes")
    args = parser.parse_args(argv)
    if args.step == "install":
        result = install_dry_run() if args.device == "cpu" else install_gpu()
        args.result.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(args.out, args.device, args.quick, args.start, args.budget)
    RUN.mkdir(exist_ok=True)
    install_result = RUN / "install.json"
    install_result.unlink(missing_ok=True)
    installed = check.phase("install", [sys.executable, "-m", "scripts.gpu.check", "install", "--device",
                                        args.device, "--result", str(install_result)],
                            (QUICK_BUDGETS if args.quick else BUDGETS)["install"], install_result)
    if installed["status"] == "ok":
        check.python, check.pythonpath = installed["python"], installed.get("pythonpath", str(ROOT))
        run_phases(check, set(args.phases.split(",")))
    check.write()
    print((args.out / "gpu-check.md").read_text().split("\n## ")[0])
    failed = [name for name, phase in check.results["phases"].items() if phase["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
