"""The labelled sets of multi-task fine-tuning (MT-DNN): ``NAME:KIND:TRAIN:TEST`` specs, read and tokenized.

Liu, He, Chen & Gao 2019, "Multi-Task Deep Neural Networks for Natural Language Understanding"
(ACL) fine-tune one encoder on sets of four kinds. Each kind reads these fields of a
.jsonl/.csv/.parquet row (a set's two files share the format):

============================  ================================  =====================================
kind                          fields                            label
============================  ================================  =====================================
``classification``            ``text``                          a string or an integer (a class)
``pair_classification``       ``text``, ``text_pair``           a string or an integer (a class)
``regression``                ``text`` (, ``text_pair``)        a number
``ranking``                   ``text`` (the query),             a list of 0/1, one per candidate
                              ``candidates`` (list of strings)  (1 = relevant; at least one)
============================  ================================  =====================================

Class labels become ids 0..K-1 by the sorted training labels (as ``finetune --train``); a test
class the training file lacks is an error. An example is tokenized as ``[CLS] text [SEP]`` or
``[CLS] text [SEP] text_pair [SEP]`` (a ranking query with each candidate), cut to
``max_seq_length`` tokens. Every error names the set, the file and the row.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ernie_cpt.data.labelled_files import field_values, nonempty_text, read_rows
from ernie_cpt.errors import UserError
from ernie_cpt.messages import describe

# kind -> (head registered in ernie_cpt.modeling.heads, needs text_pair, what its metrics are)
KINDS = {
    "classification": ("sequence_classification", False, "accuracy, macro-F1"),
    "pair_classification": ("sentence_pair", True, "accuracy, macro-F1"),
    "regression": ("regression", False, "Pearson, Spearman, MSE"),
    "ranking": ("ranking", False, "MRR, accuracy@1"),
}
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class SetSpec:
    """One labelled set: its name (the task name), kind, training and test files."""

    name: str
    kind: str
    train: str
    test: str


def parse_spec(text: str) -> SetSpec:
    """``NAME:KIND:TRAIN:TEST`` as a SetSpec. Raises UserError for a malformed spec, an unknown kind or a bad name
    (files are checked when read)."""
    parts = str(text).split(":")
    if len(parts) != 4 or not all(parts):
        raise UserError(f"--task {text!r} must be NAME:KIND:TRAIN:TEST (4 parts separated by ':', paths without "
                        f"':'), e.g. topic:classification:train.jsonl:test.jsonl")
    name, kind, train, test = parts
    if not NAME.fullmatch(name):
        raise UserError(f"--task {text!r}: the name {name!r} must start with a letter and hold only letters, digits, "
                        f"'_' and '-'")
    if kind not in KINDS:
        raise UserError(f"--task {text!r}: unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    return SetSpec(name, kind, train, test)


def parse_specs(texts: list[str]) -> list[SetSpec]:
    """Every ``--task`` spec; names must differ."""
    specs = [parse_spec(text) for text in texts]
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UserError(f"--task names must differ: {', '.join(twice)} is given more than once")
    return specs


@dataclass
class LabelledSet:
    """A set read and tokenized: ``train`` and ``test`` examples (dicts of ``input_ids``,
    ``token_type_ids`` (lists of lists for ranking, one per candidate) and ``labels``),
    ``label_names`` (classification kinds: the label of each class id) and the head's
    ``num_labels`` (classes; 1 for regression; the most candidates of a query for ranking)."""

    spec: SetSpec
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    label_names: list[Any] = field(default_factory=list)
    num_labels: int = 1

    @property
    def head(self) -> str:
        return KINDS[self.spec.kind][0]


def _rows(spec: SetSpec, path: str, split: str) -> list[dict[str, Any]]:
    """The rows of one file, checked for the set's kind: ``text``, ``text_pair``, ``candidates``, ``label``."""
    table = read_rows(path, f"--task {spec.name} {split}")
    hint = "each row of this kind needs it"
    texts = field_values(table, "text", hint)
    paired = KINDS[spec.kind][1] or (spec.kind != "ranking" and "text_pair" in table.fields)
    pairs = field_values(table, "text_pair", hint) if paired else None
    candidates = field_values(table, "candidates", hint) if spec.kind == "ranking" else None
    labels = field_values(table, "label", hint, numbers=spec.kind != "ranking")
    rows = []
    for i, label in enumerate(labels):
        at = f"{table.where} row {i + 1}"
        row = {"text": nonempty_text(texts[i], at, "text"), "label": label}
        if pairs is not None:
            row["text_pair"] = nonempty_text(pairs[i], at, "text_pair")
        if candidates is not None:
            row["candidates"] = _candidates(candidates[i], label, at)
        else:
            _check_label(spec.kind, label, at)
        rows.append(row)
    return rows


