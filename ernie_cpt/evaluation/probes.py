"""Transfer without labelled data: linear probes on frozen encoder features, on tasks made from the
held-out documents' spaCy annotations, so that a comparison has a transfer number on any corpus.

Two probe tasks (Conneau & Kiela 2018, "SentEval"; Tenney et al. 2019, "What do you learn from
context? Probing for sentence structure in contextualized word representations", ICLR, whose
entity-typing probe pools a span's token vectors):

* ``entity_type``: the spaCy label (PERSON, GPE, DATE, ...) of an entity, from the mean of the
  last layer's vectors over the entity's tokens, its sentence as context. Examples are split by
  the entity's text (lower-cased), so that no name is in both the training and the test part: the
  probe cannot pass by remembering names.
* ``sentence_adjacency``: whether two sentences of a document follow each other (the other half:
  two sentences of the same document at least 3 apart), from SentEval's pair features
  [u, v, |u - v|, u * v] of the two sentences' mean-pooled vectors, each sentence encoded alone.
  Split by the position of the first sentence in its document (the first 70 % train the probe).

The probe is scikit-learn's logistic regression on standardised features (``max_iter`` 2000),
fitted on the training part and scored by accuracy on the rest, beside the majority class of the
training part. Examples are drawn with a fixed seed, and the features of every encoder are of the
same examples, so every variant and baseline is probed on the same data. An architecture that does
not fold into one ErnieModel (every one but hard) is probed through its first task's
route (its gates, experts or column), the route ``finetune`` gives a new downstream task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from transformers import ErnieModel

from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.training.loading import load_model

Encoder = Callable[[dict[str, torch.Tensor]], torch.Tensor]  # a tokenized batch -> (batch, tokens, hidden)

MAX_EXAMPLES = 1000
MIN_CLASS_EXAMPLES = 10
MAX_TOKENS = 128
BATCH = 32
TRAIN_FRACTION = 0.7


@dataclass
class ProbeSet:
    """One probe task: texts (and second texts of pairs), character spans for span probes, labels,
    and whether each example trains the probe (True) or tests it (False)."""

    name: str
    texts: list[str]
    labels: list[str]
    train: list[bool]
    pairs: list[str] | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)


def _sentences(document: dict[str, Any]) -> list[tuple[int, int]]:
    return list(zip(document["sentence_starts"], document["sentence_ends"]))


def _entity_examples(documents: datasets.Dataset, rng: np.random.Generator) -> ProbeSet | None:
    examples = []
    for document in documents:
        sentences = _sentences(document)
        for start, end, label in zip(document["entity_starts"], document["entity_ends"], document["entity_labels"]):
            context = next(((s, e) for s, e in sentences if s <= start and end <= e), None)
            if context is not None:
                text = document["text"][context[0]:context[1]]
                examples.append((text, (start - context[0], end - context[0]), label,
                                 document["text"][start:end].lower()))
    counts: dict[str, int] = {}
    for example in examples:
        counts[example[2]] = counts.get(example[2], 0) + 1
    examples = [e for e in examples if counts[e[2]] >= MIN_CLASS_EXAMPLES]
    if len({e[2] for e in examples}) < 2:
        return None
    examples = [examples[i] for i in sorted(rng.permutation(len(examples))[:MAX_EXAMPLES])]
    split = GroupShuffleSplit(n_splits=1, train_size=TRAIN_FRACTION, random_state=0)
    train_rows, _ = next(split.split(examples, groups=[e[3] for e in examples]))
    train = np.zeros(len(examples), dtype=bool)
    train[train_rows] = True
    return ProbeSet("entity_type", [e[0] for e in examples], [e[2] for e in examples], train.tolist(),
                    spans=[e[1] for e in examples])


def _adjacency_examples(documents: datasets.Dataset, rng: np.random.Generator) -> ProbeSet | None:
    examples = []
    for document in documents:
        sentences = [document["text"][s:e] for s, e in _sentences(document)]
        cut = TRAIN_FRACTION * len(sentences)
        for i in range(len(sentences) - 1):
            far = [j for j in range(len(sentences)) if abs(j - i) >= 3 and (j < cut) == (i < cut)]
            examples.append((sentences[i], sentences[i + 1], "adjacent", i + 1 < cut))
            if far:
                examples.append((sentences[i], sentences[int(rng.choice(far))], "not adjacent", i < cut))
    if len({e[2] for e in examples}) < 2:
        return None
    examples = [examples[i] for i in sorted(rng.permutation(len(examples))[:MAX_EXAMPLES])]
    return ProbeSet("sentence_adjacency", [e[0] for e in examples], [e[2] for e in examples],
                    [e[3] for e in examples], pairs=[e[1] for e in examples])


def probe_sets(documents: datasets.Dataset, seed: int = 0) -> list[ProbeSet]:
    """The probe tasks the annotated ``documents`` (the held-out split) give, at most 1,000
    examples each; a task with fewer than two labels of 10 examples, or without both a training
    and a test part, is left out."""
    rng = np.random.default_rng(seed)
    made = [_entity_examples(documents, rng), _adjacency_examples(documents, rng)]
    return [p for p in made if p is not None and any(p.train) and not all(p.train)]


def frozen_encoder(model_dir: str | Path) -> Encoder:
    """The last layer's token states of the model saved in ``model_dir``: an ``ErnieModel`` read
    with ``from_pretrained`` from a Hugging Face folder, otherwise the architecture ``load_model``
    reads, through its first task's route. Raises UserError for a folder that holds no model."""
    if (Path(model_dir) / "config.json").is_file():
        encoder = ErnieModel.from_pretrained(str(model_dir), dtype=torch.float32).eval()
        return lambda batch: encoder(**batch).last_hidden_state
    architecture = load_model(model_dir).model.eval()
    task = next(iter(architecture.task_ids))
    return lambda batch: architecture.encode(task, batch)[0]


