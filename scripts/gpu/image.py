"""What the GPU machine's image has, and a Python on this machine that has only that.

The image ('cuda', as /work/.library/device/KINDS.md lists it, read 2026-11-17) has Python 3.12
and the packages of :data:`IMAGE_PACKAGES`; :data:`IMAGE_VERSIONS` are the versions read there.
It has neither ``datasets`` nor spaCy.

* :func:`stub_wheels` writes an empty wheel per image package, for pip's resolver to check the
  wheelhouse against the image without the image (``scripts.gpu.wheelhouse.check``).
* :func:`image_python` builds, here, a virtual environment with only what the GPU machine will
  have: this project's ``.venv`` packages that the image or the wheelhouse has (symlinked), the
  image's own versions of the Hugging Face stack (installed from PyPI), this project (editable)
  and nothing else. No spaCy: the dry run's GPU half runs in it.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

IMAGE_PYTHON = "3.12"
# Read on the machines (KINDS.md's pip list): the Hugging Face stack the dry run installs at these versions.
IMAGE_VERSIONS = {"torch": "2.11.0", "transformers": "5.17.0", "accelerate": "1.15.0", "tokenizers": "0.23.2",
                  "huggingface-hub": "1.33.0", "safetensors": "0.8.0", "numpy": "2.5.2"}
# Image packages that the carried wheels need and this machine's .venv lacks: a version the image may have, inside
# every bound the wheels put on it (fsspec[http], of datasets 5.0.0: aiohttp !=4.0.0a0, !=4.0.0a1).
IMAGE_ASSUMED = {"aiohttp": "3.12.0"}
PINNED_HERE = ("transformers", "huggingface-hub", "tokenizers", "accelerate")  # installed at the image's versions
_LISTED = """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
"""
IMAGE_PACKAGES = tuple(_LISTED.split())  # as KINDS.md writes them (PEP 503 names)


def normalize(name: str) -> str:
    """A distribution name as pip compares them (PEP 503): ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_versions(pyarrow: str | None = None) -> dict[str, str]:
    """A version for every image package this machine's ``.venv`` has: the one read on the image
    where there is one, else the one installed here (the image is of the same months), and those of
    :data:`IMAGE_ASSUMED`; ``pyarrow`` overrides pyarrow's (the wheelhouse must work with the oldest
    the carried datasets accepts too)."""
    installed = {normalize(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    installed = {**IMAGE_ASSUMED, **installed}
    versions = {name: IMAGE_VERSIONS.get(name) or installed[name] for name in IMAGE_PACKAGES
                if name in IMAGE_VERSIONS or name in installed}
    return {**versions, **({"pyarrow": pyarrow} if pyarrow else {})}


def stub_wheels(folder: Path, versions: dict[str, str]) -> Path:
    """One empty ``py3-none-any`` wheel per ``name: version`` (metadata only, no requirements) in
    ``folder``: the image, as pip's resolver sees it with ``--find-links``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in versions.items():
        stem = f"{re.sub(r'[-.]+', '_', name)}-{version}"
        with zipfile.ZipFile(folder / f"{stem}-py3-none-any.whl", "w") as wheel:
            info = f"{stem}.dist-info"
            wheel.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
            wheel.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
            wheel.writestr(f"{info}/RECORD", "")
    return folder


def _top_level(dist: importlib.metadata.Distribution) -> set[str]:
    """The entries of site-packages a distribution installed: packages, modules, its .dist-info, .pth files."""
    return {Path(str(file)).parts[0] for file in dist.files or [] if not str(file).startswith("..")}


def overlay_wheels(folder: Path) -> list[Path]:
    """Wheels for this machine of the image's versions of :data:`PINNED_HERE`, downloaded into ``folder``
    once (pip's cache keeps them too)."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels: list[Path] = []
    for name in PINNED_HERE:
        pattern = f"{name.replace('-', '_')}-{IMAGE_VERSIONS[name]}-*.whl"
        if not list(folder.glob(pattern)):
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                            "-d", str(folder), f"{name}=={IMAGE_VERSIONS[name]}"], check=True)
        wheels += folder.glob(pattern)
    return wheels


def filtered_python(folder: Path, keep: Callable[[str], bool], overlay: Sequence[Path] = ()) -> Path:
    """A virtual environment in ``folder`` (rebuilt) with this machine's ``.venv`` distributions whose
    name ``keep`` accepts (symlinked) and the wheels of ``overlay`` installed; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(folder)], check=True)
    site = next((folder / "lib").glob("python*/site-packages"))
    here = Path(next(p for p in sys.path if p.endswith("site-packages")))
    linked: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(here)]):
        if keep(normalize(dist.metadata["Name"])):
            for entry in sorted(_top_level(dist) - linked):
                if (here / entry).exists():
                    (site / entry).symlink_to(here / entry)
                    linked.add(entry)
    if overlay:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile",
                        "--target", str(site), *map(str, overlay)], check=True)
    return folder / "bin" / "python"


def image_python(folder: Path, overlay: list[Path], wheelhouse: set[str]) -> Path:
    """A virtual environment in ``folder`` with what the GPU machine will have (see the module's
    docstring): ``.venv``'s distributions named in the image or ``wheelhouse`` but :data:`PINNED_HERE`,
    which come from ``overlay`` (:func:`overlay_wheels`) instead; returns its python."""
    keep = ({normalize(n) for n in (*IMAGE_PACKAGES, *wheelhouse)} | {"ernie-cpt"}) - set(PINNED_HERE)
    python = filtered_python(folder, keep.__contains__, overlay)
    names = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(*(d.metadata['Name'] for d "
                            "in m.distributions()))"], check=True, capture_output=True, text=True).stdout.split()
    if any(normalize(n).startswith("spacy") for n in names):
        raise RuntimeError(f"spaCy is in the image-like Python {python}")
    return python
