"""The pre-task interface: what every ERNIE 2.0 task provides to the trainer.

A task turns annotated documents into *static* examples once (tokenized, cached by
`datasets`), and each static example into a *training* example on demand, with an RNG seeded
per (seed, task, epoch, example), so masks and shuffles are resampled every epoch yet every
run is reproducible. A task names the head that scores it (``head``, a name in
``ernie_cpt.modeling.heads.HEADS``); the head owns the loss and the metrics.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from abc import ABC, abstractmethod
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ernie_cpt.data import cells, sections
from ernie_cpt.errors import UserError
from ernie_cpt.options import Range, check_ranges

if TYPE_CHECKING:  # both load in a second or more; task modules are imported for --help too
    import datasets
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100  # the label of a position (or example) that is not scored
# --max-seq-length of every command: [CLS], [SEP] and a few tokens of text at the least (each task
# may need more: PreTask.min_seq_length), and no more positions than any BERT-style encoder has.
MIN_SEQ_LENGTH = 8
SEQ_LENGTH_RANGE = Range(MIN_SEQ_LENGTH, 8192)
SEQ_LENGTH_HELP = "Maximum tokens per example, [CLS] and [SEP] included"
LABEL_SAMPLE = 2000  # examples made to count a task's labels (inspect-task, the nothing-to-learn check)
MAX_MAJORITY_SHARE = 0.995  # above this share of one class, a task's labels leave nothing to learn
# The head of each level unless a task names another (knowledge masking: "masked_lm").
LEVEL_HEADS = {"token": "token_classification", "sequence": "sequence_classification", "pair": "sentence_pair"}


@functools.cache
def _package_source_hash() -> str:
    """A hash of every module of ``pretasks`` and of the data modules the generators call (sections,
    table cells): any change to the generators' code changes it."""
    digest = hashlib.sha256()
    for path in [*sorted(Path(__file__).parent.glob("*.py")), Path(sections.__file__), Path(cells.__file__)]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _outside_source_hash(cls: type) -> str:
    """A hash of the source files of ``cls`` and its bases that live outside ``pretasks`` (a plugin task's own
    modules), "" when there are none: a change to a plugin's generator changes its examples' fingerprint too."""
    paths = {getattr(sys.modules.get(klass.__module__), "__file__", None) for klass in cls.__mro__
             if klass.__module__.split(".")[0] not in ("pretasks", "builtins", "abc")}
    digest = hashlib.sha256()
    for path in sorted(path for path in paths if path):
        digest.update(Path(path).read_bytes())
    return digest.hexdigest() if any(paths) else ""


def features(columns: dict[str, Any]) -> datasets.Features:
    """The ``datasets.Features`` of a column schema written without `datasets`: a dtype name is a
    ``Value``, a one-item list a ``Sequence`` of that item (nested lists nest), e.g.
    ``{"doc_id": "string", "ids": ["int32"], "windows": [["int64"]]}``."""
    import datasets

    def feature(spec: str | list) -> Any:
        return datasets.Sequence(feature(spec[0])) if isinstance(spec, list) else datasets.Value(spec)

    return datasets.Features({name: feature(spec) for name, spec in columns.items()})


class TaskUnavailable(UserError):
    """The corpus cannot give this task any examples; the message says why, with counts."""


