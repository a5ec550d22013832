"""Corpus files as users have them: compressed (.gz, .bz2, .xz, .zst), ';'-separated CSV from Excel, TSV,
shards, and a DatasetDict with several splits. Every file is real, written to disk in its format."""

from __future__ import annotations

import bz2
import gzip
import json
import logging
import lzma
from pathlib import Path

import datasets
import pytest
import zstandard

from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.errors import UserError

PACK = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress, ".zst": zstandard.ZstdCompressor().compress}
TEXTS = ["Anne Elliot walked to Uppercross, glad of the walk.", "Captain Wentworth, at last, wrote the letter.",
         "Sir Walter, vain of his looks, read the Baronetage.", "Lady Russell, a sensible woman, advised economy."]


def packed(path: Path, data: bytes, suffix: str) -> Path:
    """``data`` written to ``path`` + ``suffix``, compressed as that suffix says."""
    target = path.with_name(path.name + suffix)
    target.write_bytes(PACK[suffix](data))
    return target


def load(*sources: Path, **options) -> datasets.Dataset:
    return load_corpus(CorpusOptions(corpus=[str(s) for s in sources], **options))


def test_a_folder_of_txt_and_txt_gz_files_reads_all_eight(tmp_path, caplog):
    """Issue 23: four .txt and four .txt.gz files gave 4 documents, the .gz never mentioned."""
    for i in range(4):
        (tmp_path / f"plain-{i}.txt").write_text(TEXTS[i], encoding="utf-8")
        packed(tmp_path / f"packed-{i}.txt", TEXTS[i].upper().encode(), ".gz")
    caplog.set_level(logging.WARNING)

    corpus = load(tmp_path)

    assert len(corpus) == 8
    texts = dict(zip(corpus["doc_id"], corpus["text"]))
    assert texts["packed-2.txt.gz"] == TEXTS[2].upper() and texts["plain-2.txt"] == TEXTS[2]
    assert caplog.text == ""


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_a_compressed_jsonl_is_read_as_the_jsonl(tmp_path, suffix):
    """Issue 23: a single corpus.jsonl.gz or .zst was refused as binary."""
    data = "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)).encode()
    (tmp_path / "corpus.jsonl").write_bytes(data)

    corpus = load(packed(tmp_path / "corpus.jsonl", data, suffix))

    assert corpus["doc_id"] == ["d0", "d1", "d2", "d3"]
    assert corpus["text"] == load(tmp_path / "corpus.jsonl")["text"] == TEXTS


@pytest.mark.parametrize("suffix", [".bz2", ".xz", ".zst"])
def test_compressed_text_csv_and_parquet_files(tmp_path, suffix):
    packed(tmp_path / "book.txt", f"{TEXTS[0]}\n\n{TEXTS[1]}\n".encode(), suffix)
    packed(tmp_path / "docs.csv", ("text;title\n" + "".join(f"{t};T{i}\n" for i, t in enumerate(TEXTS[2:]))).encode(),
           suffix)
    datasets.Dataset.from_list([{"text": TEXTS[3]}]).to_parquet(tmp_path / "rows.parquet")
    packed(tmp_path / "rows.parquet", (tmp_path / "rows.parquet").read_bytes(), suffix)
    (tmp_path / "rows.parquet").unlink()

    corpus = load(tmp_path)

    assert corpus["doc_id"] == [f"book.txt{suffix}", f"docs.csv{suffix}:0", f"docs.csv{suffix}:1",
                                f"rows.parquet{suffix}:0"]
    assert corpus["text"] == [f"{TEXTS[0]}\n\n{TEXTS[1]}\n", TEXTS[2], TEXTS[3], TEXTS[3]]
    assert corpus["title"] == [None, "T0", "T1", None]


