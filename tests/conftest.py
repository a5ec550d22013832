"""Shared fixtures: offline hubs, a per-session cache, real text and its annotations."""
# ruff: noqa: E402  (the OpenMP settings must be made before torch is imported)

from __future__ import annotations

import atexit
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
if "ERNIE_CPT_CACHE" not in os.environ:  # a cache of this session's own, removed when it ends (a shared /tmp)
    os.environ["ERNIE_CPT_CACHE"] = tempfile.mkdtemp(prefix="ernie-cpt-test-cache-")
    atexit.register(shutil.rmtree, os.environ["ERNIE_CPT_CACHE"], ignore_errors=True)
# Under pytest-xdist (`make test`: -n) the workers inherit that cache from the controller, which made it, and each
# worker's torch, and the commands it starts, use one thread: as many workers as cores keep the cores busy, and more
# threads than cores spin and wait for one another (see ernie_cpt.threads).
if "PYTEST_XDIST_WORKER" in os.environ:
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from ernie_cpt import threads

threads.configure_process()  # before torch loads, as the CLI does: OpenMP threads that yield under contention

import datasets
import pytest
import torch
from torch import nn
from transformers import ErnieModel

from ernie_cpt.data.annotate import AnnotationOptions, annotate
from ernie_cpt.data.corpus import CorpusOptions, bundled_corpus, load_corpus
from ernie_cpt.data.tokenizer import train_tokenizer
from ernie_cpt.modeling.architectures import ARCHITECTURES, Architecture, ArchitectureOptions
from tests.processes import CliProcess

SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist, whose workers take a module at a time (``make test``: --dist loadfile), the modules marked
    ``minutes`` go first, then those with end-to-end runs (a test marked ``slow``), and the quick ones fill the
    workers' time at the end: a long module started last would leave the other worker idle. The order within a
    module is unchanged."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        rank = {}
        for item in items:
            mark = 0 if item.get_closest_marker("minutes") else 1 if item.get_closest_marker("slow") else 2
            rank[item.path] = min(mark, rank.get(item.path, 2))
        items.sort(key=lambda item: rank[item.path])


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's in-process training (``pytest.mark.usefixtures``): two threads
    on two cores shared with other processes spin and run many times slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def austen_dir() -> Path:
    """The six Austen novels from ../shared/corpora (skipped where that folder is absent)."""
    path = SHARED_CORPORA / "austen"
    if not path.is_dir():
        pytest.skip(f"real-text corpus {path} is absent (it sits beside the repo in development and CI)")
    return path


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The bundled sample: chapters 1-12 of Persuasion, one file each."""
    return bundled_corpus()


@pytest.fixture(scope="session")
def cache_dir() -> str:
    return os.environ["ERNIE_CPT_CACHE"]


@pytest.fixture(scope="session")
def sample_annotations(sample_dir: Path, cache_dir: str) -> datasets.Dataset:
    """spaCy annotations of four chapters of the bundled sample (annotated once per session)."""
    corpus = load_corpus(CorpusOptions(corpus=[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]))
    return annotate(corpus, AnnotationOptions(cache_dir=cache_dir))


@pytest.fixture(scope="session")
def austen_annotations(austen_dir: Path, cache_dir: str, tmp_path_factory) -> datasets.Dataset:
    """spaCy annotations of the opening chapters of two Austen novels (first 120 paragraphs each)."""
    folder = tmp_path_factory.mktemp("austen")
    for name in ("pride-and-prejudice.txt", "emma.txt"):
        paragraphs = (austen_dir / name).read_text(encoding="utf-8").split("\n\n")[:120]
        (folder / name).write_text("\n\n".join(paragraphs), encoding="utf-8")
    return annotate(load_corpus(CorpusOptions(corpus=[str(folder)])), AnnotationOptions(cache_dir=cache_dir))


@pytest.fixture(scope="session")
def sample_tokenizer(sample_annotations: datasets.Dataset):
    return train_tokenizer(sample_annotations, vocab_size=2000)


class ColumnPerTask(Architecture):
    """Every task gets its own copy of the encoder's top layer (a test architecture; no paper)."""

    name = "test_column_per_task"

    def __init__(self, encoder: ErnieModel, task_ids: dict[str, int], sharing: ArchitectureOptions,
                 options: None = None) -> None:
        super().__init__(encoder.config, task_ids, sharing, options)
        self.encoder = encoder
        top = encoder.encoder.layer[-1]
        self.columns = nn.ModuleDict({task: type(top)(encoder.config) for task in task_ids})
        for column in self.columns.values():
            column.load_state_dict(top.state_dict())

    def word_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def encode(self, task, batch):
        out = self.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                           token_type_ids=batch["token_type_ids"], output_hidden_states=True,
                           task_type_ids=self.task_type_ids(task, batch["input_ids"]))
        blocked = (1.0 - batch["attention_mask"][:, None, None, :].float()) * torch.finfo(torch.float32).min
        hidden = self.columns[task](out.hidden_states[-2], attention_mask=blocked)
        hidden = hidden[0] if isinstance(hidden, tuple) else hidden
        return hidden, self.encoder.pooler(hidden)

    def shared_layer_weights(self):
        return [layer.output.dense.weight for layer in self.encoder.encoder.layer[:-1]]

    def shared_parameters(self):
        top = f"encoder.layer.{len(self.encoder.encoder.layer) - 1}."
        return [p for name, p in self.encoder.named_parameters() if not name.startswith(top)]


@pytest.fixture(scope="module")
def column_per_task():
    """Register :class:`ColumnPerTask` for a module's tests (``--architecture test_column_per_task``)."""
    ARCHITECTURES.register()(ColumnPerTask)
    yield ColumnPerTask
    ARCHITECTURES._entries.pop(ColumnPerTask.name)