class PreTask(ABC):
    """One pre-training task. Subclasses set ``name``, ``options_class``, ``level`` and either
    ``label_names`` (classification tasks) or override ``num_labels`` (masked LM). The registry
    sets the class's ``task_id`` (its id in a run of its own); a run sets each instance's to the id the
    run fixed (:mod:`ernie_cpt.training.task_ids`)."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help; by default the title of its options: "name: summary"
    task_id: int  # row of the task embedding and key of the task's random streams, fixed per run
    options_class: ClassVar[type]
    # "token": a label per token; "sequence": one label per example; "pair": one label per
    # segment pair ([CLS] A [SEP] B [SEP])
    level: ClassVar[str] = "sequence"
    head_name: ClassVar[str | None] = None  # a registered head; None: LEVEL_HEADS[level]
    num_token_types: ClassVar[int] = 1  # segment ids an input uses: 2 for [CLS] A [SEP] B [SEP] (pair tasks)
    label_names: tuple[str, ...] = ()

    def __init__(self, tokenizer: PreTrainedTokenizerBase, options: Any, max_seq_length: int) -> None:
        check_ranges(options)
        self.check_seq_length(options, max_seq_length)
        self.tokenizer = tokenizer
        self.options = options
        self.max_seq_length = max_seq_length
        self.notes: list[str] = []  # what the last build_examples left out, and why (inspect-task prints them)

    @classmethod
    def min_seq_length(cls, options: Any) -> tuple[int, str]:
        """The shortest ``--max-seq-length`` whose examples are well-formed under ``options``, and
        why (shorter inputs would cut a segment to nothing or below what the task's definition
        needs). Tasks with needs beyond ``SEQ_LENGTH_RANGE`` override it."""
        return MIN_SEQ_LENGTH, "the shortest input of any task"

    @classmethod
    def check_seq_length(cls, options: Any, max_seq_length: int) -> None:
        """A UserError when ``max_seq_length`` is below :meth:`min_seq_length`."""
        minimum, why = cls.min_seq_length(options)
        if max_seq_length < minimum:
            raise UserError(f"--max-seq-length {max_seq_length} is too short for {cls.name}, which needs at least "
                            f"{minimum} ({why}); raise --max-seq-length or leave out the task")

    @classmethod
    def check_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> None:
        """A UserError when the task cannot work with ``tokenizer`` (checked before any work when the
        tokenizer comes from ``--init-from`` or ``--tokenizer``); every tokenizer suits most tasks."""
        return None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def sample_labels(self, rows: datasets.Dataset, seed: int,
                      limit: int = LABEL_SAMPLE) -> tuple[Counter[int], dict[int, dict[str, Any]]]:
        """The labels of up to ``limit`` examples (a seeded sample of ``rows``, made as epoch 0 of
        training makes them), counted over scored items, and those examples by row index."""
        chosen = sorted(np.random.default_rng(seed).permutation(len(rows))[:limit].tolist())
        examples = {i: self.make_example(row, np.random.default_rng([seed, self.task_id, 0, i]))
                    for i, row in zip(chosen, rows.select(chosen))}
        counts: Counter[int] = Counter()
        for example in examples.values():
            labels = example["labels"]
            counts.update([label for label in labels if label != IGNORE_INDEX] if isinstance(labels, list)
                          else [labels])
        return counts, examples

    def nothing_to_learn(self, counts: Counter[int], n_examples: int, max_share: float) -> str | None:
        """Why labels counted by :meth:`sample_labels` leave nothing to learn (a single class, or one
        class above ``max_share`` of them), with the counts; None when they do not."""
        total = sum(counts.values())
        if total == 0:
            return f"{self.name} scores nothing in {n_examples} sampled training examples"
        label, most = counts.most_common(1)[0]
        if len(counts) > 1 and most / total <= max_share:
            return None
        return (f"{self.name} has nothing to learn on this corpus: {most:,} of the {total:,} labels "
                f"({most / total:.1%}) of {n_examples:,} sampled training examples are '{self.label_name(label)}' "
                f"({len(counts)} class{'es' * (len(counts) != 1)}; a task is skipped above "
                f"--max-majority-share {max_share:g})")

    def label_name(self, label: int) -> str:
        return self.label_names[label]

    def fingerprint(self, *parts: Any) -> str:
        """A `datasets` fingerprint (``new_fingerprint=``) for a map that builds this task's
        examples: it covers the generator code, the task, its options, the tokenizer and
        ``parts`` (datasets by their fingerprint, anything else by ``repr``), and a plugin task's own
        modules. `datasets`' own fingerprint misses changes to module-level code that the mapped function
        calls."""
        import datasets

        digest = hashlib.sha256()
        tokenizer = self.tokenizer.backend_tokenizer.to_str() if self.tokenizer.is_fast else repr(self.tokenizer)
        plugin = _outside_source_hash(type(self))  # "" for the built-in tasks
        for part in (_package_source_hash() + plugin, self.name, repr(self.options), self.max_seq_length, tokenizer,
                     *parts):
            digest.update((part._fingerprint if isinstance(part, datasets.Dataset) else repr(part)).encode())
            digest.update(b"\x1f")
        return digest.hexdigest()[:32]

    @abstractmethod
    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None,
                       background: datasets.Dataset | None = None, held_out: bool = False) -> datasets.Dataset:
        """Static examples from annotated documents; must include a ``length`` column (tokens).

        ``background`` holds other documents that may supply cross-document partners
        (negatives) but never examples of their own: pretrain passes the training documents
        when it builds the held-out set, which may hold a single document. ``held_out`` says
        which split is built, for examples that do not come from documents (an external pair
        file or click log is split by a stable hash of each record). Raise
        :class:`TaskUnavailable` with counts when the corpus cannot give any example."""

    @abstractmethod
    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A training example: ``input_ids``, ``token_type_ids`` and ``labels`` (a list, -100 = unscored,
        for token-level tasks; an int for sequence- and pair-level tasks)."""

    @classmethod
    def head_of(cls) -> str:
        """The name of the head that scores this task (``ernie_cpt.modeling.heads.HEADS``)."""
        return cls.head_name or LEVEL_HEADS[cls.level]

    @property
    def head(self) -> str:
        """The name of the head that scores this task (:meth:`head_of`)."""
        return self.head_of()

    def describe(self, example: dict[str, Any]) -> str:
        """A person-readable rendering of a training example, for ``ernie-cpt inspect-task``."""
        tokens = self.tokenizer.convert_ids_to_tokens(example["input_ids"])
        if isinstance(example["labels"], list):
            return " ".join(token if label == IGNORE_INDEX else f"{token}/{self.label_name(label)}"
                            for token, label in zip(tokens, example["labels"]))
        segments: list[str] = []
        current: list[str] = []
        for token, segment in zip(tokens, example["token_type_ids"]):
            if token == self.tokenizer.cls_token:
                continue
            if token == self.tokenizer.sep_token:
                segments.append(f"[{segment}] " + self.tokenizer.convert_tokens_to_string(current))
                current = []
            else:
                current.append(token)
        return f"label {example['labels']} ({self.label_name(example['labels'])})\n    " + "\n    ".join(segments)
