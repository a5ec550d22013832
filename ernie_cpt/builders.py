"""The pieces of a pre-training run, built from a :class:`~ernie_cpt.config.PretrainConfig` (plain functions,
as torchtune's builders): ``pretrain`` assembles its run from them, and so do the benchmarks. A config is
every option group at once, so it goes wherever a group is asked for::

    from ernie_cpt import PretrainConfig, build_corpus, build_model, build_tasks, build_tokenizer, build_trainer
    from ernie_cpt.training.batching import TaskStream
    from ernie_cpt.training.trainer import train
    from schedules import build_schedule

    config = PretrainConfig(corpus=["my_texts/"], tasks=["knowledge_masking", "capitalization"], model_size="tiny")
    corpus = build_corpus(config)                        # annotated documents, training / held-out split
    tokenizer = build_tokenizer(config, corpus.train)    # WordPiece trained on the training documents (cached)
    tasks = build_tasks(config, tokenizer)               # the pre-tasks of config.tasks
    model = build_model(config, tasks, len(tokenizer))   # the sharing architecture with a head per task
    streams = {name: TaskStream(task, task.build_examples(corpus.train), config.batch_size, config.seed)
               for name, task in tasks.items()}          # batches of each task's examples, endlessly
    schedule = build_schedule(config, config.tasks, config.max_steps)  # the curriculum's stages
    train(build_trainer(model, streams, schedule, run_dir, training=config, mixing=config))

``ernie_cpt.pretrain`` adds what a run directory needs around these: the held-out evaluation, the
checkpoints' resume, the tokenizer and configs saved beside them, and the skipping of a task the
corpus gives no examples for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import datasets
from transformers import ErnieConfig, PreTrainedTokenizerBase

from ernie_cpt import distributed
from ernie_cpt.config import PretrainConfig
from ernie_cpt.data.corpus import read_corpus, split_documents
from ernie_cpt.data.sharded_annotation import annotate_on_all_ranks
from ernie_cpt.data.tokenizer import cached_corpus_tokenizer, load_tokenizer
from ernie_cpt.modeling import builder
from ernie_cpt.modeling.architectures import ARCHITECTURES, Architecture
from ernie_cpt.training.task_ids import assign_task_ids, embedding_size
from ernie_cpt.training.trainer import build_trainer
from pretasks import PreTask, get_task

__all__ = ["Corpus", "build_corpus", "build_model", "build_tasks", "build_tokenizer", "build_trainer"]


@dataclass
class Corpus:
    """The annotated documents of a corpus (one row per document: doc_id, title, text and the spaCy
    annotations as offsets), and their split into ``train`` and ``held_out`` documents."""

    documents: datasets.Dataset
    train: datasets.Dataset
    held_out: datasets.Dataset


def build_corpus(config: PretrainConfig,
                 before_annotation: Callable[[datasets.Dataset], None] | None = None) -> Corpus:
    """Read ``config.corpus`` (the bundled sample when empty), annotate it with spaCy (cached in
    ``config.cache_dir``; under torchrun every process parses a share) and hold out ``config.eval_fraction``
    of the documents, seeded by ``config.split_seed``. ``before_annotation`` sees the documents as read (a
    resumed run checks them against its record). Raises UserError for a corpus that cannot be read."""
    corpus = distributed.every_rank(lambda: read_corpus(config))  # each machine reads its path
    if before_annotation is not None:
        before_annotation(corpus)
    documents = annotate_on_all_ranks(corpus, config)
    split = split_documents(documents, config.eval_fraction, config.split_seed)
    return Corpus(documents, split["train"], split["test"])


def build_tokenizer(config: PretrainConfig, train_documents: datasets.Dataset) -> PreTrainedTokenizerBase:
    """The tokenizer of ``--init-from`` or ``--tokenizer``, else a WordPiece tokenizer trained on the
    training documents (``config.vocab_size``; cached in ``config.cache_dir``)."""
    if given := config.init_from or config.tokenizer:
        return load_tokenizer(given)
    return cached_corpus_tokenizer(train_documents, config.vocab_size, config.cache_dir)


def build_tasks(config: PretrainConfig, tokenizer: PreTrainedTokenizerBase,
                names: list[str] | None = None) -> dict[str, PreTask]:
    """The pre-tasks ``names`` (default ``config.tasks``), in order, each with its ``config.task_options``
    (its defaults when absent) and ``config.max_seq_length``, and the task id a new run gives it (the ERNIE
    2.0 tasks 0-6, the others the next free ids in order: :mod:`ernie_cpt.training.task_ids`; a resumed
    run sets the ids it recorded). Raises ConfigError for an unknown name."""
    names = list(names if names is not None else config.tasks)
    ids = assign_task_ids(names)
    tasks = {}
    for name in names:
        cls = get_task(name)
        options = config.task_options.get(name) or cls.options_class()
        tasks[name] = cls(tokenizer, options, config.max_seq_length)
        tasks[name].task_id = ids[name]
    return tasks


def build_model(config: PretrainConfig, tasks: Mapping[str, PreTask], vocab_size: int,
                encoder_config: ErnieConfig | None = None, source: Architecture | None = None,
                label_counts: Mapping[str, Mapping[int, int]] | None = None) -> Architecture:
    """The architecture ``config.architecture`` over a new encoder of ``config.model_size`` (or
    ``encoder_config``, or ``--init-from``'s, or the ernie-cpt model ``source``), with a head per task; each
    task on its own row of the task embedding (row 0 for all with ``config.shared_task_id``). A new masked-LM
    head's bias starts from ``label_counts`` (``config.mlm_bias_init == "prior"``); a new task embedding has
    the rows the tasks' ids need (at least 7). The architecture gets its own options from
    ``config.architecture_options``. Raises UserError for a model that cannot hold ``config.max_seq_length``
    or the tasks' ids."""
    ids = {name: task.task_id for name, task in tasks.items()}
    return builder.build_model(tasks, {name: 0 if config.shared_task_id else i for name, i in ids.items()}, config,
                               config, vocab_size, config.max_seq_length, embedding_size(ids), encoder_config,
                               source, label_counts or {},
                               architecture_options=ARCHITECTURES.options_for(config.architecture,
                                                                              config.option_groups()))
