import pytest
import torch

from ernie_cpt.modeling.heads import classification_metrics


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
