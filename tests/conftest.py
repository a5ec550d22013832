"""Shared fixtures: offline hubs, a per-session cache, real text and its annotations."""
# ruff: noqa: E402  (the OpenMP settings must be made before torch is imported)

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("ERNIE_CPT_CACHE", tempfile.mkdtemp(prefix="ernie-cpt-test-cache-"))

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

SHARED_CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"


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

    def __init__(self, encoder: ErnieModel, task_ids: dict[str, int], options: ArchitectureOptions) -> None:
        super().__init__(encoder.config, task_ids, options)
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