@torch.no_grad()
def _vectors(model: Encoder, tokenizer: Any, texts: list[str], spans: list[tuple[int, int]] | None) -> np.ndarray:
    """The mean of the last layer's vectors of each text (special tokens and padding left out), or
    of the tokens overlapping each text's character span. Shape (len(texts), hidden size)."""
    rows = []
    for i in range(0, len(texts), BATCH):
        encoded = tokenizer(texts[i:i + BATCH], truncation=True, max_length=MAX_TOKENS, padding=True,
                            return_offsets_mapping=True, return_special_tokens_mask=True, return_tensors="pt")
        offsets, special = encoded.pop("offset_mapping"), encoded.pop("special_tokens_mask")
        states = model({"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                        "token_type_ids": encoded.get("token_type_ids", torch.zeros_like(encoded["input_ids"]))})
        keep = (encoded["attention_mask"] == 1) & (special == 0)
        if spans is not None:
            batch_spans = torch.tensor(spans[i:i + BATCH])[:, None, :]
            inside = (offsets[..., 0] < batch_spans[..., 1]) & (offsets[..., 1] > batch_spans[..., 0])
            keep = keep & inside if bool((keep & inside).any(dim=1).all()) else keep
        weights = keep.float()[..., None]
        rows.append((states * weights).sum(1) / weights.sum(1).clamp(min=1.0))
    return torch.cat(rows).numpy()


def _features(model: Encoder, tokenizer: Any, probe: ProbeSet) -> np.ndarray:
    if probe.pairs is None:
        return _vectors(model, tokenizer, probe.texts, probe.spans)
    u, v = _vectors(model, tokenizer, probe.texts, None), _vectors(model, tokenizer, probe.pairs, None)
    return np.concatenate([u, v, np.abs(u - v), u * v], axis=1)


def probe_scores(model_dir: str | Path, probes: list[ProbeSet]) -> dict[str, dict[str, Any]]:
    """Each probe's ``accuracy`` on its test part with a logistic regression on the frozen features
    of the encoder saved in ``model_dir`` (an exported model folder, see :func:`frozen_encoder`),
    beside ``majority_accuracy`` and the sizes of its parts."""
    model = frozen_encoder(model_dir)
    tokenizer = load_tokenizer(model_dir)
    scores = {}
    for probe in probes:
        features, labels, train = _features(model, tokenizer, probe), np.asarray(probe.labels), np.asarray(probe.train)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        classifier.fit(features[train], labels[train])
        values, counts = np.unique(labels[train], return_counts=True)
        scores[probe.name] = {"accuracy": float(classifier.score(features[~train], labels[~train])),
                              "majority_accuracy": float((labels[~train] == values[counts.argmax()]).mean()),
                              "train_examples": int(train.sum()), "test_examples": int((~train).sum())}
    return scores
