import itertools
import re
from collections import Counter

import datasets
import numpy as np
import pytest
from spacy.lang.en.stop_words import STOP_WORDS

from ernie_cpt.data.annotate import FEATURES, paragraph_spans
from pretasks.base import IGNORE_INDEX, TaskUnavailable
from pretasks.token_document_relation import TokenDocumentRelation, TokenDocumentRelationOptions


def _words(tokenizer, input_ids, labels):
    """(word, label) for each word of a row: sub-tokens joined, the label of the first one."""
    words = []
    for piece, label in zip(tokenizer.convert_ids_to_tokens(input_ids), labels):
        if piece.startswith("##") and words:
            words[-1] = (words[-1][0] + piece[2:], words[-1][1])
        else:
            assert label == IGNORE_INDEX or not piece.startswith("##")
            words.append((piece, label))
    return words


def _rows_by_document(rows):
    by_document: dict[str, list[int]] = {}
    for i, doc_id in enumerate(rows["doc_id"]):
        by_document.setdefault(doc_id, []).append(i)
    return by_document


HEADING = re.compile(r"(chapter|volume) [0-9ivxl]+", re.IGNORECASE)  # Austen's, written out independently


def _sections(paragraphs: list[str]) -> list[int]:
    """Section number of each paragraph (or segment): headings seen so far."""
    return list(itertools.accumulate(int(HEADING.fullmatch(" ".join(p.split())) is not None) for p in paragraphs))


CONTRACTION_ENDINGS = {"s", "t", "d", "ll", "m", "ve"}  # of 's, n't, 'd, 'll, 'm, 've, split off by the pre-tokenizer


def _labelled(word: str) -> bool:
    return any(c.isalnum() for c in word) and word.lower() not in STOP_WORDS | CONTRACTION_ENDINGS


def _documents(texts: list[str]) -> datasets.Dataset:
    """Annotated documents made by hand: paragraphs split at blank lines, each one sentence."""
    rows = []
    for i, text in enumerate(texts):
        starts, ends = zip(*paragraph_spans(text))
        rows.append({"doc_id": f"doc{i}", "title": "", "text": text, "paragraph_starts": starts,
                     "paragraph_ends": ends, "sentence_starts": starts, "sentence_ends": ends,
                     "entity_starts": [], "entity_ends": [], "noun_chunk_starts": [], "noun_chunk_ends": [],
                     "entity_labels": []})
    return datasets.Dataset.from_list(rows, features=FEATURES)


@pytest.mark.parametrize("source", ["sample", "austen"])
def test_labels_agree_with_a_brute_force_check_over_paragraphs(source, request, sample_tokenizer):
    """Without windows (no paragraph is too long) and with every paragraph of a section of 2 or more
    an example, each row's labels are recomputed from the raw text: the pre-tokenizer's words of
    every paragraph of the same section (a chapter of a novel; the sample's files are chapters)."""
    annotations = request.getfixturevalue(f"{source}_annotations")
    task = TokenDocumentRelation(sample_tokenizer, TokenDocumentRelationOptions(tdr_min_words=0), 100_000)
    rows = task.build_examples(annotations)
    rows_of = _rows_by_document(rows)
    pre_tokenize = sample_tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    counts = np.zeros(2, dtype=int)
    for doc_id, text, starts, ends in zip(annotations["doc_id"], annotations["text"],
                                          annotations["paragraph_starts"], annotations["paragraph_ends"]):
        section = _sections([text[s:e] for s, e in zip(starts, ends)])
        kept = [p for p in range(len(starts)) if Counter(section)[section[p]] >= 2]
        assert len(rows_of.get(doc_id, [])) == len(kept)
        paragraphs = [[word for word, _ in pre_tokenize(text[s:e])] for s, e in zip(starts, ends)]
        vocabularies = [{word.casefold() for word in words} for words in paragraphs]
        for p, row in zip(kept, rows_of.get(doc_id, [])):
            words = paragraphs[p]
            elsewhere = set().union(*(v for q, v in enumerate(vocabularies) if q != p and section[q] == section[p]))
            expected = [int(word.casefold() in elsewhere) if _labelled(word) else IGNORE_INDEX for word in words]
            assert [label for _, label in _words(sample_tokenizer, rows[row]["input_ids"], rows[row]["labels"])] \
                == expected
            counts += np.bincount([label for label in expected if label != IGNORE_INDEX], minlength=2)
    assert counts.sum() > 3000
    assert 0.2 < counts[1] / counts.sum() < 0.8


