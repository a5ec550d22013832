"""Task heads: each scores one task on the encoder's outputs and owns its loss and metrics.

A head is called as ``head(sequence_output, pooled_output, batch)`` with the token states
(batch, tokens, hidden), the pooled [CLS] state (batch, hidden) and the batch (its ``labels``,
and for pair heads its ``token_type_ids`` and ``attention_mask``), and returns
``(logits, labels)`` of what it scores only. ``loss`` turns them into the training loss (mean
or sum over the scored items), ``metrics`` scores a whole held-out set. ``task_output`` (what
``Architecture.forward`` calls) gives the loss, the labels and the predictions at once as a
``TaskOutput``; the masked-LM head computes them a bounded chunk of targets at a time. Heads are registered
by name in ``HEADS``; a task names its head (``PreTask.head``), and a head builder is called as
``builder(config, num_labels, word_embeddings)``.

Classification heads (every ERNIE 2.0 task) use cross-entropy. Their metrics are accuracy and,
for up to 64 classes, F1 (of class 1 for 2-way tasks, macro over the classes present in the
labels otherwise; scikit-learn's ``f1_score``), each beside the score of always predicting the
most frequent label (``majority_accuracy``, ``majority_f1``): a task has learned something
when it beats them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ernie_cpt.modeling.linear_cross_entropy import linear_cross_entropy
from ernie_cpt.modeling.task_output import TaskOutput
from ernie_cpt.registry import Registry
from pretasks.base import IGNORE_INDEX

if TYPE_CHECKING:  # transformers loads in seconds; --help imports the architectures, which import the heads
    from transformers import ErnieConfig

MAX_CLASSES_FOR_F1 = 64

HeadBuilder = Callable[["ErnieConfig", int, nn.Embedding], "Head"]
HEADS: Registry[HeadBuilder] = Registry("head")


def classification_metrics(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> dict[str, float]:
    """Accuracy and (for up to 64 classes) F1 of 1-D label tensors, each with the score of always
    predicting the most frequent label (``majority_accuracy``, ``majority_f1``) to compare with.
    F1 is of class 1 for 2 classes, the macro F1 over the classes present in ``labels`` otherwise."""
    n = max(labels.numel(), 1)
    majority = torch.bincount(labels, minlength=num_labels).argmax() if labels.numel() else torch.tensor(0)
    metrics = {
        "accuracy": (predictions == labels).sum().item() / n,
        "majority_accuracy": (labels == majority).sum().item() / n,
    }
    if num_labels <= MAX_CLASSES_FOR_F1:
        metrics["f1"] = f1(predictions, labels, num_labels)
        metrics["majority_f1"] = f1(torch.full_like(labels, int(majority)), labels, num_labels)
    return metrics


def f1(predictions: torch.Tensor, labels: torch.Tensor, num_labels: int) -> float:
    """F1 of class 1 for 2-way tasks, macro F1 over the classes present in ``labels`` otherwise."""
    from sklearn.metrics import f1_score  # scikit-learn loads in a second: only where scores are taken

    if labels.numel() == 0:
        return 0.0
    y_true, y_pred = labels.cpu().numpy(), predictions.cpu().numpy()
    if num_labels == 2:
        return float(f1_score(y_true, y_pred, labels=[1], average="macro", zero_division=0))
    return float(f1_score(y_true, y_pred, labels=sorted(set(y_true.tolist())), average="macro", zero_division=0))


class Head(nn.Module):
    """A classification head: cross-entropy loss, argmax predictions, accuracy and F1 metrics.
    Subclasses define ``forward``; heads of other kinds (regression, ranking) override the rest."""

    def __init__(self, num_labels: int) -> None:
        super().__init__()
        self.num_labels = num_labels

    def task_output(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor | None,
              batch: dict[str, torch.Tensor]) -> TaskOutput:
        """The head's forward pass as a ``TaskOutput``: the mean loss, the labels and the predictions of
        the scored items; the logits and the summed loss are those of ``forward`` and ``loss``."""
        logits, labels = self(sequence_output, pooled_output, batch)
        return TaskOutput(self.loss(logits, labels), labels, self.predictions(logits), lambda: logits,
                          lambda: self.loss(logits, labels, reduction="sum"))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy in fp32, averaged (``mean``) or summed (``sum``) over the scored items. A batch
        with nothing to score (no target token) costs nothing: 0, with a graph whose gradients are 0,
        where the mean over no item would be NaN."""
        if labels.numel() == 0:
            return logits.float().sum() * 0.0
        return F.cross_entropy(logits.float(), labels, reduction=reduction)

    def count(self, labels: torch.Tensor) -> int:
        """The number of items the loss averages over."""
        return len(labels)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """What ``metrics`` compares with the labels: the predicted class of each item, the first of
        equal maxima (``argmax``'s answer; ``max`` gives it 4x faster on CPU: 2 against 9 ms for a masked-LM
        step's (600, 16k) logits, and the training accuracy asks for it every step)."""
        return logits.max(-1).indices

    def correct(self, predictions: torch.Tensor, labels: torch.Tensor) -> int:
        """How many items are predicted right (a batch's accuracy, the KPI of DTP weighting), from
        ``predictions`` (what ``predictions`` gives)."""
        return int((predictions == labels).sum())

    def metrics(self, predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """The held-out scores of a whole evaluation set (1-D tensors)."""
        return classification_metrics(predictions, labels, self.num_labels)


@HEADS.register("masked_lm")
class MaskedLMHead(Head):
    """BERT's MLM head (dense + activation + LayerNorm, then the vocabulary projection) with the
    projection tied to the word embeddings (Devlin et al. 2019). Logits (targets, vocabulary) are
    computed only at target positions, never over the whole sequence; ``task_output`` (training and
    evaluation) computes them a chunk of targets at a time and never holds them all
    (:func:`ernie_cpt.modeling.linear_cross_entropy.linear_cross_entropy`, after Wijmans et al. 2024),
    so its memory does not grow with the vocabulary or the targets of a batch; ``forward`` gives them
    whole, (targets, vocabulary), for a caller that asks for them."""

    def __init__(self, config: ErnieConfig, num_labels: int, word_embeddings: nn.Embedding) -> None:
        super().__init__(num_labels)
        from transformers.models.ernie.modeling_ernie import ErniePredictionHeadTransform

        self.transform = ErniePredictionHeadTransform(config)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # A tuple keeps the tied embedding out of this module's parameters and state dict.
        self._tied = (word_embeddings,)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor | None,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        targets = labels != IGNORE_INDEX
        hidden = self.transform(sequence_output[targets])
        return F.linear(hidden, self._tied[0].weight, self.bias), labels[targets]

    def task_output(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor | None,
              batch: dict[str, torch.Tensor]) -> TaskOutput:
        """The loss and predictions of ``forward``'s logits, equal up to float rounding, computed a chunk
        of targets at a time (``linear_cross_entropy``); ``logits`` is made only when read."""
        labels = batch["labels"]
        targets = labels != IGNORE_INDEX
        hidden, labels = self.transform(sequence_output[targets]), labels[targets]
        weight = self._tied[0].weight
        loss_sum, predictions = linear_cross_entropy(hidden, weight, self.bias, labels)
        return TaskOutput(loss_sum / max(len(labels), 1), labels, predictions,
                          lambda: F.linear(hidden, weight, self.bias), lambda: loss_sum)

    def init_bias_from_prior(self, target_counts: Mapping[int, int]) -> None:
        """Set the output bias (vocabulary,) to the log of each token's add-one smoothed frequency
        among ``target_counts`` (vocabulary id -> how often it is a target in a sample of training
        examples), so that training starts from the targets' prior instead of a uniform guess.

        This is the prior initialisation of Lin et al. 2017 ("Focal Loss for Dense Object
        Detection", §4.1), in its softmax form. A vocabulary-sized bias moves by about the learning
        rate per Adam step, so learning a prior spread over 10 nats from zeros takes thousands of
        steps; a short run instead stays below always predicting the most frequent target.
        Raises ValueError for an id outside the vocabulary."""
        frequency = torch.ones(self.bias.shape, dtype=torch.float64)
        ids = torch.tensor(list(target_counts), dtype=torch.long)
        if len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= len(frequency)):
            raise ValueError(f"target ids must lie in [0, {len(frequency)}); got {int(ids.min())}..{int(ids.max())}")
        frequency[ids] += torch.tensor(list(target_counts.values()), dtype=torch.float64)
        with torch.no_grad():
            self.bias.copy_((frequency / frequency.sum()).log())


