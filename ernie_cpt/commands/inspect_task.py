"""``ernie-cpt inspect-task``: what a task generator makes of a corpus, before any training.

It prints statistics (examples per 1,000 words, the label distribution over one epoch of a
sample of examples) and a few decoded examples: tokens with their labels, or segments with
the class name.
"""

from __future__ import annotations

from collections import Counter
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


def _label_distribution(task: Any, counts: Counter[int]) -> list[str]:
    total = sum(counts.values())
    lines = [f"  {task.label_name(label)}: {count} ({count / total:.1%})"
             for label, count in counts.most_common(MAX_LABELS_SHOWN)]
    if len(counts) > MAX_LABELS_SHOWN:
        lines.append(f"  ... {len(counts) - MAX_LABELS_SHOWN} more labels")
    return lines


def inspect_task(name: str, options: dict[type, Any]) -> str:
    """The report printed by ``ernie-cpt inspect-task NAME``."""
    task_class = get_task(name)
    inspect = options[InspectOptions]
    task_class.check_seq_length(options[task_class.options_class], inspect.max_seq_length)  # before any work
    documents = annotate(read_corpus(options[CorpusOptions]), options[AnnotationOptions])
    tokenizer_options = options[TokenizerOptions]
    tokenizer = (load_tokenizer(tokenizer_options.tokenizer) if tokenizer_options.tokenizer else
                 cached_corpus_tokenizer(documents, tokenizer_options.vocab_size, options[AnnotationOptions].cache_dir))
    task = task_class(tokenizer, options[task_class.options_class], inspect.max_seq_length)
    rows = task.build_examples(documents, num_proc=options[AnnotationOptions].num_proc or None)
    words = corpus_words(documents)

    order = np.random.default_rng(inspect.seed).permutation(len(rows))
    counts, examples = task.sample_labels(rows, inspect.seed, STATISTICS_SAMPLE)  # the first of ``order``
    scope = f"over {len(examples)} sampled examples" if len(examples) < len(rows) else "over all examples"
    no_signal = task.nothing_to_learn(counts, len(examples), MAX_MAJORITY_SHARE)
    lines = [
        f"{name} (task id {task.task_id}, {task.level}-level, {task.num_labels} classes)",
        f"{plural(len(documents), 'document')}, {words:,} words -> {len(rows):,} examples "
        f"({1000 * len(rows) / max(words, 1):.1f} per 1,000 words), "
        f"mean length {column_mean(rows, 'length'):.1f} tokens",
        f"label distribution {scope}:",
        *_label_distribution(task, counts),
        *([f"skipped by pretrain: {no_signal}"] if no_signal else []),
        *task.notes,
    ]
    for i in order[:inspect.num_examples].tolist():
        lines += ["", f"example {i}:", "    " + task.describe(examples[i])]
    return "\n".join(lines)