# --- commands in a process of their own, on a small real file system, without root's override -----------------


@pytest.fixture
def start_cli(tmp_path):
    """``start_cli(argv, file_size_limit=None, env=None, signal_at_open=None)``: the CLI in a child of a forkserver
    that has imported it (a start costs about a second, not ten; see :func:`tests.processes._cli_child` for the
    options); a child left running is killed at the end of the test."""
    started: list[CliProcess] = []

    def start(argv: list[str], file_size_limit: int | None = None, env: dict[str, str] | None = None,
              signal_at_open: tuple[str, int, int] | None = None) -> CliProcess:
        started.append(CliProcess(argv, tmp_path / f"command-{len(started)}.log", file_size_limit, env,
                                  signal_at_open))
        return started[-1]

    yield start
    for process in started:
        if process.process.is_alive():
            process.kill()


@pytest.fixture
def start_ranks(start_cli):
    """``start_ranks(argv, ranks=2, file_size_limit=None, signal_at_open=None)``: the CLI in ``ranks`` processes that
    form one process group, each with the variables torchrun gives its workers (RANK, WORLD_SIZE, LOCAL_RANK,
    LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT): what ``torchrun --standalone --nproc_per_node N -m ernie_cpt ARGV``
    starts, without the launcher's own start-up; ``signal_at_open`` is rank 0's (see
    :func:`tests.processes._cli_child`). Returns the :class:`CliProcess` of each rank."""
    import socket

    def start(argv: list[str], ranks: int = 2, file_size_limit: int | None = None,
              signal_at_open: tuple[str, int, int] | None = None) -> list[CliProcess]:
        with socket.socket() as probe:  # a free port: other test runs on this machine may use torchrun's default
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        shared = {"WORLD_SIZE": str(ranks), "LOCAL_WORLD_SIZE": str(ranks), "MASTER_ADDR": "127.0.0.1",
                  "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        return [start_cli(argv, file_size_limit, {**shared, "RANK": str(rank), "LOCAL_RANK": str(rank)},
                          None if rank else signal_at_open) for rank in range(ranks)]

    return start


def _mount_tmpfs(folder: Path, size: int) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


class SmallDisk:
    """Somewhere writes run out of room for real. As root: a tmpfs of 64 MiB mounted at ``root``, filled
    by :meth:`fill` with a real file so that ``free`` bytes are left (``mode`` "tmpfs": writes fail with
    ENOSPC). Otherwise a folder at ``root`` and a file size limit of ``free`` bytes (RLIMIT_FSIZE) for the
    commands started with :attr:`limit` afterwards, or set on a running one (``pid``): a write past it fails
    with EFBIG (``mode`` "rlimit")."""

    SIZE = 64 << 20

    def __init__(self, root: Path) -> None:
        self.root = root
        forced = os.environ.get("SMALL_DISK") == "rlimit"  # to try the fallback where a tmpfs can be mounted
        self.mode = "tmpfs" if not forced and _mount_tmpfs(root, self.SIZE) else "rlimit"
        self.root.mkdir(parents=True, exist_ok=True)
        self.limit: int | None = None

    def free(self) -> int:
        stats = os.statvfs(self.root)
        return stats.f_bavail * stats.f_frsize

    def fill(self, free: int, pid: int | None = None) -> None:
        if self.mode == "rlimit":
            self.limit = free
            if pid is not None:
                import resource

                resource.prlimit(pid, resource.RLIMIT_FSIZE, (free, free))
            return
        filler = self.root / "filler"
        try:
            with open(filler, "ab") as f:
                f.write(b"\0" * max(self.free() - free, 0))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:  # filling it whole, and a running command wrote the last bytes first: full, as asked
            if e.errno != errno.ENOSPC or free:
                raise

    def release(self) -> None:
        """Room again: the filler removed, or no limit for later commands."""
        self.limit = None
        (self.root / "filler").unlink(missing_ok=True)

    @property
    def problem(self) -> str:
        """The start of the error line a write that runs out of room here gets."""
        return ("no space left on device" if self.mode == "tmpfs"
                else "file too large (over the file size limit, ulimit -f)")

    def unmount(self) -> None:
        if self.mode == "tmpfs":
            subprocess.run(["umount", "-l", str(self.root)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A :class:`SmallDisk` at ``tmp_path / "disk"``."""
    disk = SmallDisk(tmp_path / "disk")
    yield disk
    disk.unmount()


def _refused(prefix: list[str], folder: Path) -> bool:
    """Whether ``touch`` in the read-only ``folder`` fails when run with ``prefix``."""
    done = subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True)
    return done.returncode != 0 and not (folder / "probe").exists()


@pytest.fixture(scope="session")
def unprivileged(tmp_path_factory) -> list[str]:
    """The command prefix that runs a command without root's override of file permissions: nothing for an
    ordinary user; as root, setpriv (or capsh) with CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER
    dropped, checked to make ``touch`` in a mode-555 folder fail. Skips where neither can."""
    if os.geteuid() != 0:
        return []
    folder = tmp_path_factory.mktemp("read-only")
    folder.chmod(0o555)
    candidates = [["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"],
                  ["capsh", "--drop=cap_dac_override,cap_dac_read_search,cap_fowner", "--", "-c", 'exec "$0" "$@"']]
    for prefix in candidates:
        if shutil.which(prefix[0]) and _refused(prefix, folder):
            return prefix
    pytest.skip("running as root, and neither setpriv nor capsh can drop the override of file permissions")
