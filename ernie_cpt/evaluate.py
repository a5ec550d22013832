"""Held-out evaluation: each task's loss and accuracy over its scored positions or sequences.

For knowledge masking the accuracy is masked-token accuracy: the fraction of target
positions whose most likely vocabulary id is the original token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from ernie_cpt.model import ErnieMultiTask
from ernie_cpt.options import option


@dataclass
class EvaluationOptions:
    """Evaluation: held-out documents"""

    eval_fraction: float = option(0.05, "Fraction of documents held out for evaluation (at least one; 0 = none)")
    eval_steps: int = option(200, "Evaluate every N steps (and at the end); 0 = only at the end")
    eval_max_examples: int = option(256, "At most this many held-out examples per task")
    eval_batch_size: int = option(64, "Batch size for evaluation")


@torch.no_grad()
def evaluate(model: ErnieMultiTask, batches: dict[str, DataLoader], device: torch.device) -> dict[str, dict]:
    """``{task: {"loss", "accuracy", "scored"}}`` averaged over every scored target."""
    was_training = model.training
    model.eval()
    results = {}
    for task, loader in batches.items():
        loss_sum, correct, scored = 0.0, 0, 0
        for batch in loader:
            out = model(task, {k: v.to(device) for k, v in batch.items()})
            n = out.labels.numel()
            loss_sum += out.loss.item() * n
            correct += (out.logits.argmax(-1) == out.labels).sum().item()
            scored += n
        results[task] = {"loss": loss_sum / max(scored, 1), "accuracy": correct / max(scored, 1), "scored": scored}
    model.train(was_training)
    return results
