"""A sequence classifier on any architecture: what ``finetune --train`` fine-tunes when the model
does not fold into one ErnieModel (mmoe, cgc, ple, cross_stitch).

The downstream task is added to the pre-trained architecture as a new task with
``Architecture.add_task``: it is routed as the model's first task is (a copy of that task's gate
for MMoE, Ma et al. 2018; of its experts and gates for CGC and PLE, Tang et al. 2020; of its
column for cross-stitch, Misra et al. 2016; see each architecture's docstring), on row 0 of the
task embedding, the row knowledge masking trains and ``finetune`` feeds hard sharing too. Its
head is BERT's sequence classifier (Devlin et al. 2019): dropout and a linear layer on the pooled
[CLS] state, the same computation ``ErnieForSequenceClassification`` applies to hard sharing.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.heads import Head, build_head
from ernie_cpt.modeling.saved_model import MODEL_JSON, read_model_folder, save_model_folder

DOWNSTREAM_TASK = "downstream"
DOWNSTREAM_TASK_ID = 0  # knowledge masking's row of the task embedding, as for hard sharing


class ArchitectureForSequenceClassification(nn.Module):
    """``architecture``'s task ``task``, whose head is a ``sequence_classification`` head, called like
    ``ErnieForSequenceClassification``. :meth:`for_new_task` adds such a task to a pre-trained model;
    :meth:`from_pretrained` reads back what :meth:`save_pretrained` wrote."""

    def __init__(self, architecture: Architecture, task: str) -> None:
        super().__init__()
        self.architecture = architecture
        self.task = task
        self.config = architecture.config  # id2label/label2id set here are saved with the model

    @classmethod
    def for_new_task(cls, architecture: Architecture, num_labels: int,
                     like: str | None = None) -> ArchitectureForSequenceClassification:
        """``architecture`` with a new task of ``num_labels`` classes, named ``downstream`` (``downstream_2``,
        ... when the model has it already, e.g. fine-tuned before), routed as task ``like`` (default: the
        model's first task), its head's weights drawn from torch's generator."""
        names = itertools.chain([DOWNSTREAM_TASK], (f"{DOWNSTREAM_TASK}_{n}" for n in itertools.count(2)))
        task = next(name for name in names if name not in architecture.task_ids)
        architecture.add_task(task, DOWNSTREAM_TASK_ID, like)
        architecture.add_head(task, build_head("sequence_classification", architecture.config, num_labels,
                                               architecture.word_embeddings()))
        return cls(architecture, task)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> ArchitectureForSequenceClassification:
        """The model ``finetune --output-dir`` saved in ``folder`` for a routed architecture. Raises
        UserError for a folder that is not such a model."""
        architecture, description = read_model_folder(Path(folder))
        task = description.get("finetuned_task")
        if task not in architecture.task_ids:
            raise UserError(f"{folder} holds no model saved by finetune --output-dir (no finetuned_task in its "
                            f"{MODEL_JSON}); read it with ernie_cpt.training.loading.load_model")
        return cls(architecture, task).eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None) -> SequenceClassifierOutput:
        """Logits (batch, num_labels) for token ids (batch, tokens); with ``labels`` (batch,) also
        the mean cross-entropy ``loss``."""
        batch: dict[str, Any] = {  # labels may be None: the head then returns None labels
            "input_ids": input_ids,
            "attention_mask": torch.ones_like(input_ids) if attention_mask is None else attention_mask,
            "token_type_ids": torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids,
            "labels": labels}
        sequence_output, pooled_output = self.architecture.encode(self.task, batch)
        head = cast(Head, self.architecture.heads[self.task])
        logits, _ = head(sequence_output, pooled_output, batch)
        return SequenceClassifierOutput(loss=None if labels is None else head.loss(logits, labels), logits=logits)

    def save_pretrained(self, folder: str | Path, **_: Any) -> None:
        """Write the whole architecture (every task, this one with its labels in the encoder config's
        ``id2label``) as ernie-cpt's own model folder, with ``finetuned_task`` naming this task;
        :meth:`from_pretrained` and ``ernie_cpt.training.loading.load_model`` read it."""
        save_model_folder(self.architecture, Path(folder), {"finetuned_task": self.task})
