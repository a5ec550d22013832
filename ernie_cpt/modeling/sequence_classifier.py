"""A sequence classifier on any architecture: what ``finetune --train`` fine-tunes when the model
does not fold into one ErnieModel (mmoe, cgc, ple, cross_stitch).

The downstream task is added to the pre-trained architecture as a new task with
``Architecture.add_task``: it is routed as the model's first task is (a copy of that task's gate
for MMoE, Ma et al. 2018; of its experts and gates for CGC and PLE, Tang et al. 2020; of its
column for cross-stitch, Misra et al. 2016; see each architecture's docstring), on row 0 of the
task embedding, the row knowledge masking trains and ``finetune`` feeds hard sharing too. Its
head is BERT's sequence classifier (Devlin et al. 2019): dropout and a linear layer on the pooled
[CLS] state, the same computation ``ErnieForSequenceClassification`` applies to hard sharing.

A model fine-tuned this way can be fine-tuned again, as a fine-tuned hard-sharing encoder can: the
new task is then ``downstream_2`` (``downstream_3``, ...), routed as the last fine-tuned task is
(``finetuned_task`` of the saved folder), so it starts from what that fine-tuning learnt; the
earlier downstream tasks and their heads stay in the model.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import count
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.heads import build_head
from ernie_cpt.modeling.saved_model import save_model_folder

DOWNSTREAM_TASK = "downstream"
DOWNSTREAM_TASK_ID = 0  # knowledge masking's row of the task embedding, as for hard sharing


def downstream_task_name(tasks: Iterable[str]) -> str:
    """``downstream``, or the first of ``downstream_2``, ``downstream_3``, ... not in ``tasks``."""
    taken = set(tasks)
    if DOWNSTREAM_TASK not in taken:
        return DOWNSTREAM_TASK
    return next(name for name in (f"{DOWNSTREAM_TASK}_{k}" for k in count(2)) if name not in taken)


class ArchitectureForSequenceClassification(nn.Module):
    """``architecture`` with a new task ``task`` (default: :func:`downstream_task_name` of its
    tasks) routed as task ``like`` (default: its first task), and its ``sequence_classification``
    head of ``num_labels`` classes, called like ``ErnieForSequenceClassification``. The head's
    weights come from torch's generator at construction. Raises UserError (from ``add_task``) when
    the model already has a task named ``task`` or has no task ``like``."""

    def __init__(self, architecture: Architecture, num_labels: int, task: str | None = None,
                 like: str | None = None) -> None:
        super().__init__()
        task = downstream_task_name(architecture.task_ids) if task is None else task
        architecture.add_task(task, DOWNSTREAM_TASK_ID, like)
        architecture.add_head(task, build_head("sequence_classification", architecture.config, num_labels,
                                               architecture.word_embeddings()))
        self.architecture = architecture
        self.task = task
        self.config = architecture.config  # id2label/label2id set here are saved with the model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """Logits (batch, num_labels) for token ids (batch, tokens); with ``labels`` (batch,) also
        the mean cross-entropy ``loss``."""
        batch = {"input_ids": input_ids,
                 "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
                 "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
                 "labels": labels}
        sequence_output, pooled_output = self.architecture.encode(self.task, batch)
        head = self.architecture.heads[self.task]
        logits, _ = head(sequence_output, pooled_output, batch)
        return SequenceClassifierOutput(loss=None if labels is None else head.loss(logits, labels), logits=logits)

    def save_pretrained(self, folder: str | Path, **_: Any) -> None:
        """Write the whole architecture (every task, the new one with its labels in the encoder
        config's ``id2label``) as ernie-cpt's own model folder, which
        ``ernie_cpt.training.loading.load_model`` reads; ``finetuned_task`` names the task to call."""
        save_model_folder(self.architecture, Path(folder), {"finetuned_task": self.task})