def _candidates(value: Any, label: Any, where: str) -> list[str]:
    """A ranking row's candidate texts, checked with its label: what is wrong is said, with the counts and values."""
    if not isinstance(value, list):
        raise UserError(f"{where}: 'candidates' is {describe(value)}; it must be a list of at least 2 strings")
    if len(value) < 2:
        raise UserError(f"{where}: 'candidates' holds {len(value)} text{'' if len(value) == 1 else 's'}; a ranking "
                        f"row needs at least 2 candidates to rank")
    texts = [nonempty_text(item, f"{where} candidate {k + 1}", "candidates") for k, item in enumerate(value)]
    rule = f"a ranking label is a list of 0/1 integers, one per candidate ({len(value)})"
    if not isinstance(label, list):
        raise UserError(f"{where}: 'label' is {describe(label)}; {rule}")
    if len(label) != len(value):
        raise UserError(f"{where}: 'label' has {len(label)} values for {len(value)} candidates; {rule}")
    odd = next((k for k, item in enumerate(label) if isinstance(item, bool) or item not in (0, 1)
                or not isinstance(item, int)), None)
    if odd is not None:
        raise UserError(f"{where}: 'label' value {odd + 1} is {describe(label[odd])}; {rule}")
    if 1 not in label:
        raise UserError(f"{where}: 'label' is {label}: no candidate is relevant; mark at least one with 1")
    return texts


def _check_label(kind: str, label: Any, where: str) -> None:
    """A class label (a string or an integer) or a regression label (a finite number)."""
    if isinstance(label, (bool, list, dict)):
        what = "a regression label must be a number" if kind == "regression" else \
            "a class label must be a string or an integer"
        raise UserError(f"{where}: 'label' is {describe(label)}; {what}")
    if kind == "regression":
        if not isinstance(label, (int, float)):
            raise UserError(f"{where}: 'label' is {describe(label)}; a regression label must be a number")
        if not math.isfinite(label):
            raise UserError(f"{where}: 'label' is {label}; a regression label must be a finite number: fix that "
                            f"row or drop it")
    elif isinstance(label, str) and not label.strip():
        raise UserError(f"{where}: 'label' is empty; give every row a label or drop it")


def _class_ids(spec: SetSpec, train: list[dict], test: list[dict]) -> list[Any]:
    """Class labels replaced by ids in place; returns the label of each id."""
    for split, rows in (("TRAIN", train), ("TEST", test)):
        odd = next((i for i, row in enumerate(rows) if not isinstance(row["label"], (str, int))
                    or type(row["label"]) is not type(train[0]["label"])), None)
        if odd is not None:
            first = "" if odd == 0 and split == "TRAIN" else f", but TRAIN row 1's is {describe(train[0]['label'])}"
            hint = ("; for number labels use the kind regression" if isinstance(rows[odd]["label"], float) else "")
            raise UserError(f"--task {spec.name} {split} file {spec.train if split == 'TRAIN' else spec.test} row "
                            f"{odd + 1}: 'label' is {describe(rows[odd]['label'])}{first}; class labels must be all "
                            f"strings or all integers, in both files{hint}")
    names = sorted({row["label"] for row in train})
    if len(names) < 2:
        raise UserError(f"--task {spec.name}: TRAIN {spec.train} has a single label ({names[0]!r}); a classifier "
                        f"needs at least two")
    ids = {name: i for i, name in enumerate(names)}
    unknown = sorted({row["label"] for row in test} - set(ids))
    if unknown:
        raise UserError(f"--task {spec.name}: TEST {spec.test} has labels {', '.join(map(repr, unknown[:5]))} that "
                        f"TRAIN {spec.train} does not have; add examples of them to TRAIN")
    for row in train + test:
        row["label"] = ids[row["label"]]
    return names


def _tokenize(tokenizer: Any, rows: list[dict], kind: str, max_seq_length: int) -> list[dict[str, Any]]:
    if kind == "ranking":
        queries = [row["text"] for row in rows for _ in row["candidates"]]
        passages = [passage for row in rows for passage in row["candidates"]]
        encoded = tokenizer(queries, passages, truncation=True, max_length=max_seq_length)
        examples, start = [], 0
        for row in rows:
            end = start + len(row["candidates"])
            examples.append({"input_ids": encoded["input_ids"][start:end],
                             "token_type_ids": encoded["token_type_ids"][start:end], "labels": row["label"]})
            start = end
        return examples
    pairs = [row["text_pair"] for row in rows] if "text_pair" in rows[0] else None
    encoded = tokenizer([row["text"] for row in rows], pairs, truncation=True, max_length=max_seq_length)
    label = float if kind == "regression" else int
    return [{"input_ids": ids, "token_type_ids": types, "labels": label(row["label"])}
            for ids, types, row in zip(encoded["input_ids"], encoded["token_type_ids"], rows)]


def load_set(spec: SetSpec, tokenizer: Any, max_seq_length: int) -> LabelledSet:
    """``spec``'s two files read, checked for its kind and tokenized. Raises UserError naming the file and row."""
    train, test = _rows(spec, spec.train, "TRAIN"), _rows(spec, spec.test, "TEST")
    names, num_labels = [], 1
    if spec.kind in ("classification", "pair_classification"):
        names = _class_ids(spec, train, test)
        num_labels = len(names)
    elif spec.kind == "ranking":
        num_labels = max(len(row["candidates"]) for row in train + test)
    return LabelledSet(spec, _tokenize(tokenizer, train, spec.kind, max_seq_length),
                       _tokenize(tokenizer, test, spec.kind, max_seq_length), names, num_labels)
