"""Labelled files for fine-tuning: .jsonl/.csv/.parquet rows of text (or a text pair) and a label.

Labels may be strings or integers. They become class ids 0..K-1 by the sorted order of the
distinct training labels (so integer labels 0..K-1 keep their values); a test label the
training file does not have is an error, as is a row without text or label, a text that is not a
string or is blank, or a label that is not a string or an integer (the error names the file and the
row). Files are read as written (:mod:`ernie_cpt.data.labelled_files`), without column coercion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from ernie_cpt.data.labelled_files import Rows, field_values, nonempty_text, read_rows
from ernie_cpt.errors import UserError
from ernie_cpt.messages import describe

Label = str | int


@dataclass
class LabelledSplit:
    """One file's examples: texts, the second texts of pairs (or None) and class ids."""

    texts: list[str]
    text_pairs: list[str] | None
    labels: list[int]


@dataclass
class LabelledData:
    train: LabelledSplit
    test: LabelledSplit
    label_names: list[Label]  # the original label of each class id


def _raw_labels(table: Rows, field: str, flag: str) -> list[Label]:
    labels = field_values(table, field, "pass --label-field NAME", numbers=True)
    kinds = [str if isinstance(v, str) else int if isinstance(v, int) and not isinstance(v, bool) else None
             for v in labels]
    odd = next((i for i, kind in enumerate(kinds) if kind is None or kind is not kinds[0]), None)
    if odd is not None:
        first = "" if kinds[odd] is None else f", but row 1's is {describe(labels[0])}"
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels)
        hint = ("; for a regression set (number labels) use finetune --task NAME:regression:TRAIN:TEST "
                "--multitask-dir DIR" if numbers and any(isinstance(v, float) for v in labels) else "")
        raise UserError(f"{table.where} row {odd + 1}: '{field}' is {describe(labels[odd])}{first}; the labels "
                        f"must be all strings or all integers{hint}")
    blank = next((i for i, v in enumerate(labels) if isinstance(v, str) and not v.strip()), None)
    if blank is not None:
        raise UserError(f"{table.where} row {blank + 1}: '{field}' is empty; give every row a label or drop it")
    return labels


def _texts(table: Rows, field: str, option: str) -> list[str]:
    return [nonempty_text(v, f"{table.where} row {i + 1}", field)
            for i, v in enumerate(field_values(table, field, f"pass {option} NAME"))]


def _read_split(path: str | Path, flag: str, text_field: str, text_pair_field: str | None,
                label_field: str) -> tuple[list[str], list[str] | None, list[Label]]:
    table = read_rows(path, flag)
    texts = _texts(table, text_field, "--text-field")
    pairs = _texts(table, text_pair_field, "--text-pair-field") if text_pair_field else None
    return texts, pairs, _raw_labels(table, label_field, flag)


def load_labelled_data(train: str | Path, test: str | Path, text_field: str = "text",
                       text_pair_field: str | None = None, label_field: str = "label",
                       flags: tuple[str, str] = ("--train", "--test")) -> LabelledData:
    """The training and test files with labels as class ids (sorted training labels); ``flags`` name the
    options that gave them in errors (compare's ``--downstream-train``)."""
    train_flag, test_flag = flags
    train_texts, train_pairs, train_labels = _read_split(train, train_flag, text_field, text_pair_field, label_field)
    test_texts, test_pairs, test_labels = _read_split(test, test_flag, text_field, text_pair_field, label_field)
    if type(train_labels[0]) is not type(test_labels[0]):
        raise UserError(f"the '{label_field}' values of {train_flag} {train} and {test_flag} {test} differ in type "
                        f"({type(train_labels[0]).__name__} vs {type(test_labels[0]).__name__}); use one type")
    names = sorted(set(train_labels))
    ids = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(test_labels) - set(ids))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        labels = "a label" if len(unknown) == 1 else "labels"
        raise UserError(f"{test_flag} {test} has {labels} {shown} that {train_flag} {train} does not have; "
                        f"the classifier only learns training labels, so add examples of them to {train_flag}")
    if len(names) < 2:
        raise UserError(f"{train_flag} {train} has a single label ({names[0]!r}); a classifier needs at least two")
    return LabelledData(train=LabelledSplit(train_texts, train_pairs, [ids[label] for label in train_labels]),
                        test=LabelledSplit(test_texts, test_pairs, [ids[label] for label in test_labels]),
                        label_names=names)


def validation_split(split: LabelledSplit, fraction: float, seed: int,
                     flag: str = "--train") -> tuple[LabelledSplit, LabelledSplit]:
    """(the rows trained on, the validation rows) of one file: a stratified split (scikit-learn's
    ``train_test_split``, ``random_state=seed``) with ``ceil(fraction * rows)`` validation rows, the
    same for the same file, fraction and seed. Raises UserError when the file is too small to give
    every class a row on both sides."""
    from sklearn.model_selection import train_test_split

    classes = len(set(split.labels))
    counts = [split.labels.count(label) for label in set(split.labels)]
    held_out = math.ceil(fraction * len(split.labels))
    if min(counts) < 2 or held_out < classes or len(split.labels) - held_out < classes:
        raise UserError(f"{flag} has {len(split.labels)} examples ({classes} labels, the rarest {min(counts)} "
                        f"times): too few for a stratified validation split of {fraction}, which needs every label "
                        f"twice and a validation row per label; add examples, change --validation-fraction, or "
                        f"pass --validation-fraction 0 (no validation)")
    trained, validation = train_test_split(list(range(len(split.labels))), test_size=held_out,
                                           stratify=split.labels, random_state=seed)

    def rows(indices: list[int]) -> LabelledSplit:
        pairs = None if split.text_pairs is None else [split.text_pairs[i] for i in indices]
        return LabelledSplit([split.texts[i] for i in indices], pairs, [split.labels[i] for i in indices])

    return rows(sorted(trained)), rows(sorted(validation))
