"""``ernie-cpt inspect-task``: what a task generator makes of a corpus, before any training.

It prints statistics (examples per 1,000 words, the label distribution over one epoch of a
sample of examples) and a few decoded examples: tokens with their labels, or segments with
the class name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ernie_cpt.commands.options import InspectOptions
from ernie_cpt.data.annotate import annotate
from ernie_cpt.data.column_stats import column_mean
from ernie_cpt.data.corpus import corpus_words, read_corpus
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions, TokenizerOptions
from ernie_cpt.data.tokenizer import cached_corpus_tokenizer, load_tokenizer
from ernie_cpt.messages import plural
from pretasks import get_task
from pretasks.base import LABEL_SAMPLE, MAX_MAJORITY_SHARE

STATISTICS_SAMPLE = LABEL_SAMPLE
MAX_LABELS_SHOWN = 12


@dataclass
class TaskInspection:
    """What a pre-task makes of a corpus: its statistics, a seeded sample of its training examples (each a
    dict of the example's fields, ``input_ids`` and ``labels`` among them, and its ``index`` among the
    task's examples and ``description``, the tokens with their labels), and the report ``inspect-task``
    prints (:meth:`report`)."""

    task: str
    task_id: int
    level: str
    num_labels: int
    documents: int
    words: int
    num_examples: int
    mean_length: float
    label_counts: dict[str, int]  # label name -> count, most common first, over ``labels_sampled`` examples
    labels_sampled: int
    examples: list[dict[str, Any]]
    skipped_by_pretrain: str | None = None
    notes: list[str] = field(default_factory=list)

    def report(self) -> str:
        """The text ``ernie-cpt inspect-task`` prints."""
        scope = f"over {self.labels_sampled} sampled examples" if self.labels_sampled < self.num_examples \
            else "over all examples"
        lines = [
            f"{self.task} (task id {self.task_id}, {self.level}-level, {self.num_labels} classes)",
            f"{plural(self.documents, 'document')}, {self.words:,} words -> {self.num_examples:,} examples "
            f"({1000 * self.num_examples / max(self.words, 1):.1f} per 1,000 words), "
            f"mean length {self.mean_length:.1f} tokens",
            f"label distribution {scope}:",
            *_label_distribution(self.label_counts),
            *([f"skipped by pretrain: {self.skipped_by_pretrain}"] if self.skipped_by_pretrain else []),
            *self.notes,
        ]
        for example in self.examples:
            lines += ["", f"example {example['index']}:", "    " + example["description"]]
        return "\n".join(lines)


def _label_distribution(counts: dict[str, int]) -> list[str]:
    total = sum(counts.values())
    lines = [f"  {label}: {count} ({count / total:.1%})" for label, count in list(counts.items())[:MAX_LABELS_SHOWN]]
    if len(counts) > MAX_LABELS_SHOWN:
        lines.append(f"  ... {len(counts) - MAX_LABELS_SHOWN} more labels")
    return lines


def inspect_task(name: str, options: dict[type, Any]) -> TaskInspection:
    """What the task ``name`` makes of the corpus of ``options`` (see :class:`TaskInspection`). Raises
    ConfigError for an unknown task or a --max-seq-length too short for it, UserError for a corpus that
    cannot be read."""
    task_class = get_task(name)
    inspect = options[InspectOptions]
    task_class.check_seq_length(options[task_class.options_class], inspect.max_seq_length)  # before any work
    documents = annotate(read_corpus(options[CorpusOptions]), options[AnnotationOptions])
    tokenizer_options = options[TokenizerOptions]
    tokenizer = (load_tokenizer(tokenizer_options.tokenizer) if tokenizer_options.tokenizer else
                 cached_corpus_tokenizer(documents, tokenizer_options.vocab_size, options[AnnotationOptions].cache_dir))
    task = task_class(tokenizer, options[task_class.options_class], inspect.max_seq_length)
    rows = task.build_examples(documents, num_proc=options[AnnotationOptions].num_proc or None)

    order = np.random.default_rng(inspect.seed).permutation(len(rows))
    counts, examples = task.sample_labels(rows, inspect.seed, STATISTICS_SAMPLE)  # the first of ``order``
    return TaskInspection(
        name, task.task_id, task.level, task.num_labels, len(documents), corpus_words(documents), len(rows),
        column_mean(rows, "length"), {task.label_name(label): count for label, count in counts.most_common()},
        len(examples), [{"index": i, "description": task.describe(examples[i]), **examples[i]}
                        for i in order[:inspect.num_examples].tolist()],
        task.nothing_to_learn(counts, len(examples), MAX_MAJORITY_SHARE), list(task.notes))
