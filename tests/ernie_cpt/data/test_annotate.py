import logging

import pytest

from ernie_cpt.data import annotate as annotate_module
from ernie_cpt.data.annotate import AnnotationOptions, annotate, chunk_spans, paragraph_spans, spacy_batches
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.spacy_pipeline import load_pipeline, resolve_pipeline_name
from ernie_cpt.errors import UserError


def test_paragraph_spans_split_on_blank_lines_and_trim():
    text = "  First para\nstill first.\n\n\nSecond.  \n \nThird"
    assert [text[s:e] for s, e in paragraph_spans(text)] == ["First para\nstill first.", "Second.", "Third"]


def test_chunk_spans_cut_long_paragraphs_at_spaces():
    text = "word " * 100
    pieces = chunk_spans(text, 0, len(text), 42)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(text)
    assert all(e - s <= 42 for s, e in pieces)
    assert all(text[e] == " " for _, e in pieces[:-1])
    assert "".join(text[s:e] for s, e in pieces) == text


def test_chunk_spans_cut_long_paragraphs_after_a_sentence_where_there_is_one():
    text = "Anne walked on. " * 30 + "She said \u201cYes.\u201d Then (she left.) " + "more words " * 40
    pieces = chunk_spans(text, 0, len(text), 200)
    assert "".join(text[s:e] for s, e in pieces) == text and all(e - s <= 200 for s, e in pieces)
    assert text[pieces[0][0]:pieces[0][1]].endswith("Anne walked on. ")  # the last sentence end of the first 200
    assert pieces[0][1] > 100 and text[pieces[1][0]:].startswith("Anne walked on.")
    after_quote = [e for _, e in pieces if text[:e].endswith(("\u201d ", ") "))]
    assert after_quote, "a sentence ended by a closing quote or bracket is a place to cut"


def test_spacy_batches_hold_at_most_so_many_pieces_and_characters():
    pieces = ["a" * 10, "b" * 10, "c" * 50, "d" * 5, "e" * 5, "f" * 5, "g" * 5]
    assert [list(run) for run in spacy_batches(pieces, 3, 25)] == [[0, 1], [2], [3, 4, 5], [6]]
    assert [list(run) for run in spacy_batches(pieces, 64, 10**6)] == [list(range(7))]
    assert list(spacy_batches([], 64, 100)) == []


def test_annotations_do_not_depend_on_how_pieces_are_batched(sample_dir, tmp_path):
    """Batches of at most 1,000 characters (several short paragraphs each) give the spans of pieces parsed one
    by one."""
    corpus = load_corpus(CorpusOptions(corpus=[str(sample_dir / "chapter-08.txt")]))  # 60 paragraphs, 39 short
    alone = annotate(corpus, AnnotationOptions(cache_dir=str(tmp_path / "a"), num_proc=1, max_chunk_chars=1000,
                                               spacy_batch_size=1))
    batched = annotate(corpus, AnnotationOptions(cache_dir=str(tmp_path / "b"), num_proc=1, max_chunk_chars=1000,
                                                 spacy_batch_size=10**5))
    lengths = [e - s for s, e in zip(alone[0]["paragraph_starts"], alone[0]["paragraph_ends"])]
    assert len(list(spacy_batches(["x" * n for n in lengths], 10**5, 1000))) < len(lengths) / 2
    for column in ("sentence_starts", "sentence_ends", "entity_starts", "entity_labels", "noun_chunk_ends"):
        assert batched[column] == alone[column]


def test_annotations_are_spacys_spans(sample_annotations):
    row = sample_annotations[0]
    text = row["text"]
    nlp = load_pipeline(resolve_pipeline_name(None))
    start, end = row["paragraph_starts"][1], row["paragraph_ends"][1]
    doc = nlp(text[start:end])
    expected = [(start + e.start_char, start + e.end_char, e.label_) for e in doc.ents]
    got = [(s, e, label) for s, e, label in zip(row["entity_starts"], row["entity_ends"], row["entity_labels"])
           if start <= s < end]
    assert got == expected and len(got) >= 3
    assert [text[s:e] for s, e in zip(row["sentence_starts"], row["sentence_ends"]) if start <= s < end] == [
        s.text.strip() for s in doc.sents]
    chunks = [text[s:e] for s, e in zip(row["noun_chunk_starts"], row["noun_chunk_ends"]) if start <= s < end]
    assert chunks == [c.text for c in doc.noun_chunks]


def test_second_run_is_a_cache_hit(sample_dir, cache_dir, sample_annotations, monkeypatch, caplog):
    def must_not_run(*args):
        raise AssertionError("spaCy ran again on a cached corpus")

    monkeypatch.setattr(annotate_module, "load_pipeline", must_not_run)
    corpus = load_corpus(CorpusOptions(corpus=[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]))
    with caplog.at_level(logging.INFO):
        again = annotate(corpus, AnnotationOptions(cache_dir=cache_dir))
    assert "Reusing cached annotations" in caplog.text
    assert again["entity_starts"] == sample_annotations["entity_starts"]


def test_a_changed_corpus_is_annotated_again(tmp_path, sample_dir, cache_dir):
    (tmp_path / "a.txt").write_text("Anne Elliot lived at Kellynch Hall in Somersetshire.\n", encoding="utf-8")
    first = annotate(load_corpus(CorpusOptions(corpus=[str(tmp_path)])), AnnotationOptions(cache_dir=cache_dir))
    (tmp_path / "a.txt").write_text("Captain Wentworth sailed from Plymouth.\n", encoding="utf-8")
    second = annotate(load_corpus(CorpusOptions(corpus=[str(tmp_path)])), AnnotationOptions(cache_dir=cache_dir))
    assert first["text"] != second["text"]
    assert second["entity_labels"][0]


def test_missing_pipeline_is_a_user_error():
    with pytest.raises(UserError, match="pip install"):
        resolve_pipeline_name("no_such_pipeline_xyz")
