import logging
from types import SimpleNamespace

import pytest
import torch

from ernie_cpt.modeling.heads import classification_metrics
from ernie_cpt.training.evaluate import explain_rising_loss, rising_loss_note
from schedules.stage import Stage


def test_binary_metrics_by_hand():
    labels = torch.tensor([1, 1, 1, 0, 0, 0, 0, 0])
    predictions = torch.tensor([1, 1, 0, 1, 0, 0, 0, 0])
    metrics = classification_metrics(predictions, labels, 2)
    assert metrics["accuracy"] == pytest.approx(6 / 8)
    assert metrics["majority_accuracy"] == pytest.approx(5 / 8)
    # class 1: precision 2/3, recall 2/3 -> F1 2/3; always predicting 0 never finds class 1
    assert metrics["f1"] == pytest.approx(2 / 3)
    assert metrics["majority_f1"] == 0.0


def test_multiclass_f1_is_the_macro_average_over_present_classes():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    predictions = torch.tensor([0, 1, 1, 1, 2, 0])
    # F1: class 0 P=1/2 R=1/2 -> 1/2; class 1 P=2/3 R=1 -> 0.8; class 2 P=1 R=1/2 -> 2/3; class 3 absent
    metrics = classification_metrics(predictions, labels, 4)
    assert metrics["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # Always predicting class 0 (the first of the tied most frequent): F1 of class 0 = 2*(1/3)/(1+1/3) = 1/2
    assert metrics["majority_f1"] == pytest.approx(0.5 / 3)


def test_no_f1_for_a_vocabulary_sized_label_space():
    metrics = classification_metrics(torch.tensor([5, 7]), torch.tensor([5, 9]), 30000)
    assert "f1" not in metrics and "majority_f1" not in metrics
    assert metrics["accuracy"] == 0.5 and metrics["majority_accuracy"] == 0.5


def _metrics(loss, accuracy):
    return {"loss": loss, "accuracy": accuracy, "majority_accuracy": 0.05, "scored": 547}


def test_a_rising_held_out_loss_with_rising_accuracy_is_explained_once_and_only_for_a_task_in_training(caplog):
    """Issue 27: make demo's held-out loss rose (6.50 -> 6.77) while its accuracy rose (0.080 -> 0.100), unexplained.
    The demo's numbers: evaluations every 200 steps of 32 examples over 445 training examples."""
    stream = SimpleNamespace(epoch=0, rows=range(445))
    trainer = SimpleNamespace(schedule=[Stage({"knowledge_masking": 1200})], streams={"knowledge_masking": stream},
                              lowest_eval={})
    history = [(200, 6.5051, 0.0804), (400, 6.5361, 0.0841), (600, 6.5896, 0.0932), (800, 6.6872, 0.0987)]
    with caplog.at_level(logging.INFO, logger="ernie_cpt.training.evaluate"):
        for step, loss, accuracy in history:
            stream.epoch = step * 32 // 445
            explain_rising_loss(trainer, SimpleNamespace(step=step, stage=0),
                                {"knowledge_masking": _metrics(loss, accuracy)})

    assert caplog.messages == [
        "knowledge_masking: held-out loss 6.5361 is above its lowest (6.5051 at step 200) while accuracy rose "
        "(0.0804 -> 0.0841): after 28 passes over its 445 training examples the model is over-fitting them. It grows "
        "surer of its guesses, so more are right (accuracy) and the wrong ones cost more (loss). More text, or fewer "
        "steps per example, avoids it"]


@pytest.mark.parametrize(("loss", "accuracy", "passes"), [
    (6.50, 0.09, 3), (6.505, 0.09, 3), (6.60, 0.07, 3),
    (6.60, 0.08, 3),  # accuracy the same (a task stuck at its majority class: compare --architectures all on Austen)
    (6.60, 0.09, 0)])  # less than one pass over the examples: not over-fitting them
def test_a_falling_loss_a_rise_within_noise_or_no_rise_in_accuracy_is_not_explained_as_over_fitting(loss, accuracy,
                                                                                                   passes):
    assert rising_loss_note("t", _metrics(loss, accuracy), (200, _metrics(6.50, 0.08)), passes, 445) is None