def test_a_damaged_compressed_text_file_is_skipped_and_named(tmp_path, caplog):
    (tmp_path / "good.txt").write_text(TEXTS[0], encoding="utf-8")
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(TEXTS[1].encode() * 100)[:30])
    caplog.set_level(logging.WARNING)

    assert load(tmp_path)["doc_id"] == ["good.txt"]
    assert "skipped 1 file that is truncated or damaged .gz data (EOFError): cut.txt.gz" in caplog.text


def test_a_damaged_compressed_table_is_one_line_error(tmp_path):
    (tmp_path / "corpus.jsonl.gz").write_bytes(b"this is not gzip data")
    with pytest.raises(UserError, match=r"corpus.jsonl.gz cannot be decompressed as .gz \(BadGzipFile"):
        load(tmp_path / "corpus.jsonl.gz")


# --- delimiters ---------------------------------------------------------------------------------------------


def test_an_excel_semicolon_csv_whose_texts_hold_commas(tmp_path, caplog):
    """Issue 23: told "a quote opened there is never closed" / "quote cells that hold a comma"."""
    table = tmp_path / "export.csv"
    table.write_text("id;text;label\n" + "".join(f"{i};{t};x\n" for i, t in enumerate(TEXTS)), encoding="utf-8")
    caplog.set_level(logging.INFO, logger="ernie_cpt.data.corpus_tables")

    corpus = load(table)

    assert corpus["doc_id"] == ["0", "1", "2", "3"] and corpus["text"] == TEXTS
    assert f"{table} is read with ';' between fields: its header splits on it" in caplog.text


@pytest.mark.parametrize(("name", "separator"), [("docs.tsv", "\t"), ("docs.csv", "|"), ("docs.csv", "\t")])
def test_tab_and_pipe_separated_tables(tmp_path, name, separator):
    (tmp_path / name).write_text(f"title{separator}text\n" + "".join(f"T{i}{separator}{t}\n" for i, t in
                                                                    enumerate(TEXTS)), encoding="utf-8")
    corpus = load(tmp_path / name)
    assert corpus["text"] == TEXTS and corpus["title"] == ["T0", "T1", "T2", "T3"]


def test_a_csv_that_cannot_be_parsed_names_its_delimiter(tmp_path):
    table = tmp_path / "broken.csv"
    table.write_text("text;label\nfine;a\ntoo;many;fields;here\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"cannot read .*broken.csv as CSV with ';' between fields \(.*\); check"):
        load(table)


# --- shards and saved datasets ------------------------------------------------------------------------------


def test_a_folder_of_jsonl_and_parquet_shards(tmp_path):
    shards = tmp_path / "shards"
    (shards / "2024").mkdir(parents=True)
    (shards / "2023").mkdir()
    (shards / "2023" / "part-0.jsonl").write_text(json.dumps({"text": TEXTS[0]}) + "\n", encoding="utf-8")
    packed(shards / "2024" / "part-0.jsonl", (json.dumps({"text": TEXTS[1]}) + "\n").encode(), ".zst")
    datasets.Dataset.from_list([{"text": TEXTS[2]}, {"text": TEXTS[3]}]).to_parquet(shards / "2024" / "part-1.parquet")

    corpus = load(shards)

    assert corpus["doc_id"] == ["2023/part-0.jsonl:0", "2024/part-0.jsonl.zst:0", "2024/part-1.parquet:0",
                                "2024/part-1.parquet:1"]
    assert corpus["text"] == TEXTS


def test_a_dataset_dict_says_which_split_it_reads_and_which_it_does_not(tmp_path, caplog):
    splits = {"train": datasets.Dataset.from_list([{"text": TEXTS[0]}]),
              "validation": datasets.Dataset.from_list([{"text": TEXTS[1]}]),
              "test": datasets.Dataset.from_list([{"text": TEXTS[2]}])}
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "saved"))
    caplog.set_level(logging.INFO, logger="ernie_cpt.data.corpus_tables")

    assert load(tmp_path / "saved")["text"] == [TEXTS[0]]
    assert (f"{tmp_path / 'saved'} holds the splits train, validation, test: the corpus is its 'train' split; "
            f"validation, test are not read") in caplog.text
