"""A corpus of one document is read as its sections, or else blocks of paragraphs, so that some can be
held out and the tasks that need several documents have them."""

from __future__ import annotations

import logging
import re

import datasets
import pytest

from ernie_cpt.data.annotate import AnnotationOptions, annotate
from ernie_cpt.data.corpus import (
    CorpusOptions,
    bundled_corpus,
    held_out_count,
    held_out_share,
    load_corpus,
    paragraph_bounds,
    split_documents,
)
from ernie_cpt.errors import UserError


def annotated(path, cache_dir):
    return annotate(load_corpus(CorpusOptions(corpus=[str(path)])), AnnotationOptions(cache_dir=cache_dir))


@pytest.fixture(scope="module")
def book(tmp_path_factory, cache_dir):
    """The bundled sample's 12 chapters as one file, each opening with its "Chapter N" heading."""
    path = tmp_path_factory.mktemp("book") / "book.txt"
    chapters = [p.read_text(encoding="utf-8").strip() for p in sorted(bundled_corpus().glob("*.txt"))]
    path.write_text("PERSUASION\n\nby Jane Austen\n\n" + "\n\n".join(chapters) + "\n", encoding="utf-8")
    return annotated(path, cache_dir), chapters


def test_a_book_with_chapter_headings_is_read_as_its_chapters(book, caplog):
    documents, chapters = book
    with caplog.at_level(logging.INFO):
        split = split_documents(documents, 0.05, seed=0)

    units = sorted([*split["train"], *split["test"]], key=lambda unit: int(unit["doc_id"].rsplit("-", 1)[1]))
    assert len(split["test"]) == 1 and len(split["train"]) == 11
    assert [unit["doc_id"] for unit in units] == [f"book.txt#section-{k}" for k in range(1, 13)]
    assert [unit["text"] for unit in units] == ["PERSUASION\n\nby Jane Austen\n\n" + chapters[0], *chapters[1:]]
    source = documents[0]
    for unit in units:  # every span is the source's, shifted to the unit's text
        offset = source["text"].index(unit["text"])
        for kind in ("paragraph", "sentence", "entity", "noun_chunk"):
            spans = [(s + offset, e + offset) for s, e in zip(unit[f"{kind}_starts"], unit[f"{kind}_ends"])]
            inside = [(s, e) for s, e in zip(source[f"{kind}_starts"], source[f"{kind}_ends"])
                      if offset <= s and e <= offset + len(unit["text"])]
            assert spans == inside and (kind == "entity" or spans)
        assert len(unit["entity_labels"]) == len(unit["entity_starts"])
    assert "the corpus is a single document (book.txt), so it is read as 12 documents, one per section" in caplog.text


def test_a_document_without_headings_is_read_as_blocks_of_paragraphs(tmp_path, cache_dir):
    paragraphs = [p.strip() for chapter in sorted(bundled_corpus().glob("*.txt"))
                  for p in chapter.read_text(encoding="utf-8").split("\n\n")
                  if p.strip() and not p.startswith("Chapter")][:45]  # 45 paragraphs, no heading
    path = tmp_path / "notes.txt"
    path.write_text("\n\n".join(paragraphs), encoding="utf-8")

    split = split_documents(annotated(path, cache_dir), 0.05, seed=0)

    units = [*split["train"], *split["test"]]
    assert len(units) == 20 and len(split["test"]) == 1
    firsts = sorted(int(unit["doc_id"].split("-")[1]) for unit in units)
    assert firsts == [1, 4, 7, 10, 13, *range(16, 46, 2)]  # 45 = 5 blocks of 3 and 15 of 2, in order
    by_first = {int(unit["doc_id"].split("-")[1]): unit["text"] for unit in units}
    assert by_first[1] == "\n\n".join(paragraphs[0:3]) and by_first[44] == "\n\n".join(paragraphs[43:45])


