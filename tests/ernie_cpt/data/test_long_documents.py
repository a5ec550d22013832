"""A document longer than --max-document-chars is read as parts cut at section or paragraph boundaries."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from ernie_cpt.data.corpus import CorpusOptions, bundled_corpus, load_corpus
from ernie_cpt.data.sections import is_generic_heading
from ernie_cpt.data.text_files import string_chunks, text_parts

BREAK_AT_END = re.compile(r"\n[ \t\r\f\v]*\n\Z")


def book() -> str:
    """The bundled sample's twelve chapters as one text, each opened by a "CHAPTER N" heading (about 215k chars)."""
    chapters = sorted(bundled_corpus().glob("chapter-*.txt"))
    return "\n\n".join(f"CHAPTER {i}\n\n{path.read_text(encoding='utf-8').strip()}"
                       for i, path in enumerate(chapters, 1)) + "\n"


def test_a_long_text_file_is_read_as_parts_at_its_chapters(tmp_path, caplog):
    text = book()
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    caplog.set_level(logging.INFO, logger="ernie_cpt.data.corpus")

    corpus = load_corpus(CorpusOptions(corpus=[str(tmp_path / "book.txt")], max_document_chars=50_000))

    parts = corpus["text"]
    assert "".join(parts) == text  # nothing lost, nothing repeated
    assert corpus["doc_id"] == [f"book.txt#part-{k}" for k in range(1, len(parts) + 1)]
    assert len(parts) >= len(text) // 50_000
    assert all(len(part) <= 50_000 for part in parts)
    assert all(is_generic_heading(part.split("\n\n")[0]) for part in parts)  # every part opens a chapter
    assert (f"1 document longer than --max-document-chars 50,000 is read as parts cut at section or paragraph "
            f"boundaries (doc_id#part-K): book.txt ({len(text):,} characters, {len(parts)} parts)") in caplog.text


def test_a_text_without_headings_is_cut_between_paragraphs():
    paragraphs = [f"Paragraph {i} " + "word " * (i % 7 + 20) for i in range(300)]
    text = "\n\n \n".join(paragraphs)

    parts = list(text_parts(string_chunks(text), 2_000, "t"))

    assert "".join(parts) == text
    assert all(len(part) <= 2_000 for part in parts)
    assert all(BREAK_AT_END.search(part) for part in parts[:-1])  # each cut follows a blank line
    split = [p.strip() for part in parts for p in re.split(r"\n[ \t]*\n", part) if p.strip()]
    assert split == [p.strip() for p in paragraphs]  # no paragraph is cut


def test_a_long_table_row_is_read_as_parts(tmp_path):
    text = book()
    table = tmp_path / "docs.jsonl"
    table.write_text(json.dumps({"id": "persuasion", "text": text}) + "\n" + json.dumps({"id": "short", "text": "Hi."})
                     + "\n", encoding="utf-8")

    corpus = load_corpus(CorpusOptions(corpus=[str(table)], max_document_chars=60_000))

    ids = corpus["doc_id"]
    assert ids[-1] == "short" and ids[0] == "persuasion#part-1" and len(ids) >= 5
    assert "".join(corpus["text"][:-1]) == text


def test_no_limit_keeps_a_document_whole(tmp_path):
    text = book()
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    corpus = load_corpus(CorpusOptions(corpus=[str(tmp_path / "book.txt")], max_document_chars=0))
    assert corpus["doc_id"] == ["book.txt"] and corpus["text"] == [text]


@pytest.mark.parametrize("novel", ["emma.txt", "mansfield-park.txt"])
def test_the_default_keeps_a_novel_whole(novel):
    path = Path(__file__).resolve().parents[4] / "shared" / "corpora" / "austen" / novel
    if not path.is_file():
        pytest.skip(f"real-text corpus {path} is absent")
    assert load_corpus(CorpusOptions(corpus=[str(path)]))["doc_id"] == [novel]


def test_a_document_under_the_limit_is_never_cut_at_its_chapters(tmp_path):
    text = book()  # about 215k characters, a chapter heading every 20k or so
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    (tmp_path / "rows.jsonl").write_text(json.dumps({"text": text}) + "\n", encoding="utf-8")

    corpus = load_corpus(CorpusOptions(corpus=[str(tmp_path)], max_document_chars=len(text) + 1))

    assert corpus["doc_id"] == ["book.txt", "rows.jsonl:0"] and corpus["text"] == [text, text]
