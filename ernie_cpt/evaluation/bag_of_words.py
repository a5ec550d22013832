"""The bag-of-words baseline of a comparison: TF-IDF features and logistic regression (scikit-learn).

What a practitioner tries first on a labelled set, so that the report shows whether a pre-trained
encoder beats it. Word uni- and bigrams (``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)``,
terms in at least 2 training texts), L2-regularised multinomial logistic regression (lbfgs, C=1):
deterministic, so it needs no seeds. A pair task joins its two texts with a separator. Scored as
``ernie-cpt finetune`` scores (accuracy and macro-F1 on the test file).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline

from ernie_cpt.data.labelled_data import LabelledData, LabelledSplit


def _texts(split: LabelledSplit) -> list[str]:
    if split.text_pairs is None:
        return split.texts
    return [f"{first} ||| {second}" for first, second in zip(split.texts, split.text_pairs)]


def tfidf_baseline(data: LabelledData) -> dict[str, Any]:
    """Fit on ``data.train``, score on ``data.test``: ``accuracy_mean``, ``macro_f1_mean`` (as
    finetune's keys; the std is 0, there is no seed), ``per_seed`` (one entry, seed None, with
    ``collapsed`` when it predicts one class) and ``majority_accuracy``."""
    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                          LogisticRegression(max_iter=2000))
    model.fit(_texts(data.train), data.train.labels)
    predictions = model.predict(_texts(data.test))
    labels = np.asarray(data.test.labels)
    accuracy = float(accuracy_score(labels, predictions))
    macro_f1 = float(f1_score(labels, predictions, average="macro", zero_division=0))
    majority = np.bincount(data.train.labels).argmax()
    return {"accuracy_mean": accuracy, "accuracy_std": 0.0, "macro_f1_mean": macro_f1, "macro_f1_std": 0.0,
            "majority_accuracy": float((labels == majority).mean()),
            "per_seed": [{"seed": None, "accuracy": accuracy, "macro_f1": macro_f1,
                          **({"collapsed": True} if len(set(predictions.tolist())) == 1 else {})}]}