def test_long_paragraphs_are_cut_into_windows_that_are_segments(austen_annotations, sample_tokenizer):
    """With 64-token examples, long paragraphs become several windows; a word's label says
    whether its (lower-cased) text is a word of another window or paragraph of its chapter."""
    task = TokenDocumentRelation(sample_tokenizer, TokenDocumentRelationOptions(tdr_min_words=0), 64)
    rows = task.build_examples(austen_annotations)
    assert max(rows["length"]) <= 64
    assert all(length == len(ids) + 2 for length, ids in zip(rows["length"], rows["input_ids"]))
    assert len(rows) > sum(len(starts) for starts in austen_annotations["paragraph_starts"]) + 50
    n_words = n_cut = 0
    for indices in _rows_by_document(rows).values():
        segments = [_words(sample_tokenizer, rows[i]["input_ids"], rows[i]["labels"]) for i in indices]
        # A word cut at a window edge (inside an over-long sentence) belongs, whole, to the window where it starts.
        for before, after in itertools.pairwise(segments):
            if after and after[0][0].startswith("##"):
                end, label = after.pop(0)
                assert label == IGNORE_INDEX
                before[-1] = (before[-1][0] + end[2:], before[-1][1])
                n_cut += 1
        vocabularies = [{word for word, _ in words} for words in segments]
        section = _sections([" ".join(word for word, _ in words) for words in segments])
        assert len(set(section)) >= 3  # the rows of a chapter follow its heading
        for s, words in enumerate(segments):
            elsewhere = set().union(*(v for q, v in enumerate(vocabularies) if q != s and section[q] == section[s]))
            for word, label in words:
                if "[UNK]" in word:  # raw text not in the vocabulary: punctuation or a rare letter
                    continue
                assert (label != IGNORE_INDEX) == _labelled(word)
                if label != IGNORE_INDEX:
                    n_words += 1
                    assert label == (word in elsewhere)
    assert n_words > 3000
    assert n_cut > 5


TEXT = ("Walter Elliot read the Baronetage in his library daily.\n\n"
        "Elliot.\n\n"
        "Anne told Walter about Kellynch and Lady Russell, again.")


def test_short_segments_give_no_example_but_count_as_segments(sample_tokenizer):
    task = TokenDocumentRelation(sample_tokenizer, TokenDocumentRelationOptions(), 128)
    rows = task.build_examples(_documents([TEXT, "A single paragraph of many words gives no example at all."]))
    assert rows["doc_id"] == ["doc0", "doc0"]  # "Elliot." has 1 labelled word, fewer than 5
    words = [[(w, label) for w, label in _words(sample_tokenizer, ids, labels) if label != IGNORE_INDEX]
             for ids, labels in zip(rows["input_ids"], rows["labels"])]
    labels = [{w: label for w, label in segment} for segment in words]
    assert [w for w, _ in words[0]] == ["walter", "elliot", "read", "baronetage", "library", "daily"]
    assert labels[0] == {"walter": 1, "elliot": 1, "read": 0, "baronetage": 0, "library": 0, "daily": 0}
    assert labels[1] == {"anne": 0, "told": 0, "walter": 1, "kellynch": 0, "lady": 0, "russell": 0}
    example = task.make_example(rows[0], np.random.default_rng(0))
    assert example["input_ids"] == [sample_tokenizer.cls_token_id, *rows[0]["input_ids"], sample_tokenizer.sep_token_id]
    assert example["labels"] == [IGNORE_INDEX, *rows[0]["labels"], IGNORE_INDEX]


def test_stop_words_and_punctuation_can_be_labelled(sample_tokenizer):
    options = TokenDocumentRelationOptions(tdr_label_stop_words=True, tdr_label_punctuation=True, tdr_min_words=1)
    rows = TokenDocumentRelation(sample_tokenizer, options, 128).build_examples(_documents([TEXT]))
    labels = [dict(_words(sample_tokenizer, ids, labels)) for ids, labels in zip(rows["input_ids"], rows["labels"])]
    assert len(labels) == 3
    assert labels[0]["the"] == 0 and labels[0]["his"] == 0 and labels[0]["."] == 1
    assert labels[1] == {"elliot": 1, ".": 1}
    assert labels[2]["about"] == 0 and labels[2][","] == 0 and labels[2]["again"] == 0


def test_a_corpus_without_multi_segment_documents_is_refused(sample_tokenizer):
    task = TokenDocumentRelation(sample_tokenizer, TokenDocumentRelationOptions(), 128)
    with pytest.raises(TaskUnavailable, match="in 2 documents: none has 2 or more segments"):
        task.build_examples(_documents(["One paragraph only.", "Another document, one paragraph."]))
    with pytest.raises(TaskUnavailable, match=r"in 1 document: 1 has 2 or more segments .* but no segment with 5"):
        task.build_examples(_documents(["Two short.\n\nParagraphs here."]))
    # A held-out split without examples leaves the task unevaluated instead of stopping the run.
    assert len(task.build_examples(_documents(["One paragraph only."]), held_out=True)) == 0
