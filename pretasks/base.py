"""The pre-task interface: what every ERNIE 2.0 task provides to the trainer.

A task turns annotated documents into *static* examples once (tokenized, cached by
`datasets`), and each static example into a *training* example on demand, with an RNG seeded
per (seed, task, epoch, example), so masks and shuffles are resampled every epoch yet every
run is reproducible. Every ERNIE task is a classification, so a head returns only the logits
and labels of the positions (or sequences) it scores, and the model takes the cross-entropy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import datasets
import numpy as np
from torch import nn
from transformers import ErnieModel, PreTrainedTokenizerBase


class PreTask(ABC):
    """One pre-training task. Subclasses set ``name``, ``task_id`` and ``options_class``."""

    name: ClassVar[str]
    task_id: ClassVar[int]  # row of the ERNIE 2.0 task embedding
    options_class: ClassVar[type]

    def __init__(self, tokenizer: PreTrainedTokenizerBase, options: Any, max_seq_length: int) -> None:
        self.tokenizer = tokenizer
        self.options = options
        self.max_seq_length = max_seq_length

    @abstractmethod
    def build_examples(self, documents: datasets.Dataset, num_proc: int | None = None) -> datasets.Dataset:
        """Static examples from annotated documents; must include a ``length`` column (tokens)."""

    @abstractmethod
    def make_example(self, row: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """A training example: ``input_ids``, ``token_type_ids`` and ``labels`` (a list, -100 = unscored,
        for token-level tasks; an int for sequence-level tasks)."""

    @abstractmethod
    def make_head(self, encoder: ErnieModel) -> nn.Module:
        """The task's head. ``head(sequence_output, pooled_output, labels)`` returns ``(logits, labels)``
        restricted to what is scored."""