def test_a_single_paragraph_cannot_be_held_out(tmp_path, cache_dir):
    path = tmp_path / "one.txt"
    path.write_text("Anne walked to Uppercross. She was glad of the walk.", encoding="utf-8")
    documents = annotated(path, cache_dir)

    with pytest.raises(UserError, match="a single document of one paragraph, so nothing can be held out"):
        split_documents(documents, 0.05, seed=0)
    assert split_documents(documents, 0.0, seed=0)["train"]["doc_id"] == ["one.txt"]


def test_a_book_read_as_parts_is_still_one_document_read_as_its_chapters(book, tmp_path, cache_dir, caplog):
    """A book longer than --max-document-chars is read as parts; the parts of one document are one document for
    the held-out split, each read as its sections."""
    _, chapters = book
    path = tmp_path / "book.txt"
    path.write_text("\n\n".join(chapters) + "\n", encoding="utf-8")
    documents = annotate(load_corpus(CorpusOptions(corpus=[str(path)], max_document_chars=60_000)),
                         AnnotationOptions(cache_dir=cache_dir))
    assert len(documents) >= 3 and all(d.startswith("book.txt#part-") for d in documents["doc_id"])

    with caplog.at_level(logging.INFO):
        split = split_documents(documents, 0.05, seed=0)

    units = [*split["train"], *split["test"]]
    assert len(units) == 12 and len(split["test"]) == 1  # a chapter a unit, one held out
    assert all("#section-" in unit["doc_id"] for unit in units)
    assert sorted(unit["text"] for unit in units) == sorted(chapters)
    assert f"the corpus is a single document (book.txt, read as {len(documents)} parts), so it is read as 12 " \
           f"documents, one per section" in caplog.text


def _paragraph_documents(paths):
    """Documents with their blank-line paragraphs as the only annotation (no spaCy pass: the split reads no more)."""
    rows = []
    for path in paths:
        text = path.read_text(encoding="utf-8")
        bounds = [(start, end) for start, end in paragraph_bounds(text) if text[start:end].strip()]
        rows.append({"doc_id": path.name, "title": None, "text": text,
                     "paragraph_starts": [start for start, _ in bounds], "paragraph_ends": [end for _, end in bounds]})
    return datasets.Dataset.from_list(rows)


def test_two_novels_hold_out_chapters_not_a_novel(austen_dir, caplog):
    """Issue 27: a corpus of two novels held one of them out, half the text, without a word."""
    novels = _paragraph_documents([austen_dir / "persuasion.txt", austen_dir / "northanger-abbey.txt"])

    with caplog.at_level(logging.INFO):
        split = split_documents(novels, 0.05, seed=0)

    units = [*split["train"]["doc_id"], *split["test"]["doc_id"]]
    assert all("#section-" in unit for unit in units) and len(units) == len(set(units)) >= 40
    assert {unit.split("#")[0] for unit in split["train"]["doc_id"]} == {"persuasion.txt", "northanger-abbey.txt"}
    assert len(split["test"]) == held_out_count(len(units), 0.05) >= 2
    assert held_out_share(split) < 0.1  # a few chapters, not 40-50 % of the text
    assert re.search(r"the corpus has only 2 documents, so holding out whole ones would hold out \d+% of its text: "
                     rf"they are read as {len(units)} documents, one per section", caplog.text)


def test_a_large_held_out_share_that_cannot_be_divided_is_a_warning(caplog):
    """Documents without paragraphs to divide them by: the split stays, and says how much it holds out."""
    documents = datasets.Dataset.from_list([{"doc_id": name, "title": None, "text": "word " * size}
                                            for name, size in (("a", 100), ("b", 100))])

    with caplog.at_level(logging.WARNING):
        split = split_documents(documents, 0.05, seed=0)

    assert len(split["test"]) == 1 and held_out_share(split) == 0.5
    assert "the held-out split is 1 document of 2, 50% of the text (--eval-fraction 0.05): add documents" in caplog.text
