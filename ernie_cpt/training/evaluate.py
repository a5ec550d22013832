"""Held-out evaluation: each task's loss and its head's metrics over the held-out set.

Scores are over what a task scores: target positions for token-level tasks (for knowledge
masking, accuracy is masked-token accuracy), examples for sequence-level ones. The head decides
the metrics (``ernie_cpt.modeling.heads``): for classification, accuracy, F1 (of class 1 for
2-way tasks, macro for 3- to 64-way tasks, absent for masked LM) and the majority-class scores
``majority_accuracy`` and ``majority_f1``: a task has learned something when it beats them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

import torch
from torch.utils.data import DataLoader

from ernie_cpt.glosses import gloss
from ernie_cpt.heap import release_free_memory
from ernie_cpt.messages import plural
from ernie_cpt.modeling.architectures import Architecture
from ernie_cpt.modeling.heads import Head
from ernie_cpt.training.device import to_device

if TYPE_CHECKING:
    from ernie_cpt.training.train_state import TrainState
    from ernie_cpt.training.trainer import Trainer

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model: Architecture, batches: dict[str, DataLoader], device: torch.device) -> dict[str, dict]:
    """``{task: {"loss", <the head's metrics>, "scored"}}`` over every scored item of each task's
    held-out batches; for classification heads the metrics are ``accuracy``, ``majority_accuracy``
    and (up to 64 classes) ``f1``, ``majority_f1``. Before each task, the heap pages freed since go back to the
    system (:func:`ernie_cpt.heap.release_free_memory`): each task's batches need blocks of other sizes than the
    training steps' and the last task's, and the heap grew around the holes. Without it, the evaluation after a
    Jargon File pretrain rose 110-141 MiB above the last training step; with it, 17-60 MiB at 64 examples a batch
    and not at all at 32, ``--eval-batch-size``'s default."""
    was_training = model.training
    model.eval()
    results = {}
    for task, loader in batches.items():
        release_free_memory()
        head = cast(Head, model.heads[task])
        loss_sum, count, predictions, labels = 0.0, 0, [], []
        for batch in loader:
            out = model(task, to_device(batch, device))
            loss_sum += out.loss.item() * head.count(out.labels)
            count += head.count(out.labels)
            predictions.append(out.predictions.cpu())
            labels.append(out.labels.cpu())
        all_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long)
        all_predictions = torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)
        results[task] = {"loss": loss_sum / max(count, 1), **head.metrics(all_predictions, all_labels),
                         "scored": count}
    model.train(was_training)
    return results


def evaluation_line(step: int, stage_end: int | None, results: dict[str, dict]) -> str:
    """The console's line of an evaluation at ``step`` (the end of stage ``stage_end``, from 1, or None), every
    task's :func:`score_line`; "majority" explained the first time a process prints it."""
    line = (f"Evaluation at step {step}{f' (end of stage {stage_end})' if stage_end else ''}: "
            + "; ".join(f"{task} {score_line(metrics)}" for task, metrics in results.items()))
    if any("majority_accuracy" in metrics for metrics in results.values()) and (text := gloss("majority")):
        line += f" (majority: {text})"
    return line


def score_line(metrics: dict[str, float]) -> str:
    """``loss 0.2613, accuracy 0.9480 (majority 0.8900), F1 0.7012 (majority 0.0000) over 250 targets``:
    one task's held-out scores; a head without accuracy (regression) shows its metrics as they are."""
    if "majority_accuracy" not in metrics:
        shown = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name != "scored")
        return f"{shown} over {plural(int(metrics['scored']), 'item')}"
    line = (f"loss {metrics['loss']:.4f}, accuracy {metrics['accuracy']:.4f} "
            f"(majority {metrics['majority_accuracy']:.4f})")
    if "f1" in metrics:
        line += f", F1 {metrics['f1']:.4f} (majority {metrics['majority_f1']:.4f})"
    return f"{line} over {plural(int(metrics['scored']), 'target')}"


# A held-out loss this far (nats) above its lowest, with accuracy at least as high as then: over-fitting, explained
RISE = 0.01


def rising_loss_note(task: str, metrics: dict[str, float], lowest: tuple[int, dict[str, float]], passes: int,
                     examples: int) -> str | None:
    """Why ``task``'s held-out loss rose above its ``lowest`` (step, metrics) while its accuracy rose, after
    ``passes`` (at least one) over its ``examples`` training examples, in plain words; None otherwise. Measured on
    ``make demo`` (issue 27: 86 passes over 445 examples): the model grows surer of its guesses, the right ones'
    loss falls and the wrong ones' rises (held-out targets given a probability under 5e-5, a loss above 10: 0 %
    at the start, 16 % at the end), so the mean loss of a task can rise while more of its targets are right."""
    step, best = lowest
    if "accuracy" not in metrics or metrics["loss"] <= best["loss"] + RISE or metrics["accuracy"] <= best["accuracy"] \
            or passes < 1:  # over-fitting needs a pass over the examples, and the accuracy to have risen
        return None
    return (f"{task}: held-out loss {metrics['loss']:.4f} is above its lowest ({best['loss']:.4f} at step {step:,}) "
            f"while accuracy rose ({best['accuracy']:.4f} -> {metrics['accuracy']:.4f}): after {passes:,} passes "
            f"over its {examples:,} training examples the model is over-fitting them. It grows surer of its "
            f"guesses, so more are right (accuracy) and the wrong ones cost more (loss). More text, or fewer steps "
            f"per example, avoids it")


def explain_rising_loss(trainer: Trainer, state: TrainState, results: dict[str, dict]) -> None:
    """Say once per task why its held-out loss rises while its accuracy rises (:func:`rising_loss_note`), for the
    tasks the current stage trains (a task left out of it may be forgetting instead)."""
    training = {task for task, n in trainer.schedule[min(state.stage, len(trainer.schedule) - 1)].steps.items() if n}
    for task, metrics in results.items():
        if task in trainer.lowest_eval and trainer.lowest_eval[task] is None:
            continue
        lowest = trainer.lowest_eval.get(task)
        stream = trainer.streams.get(task)
        if lowest is not None and stream is not None and task in training and (
                note := rising_loss_note(task, metrics, lowest, stream.epoch, len(stream.rows))):
            log.info(note)
            trainer.lowest_eval[task] = None  # said once a run
        elif lowest is None or metrics["loss"] < lowest[1]["loss"]:
            trainer.lowest_eval[task] = (state.step, metrics)
