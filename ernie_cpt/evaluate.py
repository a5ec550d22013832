"""Held-out evaluation: each task's loss, accuracy, F1 and the majority-class baseline.

Scores are over what a task scores: target positions for token-level tasks (for knowledge
masking, accuracy is masked-token accuracy), examples for sequence-level ones. ``f1`` is the
F1 of class 1 for 2-way tasks and the macro F1 for 3- to 64-way tasks (absent for masked LM);
``majority_accuracy`` and ``majority_f1`` are the scores of always predicting the most frequent
held-out label: a task has learned something when it beats them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ernie_cpt.model import ErnieMultiTask
from ernie_cpt.options import option

MAX_CLASSES_FOR_F1 = 64


@dataclass
class EvaluationOptions:
    """Evaluation: held-out documents"""

    eval_fraction: float = option(0.05, "Fraction of documents held out for evaluation (at least one; 0 = none)")
    eval_steps: int = option(200, "Evaluate every N steps (and at the end of every stage); 0 = only then")
    eval_max_examples: int = option(256, "At most this many held-out examples per task")
    eval_batch_size: int = option(64, "Batch size for evaluation")
    eval_untrained_tasks: bool = option(False, "Also score tasks no stage has trained yet. Their heads are still at "
                                        "their random initialisation, so such a score measures only what the "
                                        "encoder's features give an untrained linear head: about chance")


def f1_score(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    """F1 of class 1 for 2-way tasks, macro F1 over the classes present in ``labels`` otherwise."""
    confusion = torch.bincount(labels * num_labels + predictions, minlength=num_labels**2).view(num_labels, -1)
    true_positive = confusion.diag().double()
    precision = true_positive / confusion.sum(0).clamp(min=1)
    recall = true_positive / confusion.sum(1).clamp(min=1)
    f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    if num_labels == 2:
        return f1[1].item()
    present = confusion.sum(1) > 0
    return f1[present].mean().item() if present.any() else 0.0


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and (for up to 64 classes) F1 of 1-D label tensors, each with the score of always
    predicting the most frequent label (``majority_accuracy``, ``majority_f1``) to compare with."""
    n = max(labels.numel(), 1)
    majority = torch.bincount(labels, minlength=num_labels).argmax() if labels.numel() else torch.tensor(0)
    metrics = {
        "accuracy": (predictions == labels).sum().item() / n,
        "majority_accuracy": (labels == majority).sum().item() / n,
    }
    if num_labels <= MAX_CLASSES_FOR_F1:
        metrics["f1"] = f1_score(predictions, labels, num_labels)
        metrics["majority_f1"] = f1_score(torch.full_like(labels, int(majority)), labels, num_labels)
    return metrics


@torch.no_grad()
def evaluate(model: ErnieMultiTask, batches: dict[str, DataLoader], device: torch.device) -> dict[str, dict]:
    """``{task: {"loss", "accuracy", "majority_accuracy", ["f1",] "scored"}}`` over every scored target."""
    was_training = model.training
    model.eval()
    results = {}
    for task, loader in batches.items():
        loss_sum, predictions, labels = 0.0, [], []
        for batch in loader:
            out = model(task, {k: v.to(device) for k, v in batch.items()})
            loss_sum += out.loss.item() * out.labels.numel()
            predictions.append(out.logits.argmax(-1).cpu())
            labels.append(out.labels.cpu())
        all_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        all_predictions = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)
        results[task] = {"loss": loss_sum / max(all_labels.numel(), 1),
                         **classification_metrics(all_predictions, all_labels, model.num_labels[task]),
                         "scored": all_labels.numel()}
    model.train(was_training)
    return results
