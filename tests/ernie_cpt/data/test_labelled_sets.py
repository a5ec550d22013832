"""MT-DNN labelled sets: NAME:KIND:TRAIN:TEST specs, the fields of each kind, and the errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ernie_cpt.data.labelled_sets import SetSpec, load_set, parse_spec, parse_specs
from ernie_cpt.errors import UserError


def test_a_spec_has_four_parts():
    assert parse_spec("topic:classification:a/train.jsonl:a/test.jsonl") == SetSpec(
        "topic", "classification", "a/train.jsonl", "a/test.jsonl")


@pytest.mark.parametrize(("spec", "message"), [
    ("topic:classification:train.jsonl", r"must be NAME:KIND:TRAIN:TEST \(4 parts"),
    ("topic:classification:c:/x.jsonl:test.jsonl", r"must be NAME:KIND:TRAIN:TEST"),
    ("topic::train.jsonl:test.jsonl", r"must be NAME:KIND:TRAIN:TEST"),
    ("topic:sentiment:train.jsonl:test.jsonl", r"unknown kind 'sentiment'; choose one of classification, "
                                               r"pair_classification, regression, ranking"),
    ("1topic:classification:train.jsonl:test.jsonl", r"the name '1topic' must start with a letter"),
    ("to pic:classification:train.jsonl:test.jsonl", r"the name 'to pic' must start with a letter"),
])
def test_bad_specs_are_one_line_errors(spec, message):
    with pytest.raises(UserError, match=message):
        parse_spec(spec)


def test_names_must_differ():
    with pytest.raises(UserError, match="a is given more than once"):
        parse_specs(["a:regression:x.jsonl:y.jsonl", "b:regression:x.jsonl:y.jsonl", "a:ranking:x.jsonl:y.jsonl"])


def _write(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _set(tmp_path: Path, kind: str, train: list[dict], test: list[dict]):
    from ernie_cpt.data.tokenizer import load_tokenizer

    spec = SetSpec("s", kind, _write(tmp_path / "train.jsonl", train), _write(tmp_path / "test.jsonl", test))
    tokenizer = load_tokenizer(Path(__file__).resolve().parents[2] / "data" / "sample-tokenizer")
    return load_set(spec, tokenizer, 32)


def test_classification_labels_become_sorted_ids(tmp_path):
    labelled = _set(tmp_path, "classification", [{"text": "a b", "label": "z"}, {"text": "c", "label": "y"}],
                    [{"text": "d", "label": "z"}])
    assert labelled.label_names == ["y", "z"] and labelled.num_labels == 2
    assert [e["labels"] for e in labelled.train] == [1, 0] and labelled.test[0]["labels"] == 1
    assert labelled.head == "sequence_classification"


def test_pair_classification_encodes_both_segments(tmp_path):
    labelled = _set(tmp_path, "pair_classification", [{"text": "a", "text_pair": "b", "label": 0},
                                                      {"text": "c", "text_pair": "d", "label": 1}],
                    [{"text": "a", "text_pair": "b", "label": 1}])
    assert sorted(set(labelled.train[0]["token_type_ids"])) == [0, 1] and labelled.head == "sentence_pair"


def test_regression_labels_are_floats(tmp_path):
    labelled = _set(tmp_path, "regression", [{"text": "a", "label": 1}, {"text": "b", "label": 0.25}],
                    [{"text": "c", "label": 0.5}])
    assert [e["labels"] for e in labelled.train] == [1.0, 0.25] and labelled.num_labels == 1


def test_ranking_keeps_one_pair_per_candidate_and_the_widest_query(tmp_path):
    labelled = _set(tmp_path, "ranking", [{"text": "q", "candidates": ["a", "b", "c"], "label": [0, 1, 0]}],
                    [{"text": "q", "candidates": ["a", "b"], "label": [1, 0]}])
    assert len(labelled.train[0]["input_ids"]) == 3 and labelled.train[0]["labels"] == [0, 1, 0]
    assert labelled.num_labels == 3 and labelled.head == "ranking"


@pytest.mark.parametrize(("kind", "row", "message"), [
    ("pair_classification", {"text": "a", "label": 0}, r"TRAIN file .* has no 'text_pair' field"),
    ("classification", {"text": "a", "label": True}, r"row 1: 'label' is a boolean \(true\); a class label "
                                                     r"must be a string or an integer"),
    ("regression", {"text": "a", "label": "high"}, r"row 1: 'label' is a string; a regression label must be a number"),
    ("ranking", {"text": "q", "candidates": ["a"], "label": [1]}, r"'candidates' holds 1 text; a ranking row needs "
                                                                    r"at least 2 candidates to rank"),
    ("ranking", {"text": "q", "candidates": ["a", "b"], "label": [0, 0]}, r"'label' is \[0, 0\]: no candidate is "
                                                                          r"relevant; mark at least one with 1"),
    ("ranking", {"text": "q", "candidates": ["a", "b"], "label": 1}, r"'label' is a number \(1\); a ranking label"),
    ("classification", {"label": 0}, r"has no 'text' field"),
])
def test_rows_that_do_not_fit_the_kind_are_named(tmp_path, kind, row, message):
    with pytest.raises(UserError, match=message):
        _set(tmp_path, kind, [row, row], [row])


def test_a_test_class_the_training_file_lacks(tmp_path):
    with pytest.raises(UserError, match=r"TEST .* has labels 'x' that TRAIN .* does not have"):
        _set(tmp_path, "classification", [{"text": "a", "label": "y"}, {"text": "b", "label": "z"}],
             [{"text": "c", "label": "x"}])


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(UserError, match=r"--task s TRAIN file .*nope.jsonl does not exist; pass "
                                               r"a .jsonl, .csv, .tsv or .parquet file"):
        load_set(SetSpec("s", "regression", str(tmp_path / "nope.jsonl"), str(tmp_path / "nope.jsonl")), None, 32)