@HEADS.register("token_classification")
class TokenClassificationHead(Head):
    """Dropout and a linear classifier on every labelled token (BERT's token classifier); logits
    (labelled tokens, classes)."""

    def __init__(self, config: ErnieConfig, num_labels: int, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor | None,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        labels = batch["labels"]
        targets = labels != IGNORE_INDEX
        return self.classifier(self.dropout(sequence_output[targets])), labels[targets]


@HEADS.register("sequence_classification")
class SequenceClassificationHead(Head):
    """Dropout and a linear classifier on the pooled [CLS] state (BERT's sequence classifier, and
    ``ErnieForSequenceClassification``'s); logits (batch, classes)."""

    def __init__(self, config: ErnieConfig, num_labels: int, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.classifier(self.dropout(pooled_output)), batch["labels"]


def segment_means(sequence_output: torch.Tensor, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean token states (batch, hidden) of segment A (token type 0, [CLS] left out) and of
    segment B (token type 1), padding left out."""
    real = batch["attention_mask"].bool()
    first = real & (batch["token_type_ids"] == 0)
    first[:, 0] = False
    return _masked_mean(sequence_output, first), _masked_mean(sequence_output, real & (batch["token_type_ids"] == 1))


def _masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1)


@HEADS.register("sentence_pair")
class SentencePairHead(Head):
    """A classifier on the pooled [CLS] state and on the two segments compared: with u and v the
    mean token states of segment A and segment B (:func:`segment_means`), the features are
    ``[cls, u, v, |u - v|, u * v]`` (batch, 5 x hidden), the pair features of InferSent (Conneau
    et al. 2017, "Supervised Learning of Universal Sentence Representations from Natural Language
    Inference Data") and Sentence-BERT (Reimers & Gurevych 2019). The [CLS] state alone must
    learn, through attention, which tokens of A recur in B before it can tell related segments
    from unrelated ones, and a randomly initialised encoder does not learn that in a short run;
    ``u * v`` gives that comparison from the first step."""

    def __init__(self, config: ErnieConfig, num_labels: int, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(5 * config.hidden_size, num_labels)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        u, v = segment_means(sequence_output, batch)
        features = torch.cat([pooled_output, u, v, (u - v).abs(), u * v], dim=-1)
        return self.classifier(self.dropout(features)), batch["labels"]


def build_head(name: str, config: ErnieConfig, num_labels: int, word_embeddings: nn.Embedding) -> Head:
    """The head registered as ``name`` for ``num_labels`` classes (or vocabulary ids)."""
    return HEADS.get(name)(config, num_labels, word_embeddings)


def head_name(head: Head) -> str:
    """The name ``head``'s class is registered under in ``HEADS`` (what :func:`build_head` takes)."""
    for name, builder in HEADS.items():
        if builder is type(head):
            return name
    raise ValueError(f"{type(head).__name__} is not a registered head class")


def pair_features(sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                  batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[cls, u, v, |u - v|, u * v]`` (batch, 5 x hidden), u and v the mean token states of segment A and
    segment B (:func:`segment_means`; v is 0 for an input with one segment)."""
    u, v = segment_means(sequence_output, batch)
    return torch.cat([pooled_output, u, v, (u - v).abs(), u * v], dim=-1)


@HEADS.register("regression")
class RegressionHead(Head):
    """A real-valued score of a text or a text pair: dropout and a linear map of the pair features
    (:func:`pair_features`) to one number, trained with the mean squared error, as MT-DNN's
    text-similarity head (Liu et al. 2019, "Multi-Task Deep Neural Networks for Natural Language
    Understanding", ACL, section 3.1: STS-B). Logits (batch,) of the scores, labels (batch,) float.

    Metrics of a held-out set: ``mse``, ``pearson`` and ``spearman`` (``scipy.stats``; 0 where the
    predictions or the labels are constant, for which correlation is undefined) and
    ``mean_predictor_mse``, the MSE of always predicting the labels' mean (their population
    variance): a head has learned something when its MSE is below it and its correlations above 0.
    ``num_labels`` is 1. A regression head has no accuracy: ``correct`` counts exact matches."""

    def __init__(self, config: ErnieConfig, num_labels: int = 1, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(1)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.score = nn.Linear(5 * config.hidden_size, 1)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = pair_features(sequence_output, pooled_output, batch)
        return self.score(self.dropout(features)).squeeze(-1), batch["labels"]

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Squared error in fp32, averaged (``mean``) or summed (``sum``) over the items."""
        if labels.numel() == 0:
            return logits.float().sum() * 0.0
        return F.mse_loss(logits.float(), labels.float(), reduction=reduction)

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.float()

    def metrics(self, predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return regression_metrics(predictions, labels)


def regression_metrics(predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``mse``, ``pearson``, ``spearman`` (0 when either side is constant) and ``mean_predictor_mse``
    of 1-D float tensors."""
    from scipy.stats import pearsonr, spearmanr  # scipy loads in a second: only where scores are taken

    y_pred, y_true = predictions.double().cpu().numpy(), labels.double().cpu().numpy()
    if y_true.size == 0:
        return {"mse": 0.0, "pearson": 0.0, "spearman": 0.0, "mean_predictor_mse": 0.0}
    varied = y_true.size > 1 and y_pred.std() > 0 and y_true.std() > 0
    return {"mse": float(((y_pred - y_true) ** 2).mean()),
            "pearson": float(pearsonr(y_pred, y_true).statistic) if varied else 0.0,
            "spearman": float(spearmanr(y_pred, y_true).statistic) if varied else 0.0,
            "mean_predictor_mse": float(y_true.var())}


@HEADS.register("ranking")
class RankingHead(Head):
    """Relevance ranking of a query's candidate passages, MT-DNN's pairwise ranking output (Liu et al.
    2019, section 3.1, eq. 5-6, after DSSM, Huang et al. 2013): every (query, passage) pair, encoded
    as ``[CLS] query [SEP] passage [SEP]``, gets a score from dropout and a linear map of its pair
    features (:func:`pair_features`), and the scores of a query's candidates go through a softmax
    over them. The loss is the cross-entropy between that softmax and the relevance labels
    normalised to sum to 1: with one relevant passage A+, ``-log P(A+ | Q)``, MT-DNN's listwise
    loss; with several, the mean of ``-log P(A | Q)`` over the relevant ones.

    The batch holds the pairs of its queries in query order, (pairs, tokens); ``labels`` (queries,
    candidates of the batch's longest query) is 1 for a relevant candidate, 0 for another and -100
    where a query has fewer candidates. Logits and labels come back padded to ``num_labels``
    columns, the most candidates a query of the set has (so held-out batches line up), with
    padding scored -inf and labelled -100. A query counts as one item (``count``); ``correct``
    counts the queries whose top-scored candidate is relevant.

    Metrics: ``accuracy`` (accuracy@1), ``mrr`` (the mean reciprocal rank of the best-ranked relevant
    candidate), and ``random_accuracy``, ``random_mrr``, their expected values under a random
    ordering of each query's candidates: a head has learned something when it beats them."""

    def __init__(self, config: ErnieConfig, num_labels: int, word_embeddings: nn.Embedding | None = None) -> None:
        super().__init__(num_labels)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.score = nn.Linear(5 * config.hidden_size, 1)

    def forward(self, sequence_output: torch.Tensor, pooled_output: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(self.dropout(pair_features(sequence_output, pooled_output, batch))).squeeze(-1)
        labels = batch["labels"]
        padding = self.num_labels - labels.shape[1]
        if padding < 0:
            raise ValueError(f"a query has {labels.shape[1]} candidates, more than the head's {self.num_labels}")
        labels = F.pad(labels, (0, padding), value=IGNORE_INDEX)
        grid = scores.new_full(labels.shape, float("-inf"))
        grid[labels != IGNORE_INDEX] = scores
        return grid, labels

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Listwise softmax cross-entropy per query (see the class docstring), mean or sum over queries."""
        if labels.numel() == 0:
            return logits.float().sum() * 0.0
        real = labels != IGNORE_INDEX
        log_p = torch.log_softmax(logits.float(), dim=-1).masked_fill(~real, 0.0)
        target = labels.clamp(min=0).float()
        per_query = -(target * log_p).sum(-1) / target.sum(-1).clamp(min=1)
        return per_query.mean() if reduction == "mean" else per_query.sum()

    def predictions(self, logits: torch.Tensor) -> torch.Tensor:
        """The score grid itself (queries, num_labels), -inf at padding: ``metrics`` ranks it."""
        return logits.float()

    def correct(self, predictions: torch.Tensor, labels: torch.Tensor) -> int:
        top = predictions.argmax(-1, keepdim=True)
        return int((labels.gather(-1, top) == 1).sum())

    def metrics(self, predictions: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return ranking_metrics(predictions, labels)


def ranking_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """``accuracy`` (@1), ``mrr`` and their random-ordering expectations ``random_accuracy`` and
    ``random_mrr`` for score grids (queries, candidates) with labels 1 (relevant), 0 or -100 (none);
    queries without a relevant candidate are left out. Ties rank a candidate after the ones tied with it."""
    real, relevant = labels != IGNORE_INDEX, labels == 1
    keep = relevant.any(-1)
    scores, real, relevant = scores[keep].double(), real[keep], relevant[keep]
    if scores.shape[0] == 0:
        return {"accuracy": 0.0, "mrr": 0.0, "random_accuracy": 0.0, "random_mrr": 0.0}
    scores = scores.masked_fill(~real, float("-inf"))
    # rank of each candidate: 1 + the candidates scored at least as high, itself left out
    rank = (scores.unsqueeze(-1) <= scores.unsqueeze(-2)).sum(-1)
    best = rank.masked_fill(~relevant, torch.iinfo(rank.dtype).max).min(-1).values.double()
    n, k = real.sum(-1).double(), relevant.sum(-1).double()
    random_mrr = [_random_mrr(int(a), int(b)) for a, b in zip(n.tolist(), k.tolist())]
    return {"accuracy": (best == 1).double().mean().item(), "mrr": (1 / best).mean().item(),
            "random_accuracy": (k / n).mean().item(), "random_mrr": sum(random_mrr) / len(random_mrr)}


def _random_mrr(n: int, k: int) -> float:
    """The expected reciprocal rank of the first of ``k`` relevant items among ``n`` shuffled uniformly:
    P(first relevant at rank r) = C(n - r, k - 1) / C(n, k)."""
    from math import comb

    return sum(comb(n - r, k - 1) / comb(n, k) / r for r in range(1, n - k + 2))
