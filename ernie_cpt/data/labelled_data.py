"""Labelled files for fine-tuning: .jsonl/.csv/.parquet rows of text (or a text pair) and a label.

Labels may be strings or integers. They become class ids 0..K-1 by the sorted order of the
distinct training labels (so integer labels 0..K-1 keep their values); a test label the
training file does not have is an error, as is a row without text or label, a text that is not a
string or a label that is not a string or an integer (the error names the file and the row).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import datasets

from ernie_cpt.data.cells import describe, text_cell
from ernie_cpt.errors import UserError
from ernie_cpt.text_encoding import text_encoding

FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}

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


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """Silence the datasets library's own error log while a file is read: a failure is reported
    once, as a UserError."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def read_table(path: str | Path, flag: str) -> datasets.Dataset:
    """The rows of a .jsonl/.json/.csv/.parquet file; ``flag`` (e.g. ``--train``) names the option
    that gave the path in error messages."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} file {path} does not exist; pass a .jsonl, .csv or .parquet file")
    builder = FORMATS.get(path.suffix.lower())
    if builder is None:
        raise UserError(f"{flag} file {path} must end in .jsonl, .json, .csv or .parquet")
    if not path.read_bytes().strip():
        raise UserError(f"{flag} file {path} is empty; pass a file with labelled examples")
    encoding = {} if builder == "parquet" else {"encoding": text_encoding(path, f"{flag} file")}
    try:
        with _quiet_datasets():
            table = datasets.load_dataset(builder, data_files=str(path), split="train", **encoding)
    except Exception as e:  # datasets raises many types for malformed files
        if "corresponds to no data" in str(e):  # a header without rows
            raise UserError(f"{flag} file {path} has no rows; pass a file with labelled examples") from e
        raise UserError(f"cannot read {flag} file {path} as {path.suffix} ({type(e).__name__}); "
                        f"check the file format") from e
    if len(table) == 0:
        raise UserError(f"{flag} file {path} has no rows; pass a file with labelled examples")
    return table


def _column(table: datasets.Dataset, field: str, path: str, flag: str, option: str) -> list:
    if field not in table.column_names:
        raise UserError(f"{flag} file {path} has no '{field}' field (it has: {', '.join(table.column_names)}); "
                        f"pass {option} NAME")
    values = table[field]
    missing = next((i for i, v in enumerate(values) if v is None), None)
    if missing is not None:
        raise UserError(f"{flag} file {path}: row {missing + 1} has no '{field}'; fill it in or drop the row")
    return values


def _texts(table: datasets.Dataset, field: str, path: str, flag: str, option: str) -> list[str]:
    return [text_cell(v, f"{flag} file {path} row {i + 1}", field)
            for i, v in enumerate(_column(table, field, path, flag, option))]


def _raw_labels(table: datasets.Dataset, field: str, path: str, flag: str) -> list[Label]:
    labels = _column(table, field, path, flag, "--label-field")
    kinds = [str if isinstance(v, str) else int if isinstance(v, int) and not isinstance(v, bool) else None
             for v in labels]
    odd = next((i for i, kind in enumerate(kinds) if kind is None or kind is not kinds[0]), None)
    if odd is not None:
        first = "" if kinds[odd] is None else f", but row 1's is {describe(labels[0])}"
        raise UserError(f"{flag} file {path} row {odd + 1}: '{field}' is {describe(labels[odd])}{first}; the labels "
                        f"must be all strings or all integers")
    return labels


def _read_split(path: str | Path, flag: str, text_field: str, text_pair_field: str | None,
                label_field: str) -> tuple[list[str], list[str] | None, list[Label]]:
    table = read_table(path, flag)
    texts = _texts(table, text_field, str(path), flag, "--text-field")
    pairs = _texts(table, text_pair_field, str(path), flag, "--text-pair-field") if text_pair_field else None
    return texts, pairs, _raw_labels(table, label_field, str(path), flag)


def load_labelled_data(train: str | Path, test: str | Path, text_field: str = "text",
                       text_pair_field: str | None = None, label_field: str = "label") -> LabelledData:
    """The training and test files with labels as class ids (sorted training labels)."""
    train_texts, train_pairs, train_labels = _read_split(train, "--train", text_field, text_pair_field, label_field)
    test_texts, test_pairs, test_labels = _read_split(test, "--test", text_field, text_pair_field, label_field)
    if type(train_labels[0]) is not type(test_labels[0]):
        raise UserError(f"the '{label_field}' values of --train {train} and --test {test} differ in type "
                        f"({type(train_labels[0]).__name__} vs {type(test_labels[0]).__name__}); use one type")
    names = sorted(set(train_labels))
    ids = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(test_labels) - set(ids))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        labels = "a label" if len(unknown) == 1 else "labels"
        raise UserError(f"--test {test} has {labels} {shown} that --train {train} does not have; "
                        f"the classifier only learns training labels, so add examples of them to --train")
    if len(names) < 2:
        raise UserError(f"--train {train} has a single label ({names[0]!r}); a classifier needs at least two")
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
