"""Labelled files for fine-tuning: three formats, text pairs, label ids, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from ernie_cpt.data.labelled_data import load_labelled_data
from ernie_cpt.errors import UserError


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


TRAIN = [{"text": "a cat", "label": "pets"}, {"text": "a vote", "label": "politics"},
         {"text": "a dog", "label": "pets"}, {"text": "an atom", "label": "science"}]
TEST = [{"text": "a law", "label": "politics"}, {"text": "a fish", "label": "pets"}]


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_each_format_gives_texts_and_ids_by_sorted_training_label(suffix, tmp_path):
    paths = {}
    for name, rows in (("train", TRAIN), ("test", TEST)):
        paths[name] = tmp_path / f"{name}.{suffix}"
        table = datasets.Dataset.from_list(rows)
        {"jsonl": table.to_json, "csv": table.to_csv, "parquet": table.to_parquet}[suffix](str(paths[name]))
    data = load_labelled_data(paths["train"], paths["test"])
    assert data.label_names == ["pets", "politics", "science"]
    assert data.train.texts == ["a cat", "a vote", "a dog", "an atom"]
    assert data.train.labels == [0, 1, 0, 2]
    assert data.test.texts == ["a law", "a fish"] and data.test.labels == [1, 0]
    assert data.train.text_pairs is None and data.test.text_pairs is None


def test_integer_labels_follow_their_sorted_order_and_pairs_are_read(tmp_path):
    rows = [{"q": "who", "passage": "she did", "y": 7}, {"q": "when", "passage": "today", "y": 3},
            {"q": "why", "passage": "because", "y": 7}]
    train = write_jsonl(tmp_path / "train.jsonl", rows)
    test = write_jsonl(tmp_path / "test.jsonl", [{"q": "how", "passage": "so", "y": 3}])
    data = load_labelled_data(train, test, text_field="q", text_pair_field="passage", label_field="y")
    assert data.label_names == [3, 7]
    assert data.train.labels == [1, 0, 1] and data.test.labels == [0]
    assert data.train.texts == ["who", "when", "why"] and data.train.text_pairs == ["she did", "today", "because"]
    assert data.test.text_pairs == ["so"]


def error_of(tmp_path: Path, train_text: str, test_text: str, train_name: str = "train.jsonl",
             **fields: str) -> str:
    train, test = tmp_path / train_name, tmp_path / "test.jsonl"
    train.write_text(train_text, encoding="utf-8")
    test.write_text(test_text, encoding="utf-8")
    with pytest.raises(UserError) as raised:
        load_labelled_data(train, test, **fields)
    message = str(raised.value)
    assert "\n" not in message
    return message


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_a_missing_field_is_named_with_the_flag_that_chooses_it(tmp_path):
    message = error_of(tmp_path, jsonl(TRAIN), jsonl(TEST), text_field="sentence")
    assert "--train" in message and "'sentence'" in message and "it has: text, label" in message
    assert "--text-field" in message
    assert "--label-field" in error_of(tmp_path, jsonl(TRAIN), jsonl(TEST), label_field="topic")
    assert "--text-pair-field" in error_of(tmp_path, jsonl(TRAIN), jsonl(TEST), text_pair_field="second")
    missing_in_test = error_of(tmp_path, jsonl(TRAIN), jsonl([{"text": "a law"}]))
    assert "--test" in missing_in_test and "'label'" in missing_in_test


def test_a_test_label_not_in_training_is_an_error(tmp_path):
    message = error_of(tmp_path, jsonl(TRAIN), jsonl([*TEST, {"text": "a poem", "label": "literature"}]))
    assert "'literature'" in message and "--train" in message and "does not have" in message


@pytest.mark.parametrize(("train_name", "content", "expected"), [
    ("train.jsonl", "", "is empty"),
    ("train.jsonl", "\n  \n", "is empty"),
    ("train.csv", "text,label\n", "has no rows"),
    ("train.jsonl", '{"text": "a cat", "label": ', "train.jsonl line 1 is not valid JSON "
                                                        "(Expecting value: line 1 column 28"),
    ("train.txt", "a cat\tpets\n", "must end in .jsonl, .json, .csv, .tsv or .parquet (or one of these and .gz, "
                                  ".bz2, .xz, .zst)"),
])
def test_empty_unreadable_or_unknown_files_name_the_file(tmp_path, train_name, content, expected):
    message = error_of(tmp_path, content, jsonl(TEST), train_name=train_name)
    assert expected in message and train_name in message


def test_a_file_that_does_not_exist(tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", TEST)
    with pytest.raises(UserError, match=r"--train file .*nowhere.jsonl does not exist"):
        load_labelled_data(tmp_path / "nowhere.jsonl", test)


@pytest.mark.parametrize(("train_rows", "expected"), [
    ([{"text": "a", "label": "x"}, {"text": "b", "label": None}], "row 2 has no 'label'"),
    ([{"text": None, "label": "x"}, {"text": "b", "label": "y"}], "row 1 has no 'text'"),
    ([{"text": "a", "label": "x"}, {"text": "b", "label": 2}],
     "row 2: 'label' is a number (2), but row 1's is a string; the labels must be all strings or all integers"),
    ([{"text": "a", "label": 0.5}, {"text": "b", "label": 2.0}],
     "row 1: 'label' is a number (0.5); the labels must be all strings or all integers"),
    ([{"text": "a", "label": "x"}, {"text": "b", "label": {"name": "y"}}], "row 2: 'label' is an object (dict)"),
    ([{"text": ["a", "b"], "label": "x"}, {"text": "b", "label": "y"}],
     "row 1: 'text' is a list of strings; it must be a string"),
    ([{"text": "a", "label": "x"}, {"text": 7, "label": "y"}], "row 2: 'text' is a number (7); it must be a string"),
    ([{"text": "a", "label": "x"}, {"text": "b", "label": "x"}], "a single label ('x')"),
])
def test_bad_labels_and_empty_cells(tmp_path, train_rows, expected):
    assert expected in error_of(tmp_path, jsonl(train_rows), jsonl([{"text": "c", "label": "x"}]))


def test_train_and_test_labels_of_different_types(tmp_path):
    message = error_of(tmp_path, jsonl([{"text": "a", "label": 0}, {"text": "b", "label": 1}]),
                       jsonl([{"text": "c", "label": "0"}]))
    assert "differ in type (int vs str)" in message


def test_utf16_files_with_a_byte_order_mark_are_decoded(tmp_path):
    train, test = tmp_path / "train.csv", tmp_path / "test.jsonl"
    train.write_text("text,label\n" + "".join(f"{row['text']},{row['label']}\n" for row in TRAIN), encoding="utf-16")
    test.write_text("".join(json.dumps(row) + "\n" for row in TEST), encoding="utf-16")

    data = load_labelled_data(train, test)

    assert data.train.texts == [row["text"] for row in TRAIN] and data.test.texts == ["a law", "a fish"]
    assert data.test.labels == [1, 0]
