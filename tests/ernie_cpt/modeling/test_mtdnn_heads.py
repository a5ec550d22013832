"""The regression and ranking heads of MT-DNN fine-tuning, against hand-computed small cases."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import pearsonr, spearmanr
from transformers import ErnieConfig

from ernie_cpt.modeling.heads import HEADS, RankingHead, RegressionHead, _random_mrr, build_head, ranking_metrics

HIDDEN = 4


def _config() -> ErnieConfig:
    return ErnieConfig(hidden_size=HIDDEN, hidden_dropout_prob=0.0)


def _scoring_first_feature(head: torch.nn.Module) -> torch.nn.Module:
    """Make the head's linear score read the first pooled feature as it is: score = pooled[:, 0]."""
    with torch.no_grad():
        head.score.weight.zero_()
        head.score.weight[0, 0] = 1.0
        head.score.bias.zero_()
    return head.eval()


def _batch(rows: int, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"attention_mask": torch.ones(rows, 3, dtype=torch.long),
            "token_type_ids": torch.tensor([[0, 0, 1]] * rows), "labels": labels}


def _pooled(scores: list[float]) -> torch.Tensor:
    pooled = torch.zeros(len(scores), HIDDEN)
    pooled[:, 0] = torch.tensor(scores)
    return pooled


def test_heads_are_registered_and_rebuilt_by_name():
    assert isinstance(build_head("regression", _config(), 1, None), RegressionHead)
    assert isinstance(build_head("ranking", _config(), 5, None), RankingHead)
    assert {"regression", "ranking"} <= set(HEADS)


def test_regression_loss_is_the_mean_squared_error():
    head = _scoring_first_feature(RegressionHead(_config()))
    labels = torch.tensor([1.0, 3.0, 2.0, 5.0])
    logits, out_labels = head(torch.zeros(4, 3, HIDDEN), _pooled([1, 2, 3, 4]), _batch(4, labels))
    assert logits.tolist() == [1.0, 2.0, 3.0, 4.0] and out_labels is labels
    # squared errors 0, 1, 1, 1
    assert head.loss(logits, labels).item() == pytest.approx(0.75)
    assert head.loss(logits, labels, reduction="sum").item() == pytest.approx(3.0)
    assert head.count(labels) == 4


def test_regression_metrics_by_hand_and_against_scipy():
    head = RegressionHead(_config())
    predictions, labels = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1.0, 3.0, 2.0, 5.0])
    metrics = head.metrics(predictions, labels)
    # deviations (-1.5, -.5, .5, 1.5) and (-1.75, .25, -.75, 2.25): r = 5.5 / sqrt(5 * 8.75)
    assert metrics["pearson"] == pytest.approx(5.5 / math.sqrt(5 * 8.75))
    assert metrics["pearson"] == pytest.approx(pearsonr(predictions.numpy(), labels.numpy()).statistic)
    # ranks of the labels (1, 3, 2, 4): rho = 1 - 6 * 2 / (4 * 15)
    assert metrics["spearman"] == pytest.approx(0.8)
    assert metrics["spearman"] == pytest.approx(spearmanr(predictions.numpy(), labels.numpy()).statistic)
    assert metrics["mse"] == pytest.approx(0.75)
    assert metrics["mean_predictor_mse"] == pytest.approx(8.75 / 4)  # the labels' population variance


def test_constant_predictions_have_no_correlation():
    metrics = RegressionHead(_config()).metrics(torch.full((3,), 0.5), torch.tensor([0.0, 0.5, 1.0]))
    assert (metrics["pearson"], metrics["spearman"]) == (0.0, 0.0)
    assert metrics["mse"] == pytest.approx(0.5 / 3)


def test_ranking_forward_lays_each_querys_pairs_on_its_row():
    head = _scoring_first_feature(RankingHead(_config(), num_labels=4))
    # query 1: 3 candidates, the first relevant; query 2: 2 candidates, the second relevant
    labels = torch.tensor([[1, 0, 0], [0, 1, -100]])
    logits, out = head(torch.zeros(5, 3, HIDDEN), _pooled([2, 0, 0, 0, math.log(3)]), _batch(5, labels))
    inf = float("-inf")
    assert logits.tolist() == [[2.0, 0.0, 0.0, inf], [0.0, pytest.approx(math.log(3)), inf, inf]]
    assert out.tolist() == [[1, 0, 0, -100], [0, 1, -100, -100]]
    # -log softmax of the relevant one: log(1 + 2 e^-2) for query 1, -log(3/4) for query 2
    expected = [math.log(1 + 2 * math.exp(-2)), math.log(4 / 3)]
    assert head.loss(logits, out).item() == pytest.approx(sum(expected) / 2)
    assert head.loss(logits, out, reduction="sum").item() == pytest.approx(sum(expected))
    assert head.count(out) == 2 and head.correct(logits, out) == 2


def test_ranking_loss_with_several_relevant_candidates_averages_them():
    head = RankingHead(_config(), num_labels=3)
    # uniform scores over 3 candidates, 2 relevant: the mean of -log(1/3) over them
    assert head.loss(torch.zeros(1, 3), torch.tensor([[1, 1, 0]])).item() == pytest.approx(math.log(3))


def test_ranking_metrics_by_hand():
    inf = float("-inf")
    scores = torch.tensor([[2.0, 0.0, 0.0], [math.log(3), 0.0, inf]])
    labels = torch.tensor([[1, 0, 0], [0, 1, -100]])
    metrics = ranking_metrics(scores, labels)
    # query 1's relevant candidate ranks 1st, query 2's 2nd
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert metrics["accuracy"] == pytest.approx(1 / 2)
    # random ordering: E[1/rank] = (1 + 1/2 + 1/3) / 3 of 3 candidates, (1 + 1/2) / 2 of 2
    assert metrics["random_mrr"] == pytest.approx((11 / 18 + 3 / 4) / 2)
    assert metrics["random_accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert RankingHead(_config(), num_labels=3).correct(scores, labels) == 1


def test_tied_scores_rank_the_relevant_candidate_last_among_them():
    metrics = ranking_metrics(torch.zeros(1, 4), torch.tensor([[0, 0, 1, 0]]))
    assert (metrics["mrr"], metrics["accuracy"]) == (pytest.approx(1 / 4), 0.0)


def test_random_mrr_with_several_relevant():
    # 3 candidates, 2 relevant: the first relevant is 1st with probability 2/3, else 2nd
    assert _random_mrr(3, 2) == pytest.approx(2 / 3 + 1 / 3 / 2)
    assert _random_mrr(5, 1) == pytest.approx(sum(1 / r for r in range(1, 6)) / 5)
