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

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie_cpt.data.cells import describe, text_cell
from ernie_cpt.data.labelled_data import read_table
from ernie_cpt.errors import UserError

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


def _column(table: Any, name: str, where: str, needed: bool = True) -> list | None:
    if name not in table.column_names:
        if needed:
            raise UserError(f"{where} has no '{name}' field (it has: {', '.join(table.column_names)}); each row needs "
                            f"{name!r}")
        return None
    return table[name]


def _text(value: Any, where: str, name: str) -> str:
    text = text_cell(value, where, name)
    if text is None:
        raise UserError(f"{where}: '{name}' is missing; fill it in or drop the row")
    return text


def _rows(spec: SetSpec, path: str, split: str) -> list[dict[str, Any]]:
    """The rows of one file, checked for the set's kind: ``text``, ``text_pair``, ``candidates``, ``label``."""
    flag = f"--task {spec.name} {split}"
    table = read_table(path, flag)
    where = f"{flag} file {path}"
    texts = _column(table, "text", where)
    pairs = _column(table, "text_pair", where, needed=KINDS[spec.kind][1])
    candidates = _column(table, "candidates", where) if spec.kind == "ranking" else None
    labels = _column(table, "label", where)
    rows = []
    for i, label in enumerate(labels):
        at = f"{where} row {i + 1}"
        row = {"text": _text(texts[i], at, "text"), "label": label}
        if pairs is not None and spec.kind != "ranking":
            row["text_pair"] = _text(pairs[i], at, "text_pair")
        if candidates is not None:
            row["candidates"] = _candidates(candidates[i], label, at)
        rows.append(row)
    return rows


def _candidates(value: Any, label: Any, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(item, str) for item in value):
        raise UserError(f"{where}: 'candidates' is {describe(value)}; it must be a list of at least 2 strings")
    if (not isinstance(label, list) or len(label) != len(value)
            or any(item not in (0, 1) or isinstance(item, bool) for item in label) or 1 not in label):
        raise UserError(f"{where}: 'label' is {describe(label)}; a ranking label is a list of 0/1, one per candidate "
                        f"({len(value)}), with at least one 1 (relevant)")
    return value


def _class_ids(spec: SetSpec, train: list[dict], test: list[dict]) -> list[Any]:
    """Class labels replaced by ids in place; returns the label of each id."""
    for split, rows in (("TRAIN", train), ("TEST", test)):
        odd = next((i for i, row in enumerate(rows) if isinstance(row["label"], bool)
                    or not isinstance(row["label"], (str, int)) or type(row["label"]) is not type(train[0]["label"])),
                   None)
        if odd is not None:
            raise UserError(f"--task {spec.name} {split} row {odd + 1}: 'label' is {describe(rows[odd]['label'])}; "
                            f"class labels must be all strings or all integers, in both files")
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


def _check_numbers(spec: SetSpec, split: str, rows: list[dict]) -> None:
    odd = next((i for i, row in enumerate(rows)
                if isinstance(row["label"], bool) or not isinstance(row["label"], (int, float))), None)
    if odd is not None:
        raise UserError(f"--task {spec.name} {split} row {odd + 1}: 'label' is {describe(rows[odd]['label'])}; a "
                        f"regression label must be a number")


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
    for split, path in (("TRAIN", spec.train), ("TEST", spec.test)):
        if not Path(path).is_file():
            raise UserError(f"--task {spec.name}: {split} file {path} does not exist")
    train, test = _rows(spec, spec.train, "TRAIN"), _rows(spec, spec.test, "TEST")
    names, num_labels = [], 1
    if spec.kind in ("classification", "pair_classification"):
        names = _class_ids(spec, train, test)
        num_labels = len(names)
    elif spec.kind == "regression":
        _check_numbers(spec, "TRAIN", train)
        _check_numbers(spec, "TEST", test)
    else:
        num_labels = max(len(row["candidates"]) for row in train + test)
    return LabelledSet(spec, _tokenize(tokenizer, train, spec.kind, max_seq_length),
                       _tokenize(tokenizer, test, spec.kind, max_seq_length), names, num_labels)
