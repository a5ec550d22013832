"""Bad labelled files, read as written (no column coercion): every error names the file, the real row and value.

The same files go to ``finetune --train/--test`` (load_labelled_data) and ``finetune --task``
(load_set); both must give the row-level error."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
from pathlib import Path

import pytest

from ernie_cpt.data.labelled_data import load_labelled_data
from ernie_cpt.data.labelled_files import read_rows
from ernie_cpt.data.labelled_sets import SetSpec, load_set
from ernie_cpt.errors import UserError

TOKENIZER = Path(__file__).resolve().parents[2] / "data" / "sample-tokenizer"


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def single_error(tmp_path: Path, train: str | bytes, name: str = "train.jsonl") -> str:
    test = write(tmp_path / "test.jsonl", jsonl([{"text": "c", "label": "x"}]))
    with pytest.raises(UserError) as raised:
        load_labelled_data(write(tmp_path / name, train), test)
    assert "\n" not in str(raised.value)
    return str(raised.value).replace(str(tmp_path) + "/", "")


def set_error(tmp_path: Path, kind: str, train: str | bytes, name: str = "train.jsonl") -> str:
    from ernie_cpt.data.tokenizer import load_tokenizer

    test = write(tmp_path / "test.jsonl", train if name.endswith(".jsonl") else "")
    spec = SetSpec("s", kind, str(write(tmp_path / name, train)), str(test))
    with pytest.raises(UserError) as raised:
        load_set(spec, load_tokenizer(TOKENIZER), 32)
    assert "\n" not in str(raised.value)
    return str(raised.value).replace(str(tmp_path) + "/", "")


GOOD = [{"text": "a cat", "label": "pets"}, {"text": "a vote", "label": "politics"}]


def compress(path: Path, suffix: str) -> Path:
    """``path`` compressed as a whole into ``path`` + ``suffix`` (a real .gz/.bz2/.xz/.zst file)."""
    import zstandard

    pack = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": zstandard.ZstdCompressor().compress}[suffix]
    packed = path.with_name(path.name + suffix)
    packed.write_bytes(pack(path.read_bytes()))
    return packed


def test_a_latin1_byte_names_the_line_and_the_fix(tmp_path):
    data = jsonl(GOOD).encode() + b'{"text": "caf\xe9", "label": "work"}\n'
    assert single_error(tmp_path, data) == (
        "--train file train.jsonl line 3 is not UTF-8 (byte 0xe9); re-encode it, e.g. iconv -f latin1 -t utf-8 "
        "train.jsonl > train-utf8.jsonl")
    assert set_error(tmp_path, "classification", data).startswith(
        "--task s TRAIN file train.jsonl line 3 is not UTF-8 (byte 0xe9); re-encode it")


def test_a_file_latin1_as_a_whole_names_its_first_bad_line(tmp_path):
    data = "text,label\ncaf\xe9,work\nna\xefve,play\n".encode("latin-1")
    assert single_error(tmp_path, data, "train.csv").startswith(
        "--train file train.csv line 2 is not UTF-8 (byte 0xe9); re-encode it, e.g. iconv -f latin1 -t utf-8")


@pytest.mark.parametrize(("label", "shown"), [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "-inf")])
def test_regression_labels_must_be_finite(tmp_path, label, shown):
    rows = '{"text": "a", "text_pair": "b", "label": 0.5}\n' f'{{"text": "a", "text_pair": "b", "label": {label}}}\n'
    assert set_error(tmp_path, "regression", rows) == (
        f"--task s TRAIN file train.jsonl row 2: 'label' is {shown}; a regression label must be a finite number: "
        f"fix that row or drop it")


def test_regression_nan_in_a_csv(tmp_path):
    assert set_error(tmp_path, "regression", "text,label\na,0.5\nb,nan\n", "train.csv").endswith(
        "train.csv row 2: 'label' is nan; a regression label must be a finite number: fix that row or drop it")


def ranking(candidates, label) -> str:
    return jsonl([{"text": "q", "candidates": ["a", "b"], "label": [1, 0]},
                  {"text": "q", "candidates": candidates, "label": label}])


@pytest.mark.parametrize(("candidates", "label", "message"), [
    (["a", "b"], [0, 0], "'label' is [0, 0]: no candidate is relevant; mark at least one with 1"),
    (["a", "b", "c"], [1, 0], "'label' has 2 values for 3 candidates; a ranking label is a list of 0/1 integers, "
                              "one per candidate (3)"),
    (["a"], [1], "'candidates' holds 1 text; a ranking row needs at least 2 candidates to rank"),
    ([], [], "'candidates' holds 0 texts; a ranking row needs at least 2 candidates to rank"),
    (["a", "b"], ["1", "0"], "'label' value 1 is a string; a ranking label is a list of 0/1 integers, one per "
                             "candidate (2)"),
    (["a", "b"], [1, 2], "'label' value 2 is a number (2); a ranking label is a list of 0/1 integers, one per "
                         "candidate (2)"),
    (["a", "b"], [True, False], "'label' value 1 is a boolean (true); a ranking label is a list of 0/1 integers, "
                                "one per candidate (2)"),
    (["a", ""], [1, 0], "row 2 candidate 2: 'candidates' is empty; give it text or drop the row"),
    (["a", "  "], [1, 0], "row 2 candidate 2: 'candidates' is only whitespace; give it text or drop the row"),
    ("a b", [1, 0], "'candidates' is a string; it must be a list of at least 2 strings"),
])
def test_ranking_rows_say_what_is_wrong(tmp_path, candidates, label, message):
    error = set_error(tmp_path, "ranking", ranking(candidates, label))
    assert error.startswith("--task s TRAIN file train.jsonl row 2") and error.endswith(message)


def test_a_float_among_integer_labels_is_reported_at_its_own_row(tmp_path):
    rows = [{"text": "a", "text_pair": "b", "label": i % 2} for i in range(200)]
    rows.append({"text": "a", "text_pair": "b", "label": 0.5})
    assert set_error(tmp_path, "pair_classification", jsonl(rows)) == (
        "--task s TRAIN file train.jsonl row 201: 'label' is a number (0.5), but TRAIN row 1's is a number (0); "
        "class labels must be all strings or all integers, in both files; for number labels use the kind regression")
    assert single_error(tmp_path, jsonl([{"text": "a", "label": i % 2} for i in range(200)]
                                        + [{"text": "a", "label": 0.5}])) == (
        "--train file train.jsonl row 201: 'label' is a number (0.5); the labels must be all strings or all "
        "integers; for a regression set (number labels) use finetune --task NAME:regression:TRAIN:TEST "
        "--multitask-dir DIR")


def test_a_float_label_in_a_csv_keeps_its_row_and_value(tmp_path):
    csv = "text,label\n" + "".join(f"t{i},{i % 2}\n" for i in range(5)) + "t,0.5\n"
    assert single_error(tmp_path, csv, "train.csv").startswith(
        "--train file train.csv row 6: 'label' is a number (0.5); the labels must be all strings or all integers")


def test_a_regression_file_given_to_train(tmp_path):
    assert single_error(tmp_path, jsonl([{"text": "a", "label": 0.25}, {"text": "b", "label": 0.75}])) == (
        "--train file train.jsonl row 1: 'label' is a number (0.25); the labels must be all strings or all "
        "integers; for a regression set (number labels) use finetune --task NAME:regression:TRAIN:TEST "
        "--multitask-dir DIR")


def test_a_directory_is_not_a_file(tmp_path):
    (tmp_path / "dir").mkdir()
    test = write(tmp_path / "test.jsonl", jsonl(GOOD))
    with pytest.raises(UserError, match=r"^--train .*dir is a directory; pass a .jsonl, .csv, .tsv or .parquet file "
                                        r"\(or one compressed: .gz, .bz2, .xz, .zst\)$"):
        load_labelled_data(tmp_path / "dir", test)
    with pytest.raises(UserError, match=r"^--task s TRAIN .*dir is a directory; pass a .jsonl, .csv, .tsv or .parquet"):
        load_set(SetSpec("s", "classification", str(tmp_path / "dir"), str(test)), None, 32)


# Excel's "CSV" in a European locale: ';' between fields, commas in the texts (issue 23).
EXCEL_CSV = ('text;label\n"Well, that was a fine dinner";food\nThe vote, held on Monday, was close;politics\n'
             'Cats, dogs and rabbits;pets\n')


def test_a_semicolon_csv_whose_texts_hold_commas_is_read_with_its_delimiter(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ernie_cpt.data.labelled_files")
    table = read_rows(write(tmp_path / "train.csv", EXCEL_CSV), "--train")

    assert table.fields == ["text", "label"]
    assert table.column("text") == ["Well, that was a fine dinner", "The vote, held on Monday, was close",
                                    "Cats, dogs and rabbits"]
    assert table.column("label") == ["food", "politics", "pets"]
    assert f"--train file {tmp_path / 'train.csv'} is read with ';' between fields" in caplog.text


@pytest.mark.parametrize(("name", "text"), [
    ("train.tsv", "text\tlabel\na cat, a dog\tpets\na vote\tpolitics\n"),
    ("train.csv", "text|label\na cat, a dog|pets\na vote|politics\n"),
    ("train.csv", "text\tlabel\na cat, a dog\tpets\na vote\tpolitics\n"),  # "CSV" saved by a spreadsheet as TSV
])
def test_tab_and_pipe_separated_files_are_read(tmp_path, name, text):
    table = read_rows(write(tmp_path / name, text), "--train")
    assert table.column("text") == ["a cat, a dog", "a vote"] and table.column("label") == ["pets", "politics"]


def test_a_semicolon_csv_with_a_row_of_too_many_fields_names_the_delimiter(tmp_path):
    assert single_error(tmp_path, EXCEL_CSV + "a;b;c\n", "train.csv") == (
        "--train file train.csv row 4 (line 5) has 3 fields but the header has 2 (fields separated by ';'); quote "
        "cells that hold ';'")


def test_an_unterminated_quote_names_the_row(tmp_path):
    assert single_error(tmp_path, 'text,label\na cat,pets\n"a vote,politics\nb,c\n', "train.csv") == (
        "--train file train.csv row 2 (line 3) cannot be read as fields separated by ',' (unexpected end of data: a "
        "quote opened there is never closed?); close its quotes (a quote inside a cell is written \"\")")


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
@pytest.mark.parametrize("name", ["train.jsonl", "train.csv", "train.parquet"])
def test_compressed_labelled_files_are_read_as_their_uncompressed_form(tmp_path, name, suffix):
    plain = tmp_path / name
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(GOOD), plain)
    else:
        write(plain, jsonl(GOOD) if name.endswith(".jsonl") else EXCEL_CSV)
    packed = compress(plain, suffix)
    plain.unlink()

    table = read_rows(packed, "--train")

    expected = GOOD if not name.endswith(".csv") else [
        {"text": "Well, that was a fine dinner", "label": "food"},
        {"text": "The vote, held on Monday, was close", "label": "politics"},
        {"text": "Cats, dogs and rabbits", "label": "pets"}]
    assert table.rows == expected


def test_labelled_data_reads_a_gzipped_train_file(tmp_path):
    train = compress(write(tmp_path / "train.jsonl", jsonl(GOOD * 3)), ".gz")
    data = load_labelled_data(train, write(tmp_path / "test.jsonl", jsonl(GOOD)))
    assert data.train.texts == ["a cat", "a vote"] * 3 and data.label_names == ["pets", "politics"]


def test_a_truncated_gzip_file_is_named_as_damaged(tmp_path):
    packed = compress(write(tmp_path / "train.jsonl", jsonl(GOOD * 50)), ".gz")
    packed.write_bytes(packed.read_bytes()[:40])
    assert single_error(tmp_path, packed.read_bytes(), "train.jsonl.gz").startswith(
        "train.jsonl.gz cannot be decompressed as .gz (EOFError: Compressed file ended before the end-of-stream "
        "marker was reached); it is damaged or truncated: compress it again, or pass it uncompressed")


def test_csv_texts_stay_strings_and_integer_labels_become_integers(tmp_path):
    table = read_rows(write(tmp_path / "t.csv", "text,label\n42,1\n7,0\n"), "--train")
    assert table.column("text") == ["42", "7"] and table.column("label", numbers=True) == [1, 0]
    assert read_rows(write(tmp_path / "u.csv", "text,label\n42,1\n7,x\n"), "--train").column(
        "label", numbers=True) == ["1", "x"]


@pytest.mark.parametrize(("row", "message"), [
    ({"text": "", "label": "pets"}, "row 2: 'text' is empty; give it text or drop the row"),
    ({"text": " \t", "label": "pets"}, "row 2: 'text' is only whitespace; give it text or drop the row"),
    ({"text": "a", "label": " "}, "row 2: 'label' is empty; give every row a label or drop it"),
])
def test_blank_texts_and_labels_are_refused(tmp_path, row, message):
    assert single_error(tmp_path, jsonl([GOOD[0], row, GOOD[1]])) == f"--train file train.jsonl {message}"
    assert set_error(tmp_path, "classification", jsonl([GOOD[0], row, GOOD[1]])) == (
        f"--task s TRAIN file train.jsonl {message}")


def test_a_blank_text_pair_is_refused(tmp_path):
    rows = jsonl([{"text": "a", "text_pair": "b", "label": 1}, {"text": "a", "text_pair": "", "label": 0}])
    assert set_error(tmp_path, "pair_classification", rows) == (
        "--task s TRAIN file train.jsonl row 2: 'text_pair' is empty; give it text or drop the row")
    test = write(tmp_path / "test.jsonl", rows)
    with pytest.raises(UserError, match=r"--train file .*train.jsonl row 2: 'text_pair' is empty"):
        load_labelled_data(write(tmp_path / "train.jsonl", rows), test, text_pair_field="text_pair")
