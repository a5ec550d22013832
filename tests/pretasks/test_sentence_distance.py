from collections import Counter

import numpy as np
import pytest

from ernie_cpt.training.batching import EpochExamples
from pretasks.base import TaskUnavailable
from pretasks.sentence_distance import (
    ADJACENT,
    OTHER_DOCUMENT,
    SAME_DOCUMENT,
    SentenceDistance,
    SentenceDistanceOptions,
)
from pretasks.sequences import join_segments


@pytest.fixture(scope="module")
def task(sample_tokenizer):
    return SentenceDistance(sample_tokenizer, SentenceDistanceOptions(), max_seq_length=128)


@pytest.fixture(scope="module")
def rows(task, sample_annotations):
    return task.build_examples(sample_annotations)


def _annotated_sentences(annotations, tokenizer):
    """(doc id, sentence number) -> token ids, from spaCy's sentence spans tokenized one by one
    (sentences without tokens are not numbered)."""
    sentences = {}
    for doc_id, text, starts, ends in zip(*(annotations[c] for c in ("doc_id", "text", "sentence_starts",
                                                                     "sentence_ends"))):
        encoded = tokenizer([text[s:e] for s, e in zip(starts, ends)], add_special_tokens=False)["input_ids"]
        for index, ids in enumerate(ids for ids in encoded if ids):
            sentences[doc_id, index] = ids
    return sentences


def _stored_sentences(row):
    """Every (doc id, sentence number, token ids) a row stores."""
    yield row["doc_id"], row["sentence_index"], row["anchor_tokens"]
    yield row["doc_id"], row["adjacent_index"], row["adjacent_tokens"]
    yield from ((row["doc_id"], i, t) for i, t in zip(row["same_doc_indices"], row["same_doc_tokens"]))
    yield from zip(row["other_doc_ids"], row["other_doc_indices"], row["other_doc_tokens"])


@pytest.mark.parametrize("source", ["sample", "austen"])
def test_stored_positions_are_the_annotated_sentences(source, task, request, sample_tokenizer):
    annotations = request.getfixturevalue(f"{source}_annotations")
    rows = task.build_examples(annotations)
    sentences = _annotated_sentences(annotations, sample_tokenizer)
    n_sentences = Counter(doc_id for doc_id, _ in sentences)
    # Every sentence of a document with >= 4 sentences is an anchor, once.
    assert Counter(rows["doc_id"]) == {d: n for d, n in n_sentences.items() if n >= 4}
    assert len(rows) > 250
    stored = [s for row in rows for s in _stored_sentences(row)]
    assert len(stored) == len(rows) * 10
    matched = sum(sentences.get((doc_id, index)) == tokens for doc_id, index, tokens in stored) / len(stored)
    assert matched > 0.99, f"only {matched:.1%} of stored sentences are the annotated sentence at their position"


def test_candidates_are_at_the_right_distance(task, rows):
    n_sentences = Counter(rows["doc_id"])
    for row in rows:
        i, n = row["sentence_index"], n_sentences[row["doc_id"]]
        assert row["adjacent_index"] == (i + 1 if i + 1 < n else i - 1)
        assert all(abs(j - i) >= 2 and 0 <= j < n for j in row["same_doc_indices"])
        assert all(doc_id != row["doc_id"] for doc_id in row["other_doc_ids"])
        assert all(0 <= j < n_sentences[doc_id] for doc_id, j in zip(row["other_doc_ids"], row["other_doc_indices"]))
    # Candidates are spread over the document and over the other documents.
    assert len({(r["doc_id"], j) for r in rows for j in r["same_doc_indices"]}) > 0.5 * len(rows)
    assert len({d for r in rows for d in r["other_doc_ids"]}) == len(n_sentences)


def test_labels_match_the_sentence_positions(task, rows, sample_tokenizer, sample_annotations):
    sentences = _annotated_sentences(sample_annotations, sample_tokenizer)
    labels, first_is_anchor = Counter(), Counter()
    for i, row in enumerate(rows):
        for epoch in range(6):
            label, first, second = task.choose_pair(row, np.random.default_rng([i, epoch]))
            example = task.make_example(row, np.random.default_rng([i, epoch]))
            assert example == {**join_segments(sample_tokenizer, [first[2], second[2]], 128), "labels": label}
            assert sentences[first[:2]] == first[2] and sentences[second[:2]] == second[2]
            if label == ADJACENT:
                assert first[0] == second[0] and second[1] == first[1] + 1
            elif label == SAME_DOCUMENT:
                assert first[0] == second[0] and second[1] >= first[1] + 2
            else:
                assert label == OTHER_DOCUMENT and first[0] != second[0]
                first_is_anchor[first[:2] == (row["doc_id"], row["sentence_index"])] += 1
            labels[label] += 1
    total = sum(labels.values())
    assert all(0.3 < labels[label] / total < 0.367 for label in range(3)), labels
    assert 0.4 < first_is_anchor[True] / labels[OTHER_DOCUMENT] < 0.6


def test_pairs_are_resampled_each_epoch_and_reproducible(task, rows, sample_annotations):
    indices = list(range(60))
    epoch0 = EpochExamples(task, rows, seed=1, epoch=0).__getitems__(indices)
    again = EpochExamples(task, rows, seed=1, epoch=0).__getitems__(indices)
    epoch1 = EpochExamples(task, rows, seed=1, epoch=1).__getitems__(indices)
    assert epoch0 == again
    assert sum(a != b for a, b in zip(epoch0, epoch1)) >= 30
    # The candidates drawn at build time are deterministic too.
    rebuilt = task.build_examples(sample_annotations)
    assert rebuilt["other_doc_indices"] == rows["other_doc_indices"]
    assert rebuilt["same_doc_indices"] == rows["same_doc_indices"]


def test_long_sentences_are_truncated_to_fit(sample_tokenizer, rows):
    short = SentenceDistance(sample_tokenizer, SentenceDistanceOptions(distance_candidates=2),
                              max_seq_length=24)
    lengths = [len(short.make_example(rows[i], np.random.default_rng(i))["input_ids"]) for i in range(len(rows))]
    assert max(lengths) == 24 and min(lengths) < 24


def test_held_out_documents_take_partners_from_the_background(task, sample_annotations, sample_tokenizer):
    held_out, background = sample_annotations.select([0]), sample_annotations.select([1, 2, 3])
    rows = task.build_examples(held_out, background=background, held_out=True)
    assert set(rows["doc_id"]) == set(held_out["doc_id"])
    assert {d for ids in rows["other_doc_ids"] for d in ids} == set(background["doc_id"])
    sentences = _annotated_sentences(sample_annotations, sample_tokenizer)
    stored = [s for row in rows for s in _stored_sentences(row)]
    assert sum(sentences.get(s[:2]) == s[2] for s in stored) / len(stored) > 0.99


def test_corpus_without_pairs_is_unavailable(task, sample_annotations):
    with pytest.raises(TaskUnavailable, match="needs a second document"):
        task.build_examples(sample_annotations.select([0]))
    # Documents cut to 1, 3 and 2 sentences: no anchor, but every kind is counted.
    short = sample_annotations.select([0, 1, 2]).map(
        lambda doc, i: {"sentence_starts": doc["sentence_starts"][:(1, 3, 2)[i]],
                        "sentence_ends": doc["sentence_ends"][:(1, 3, 2)[i]]}, with_indices=True)
    with pytest.raises(TaskUnavailable, match="at least 4 sentences; 3 documents: 0 without sentences, "
                                              "1 with 1 sentence, 2 with 2-3, 0 with 4 or more"):
        task.build_examples(short)
    assert len(task.build_examples(short, held_out=True)) == 0
    # Their sentences still serve as other-document partners of a held-out document.
    rows = task.build_examples(sample_annotations.select([3]), background=short, held_out=True)
    assert {d for ids in rows["other_doc_ids"] for d in ids} == set(short["doc_id"])


def test_segments_pack_consecutive_whole_sentences(sample_tokenizer, sample_annotations):
    """With --distance-segment-tokens, a document's segments are its sentences in order, cut only
    at sentence starts (a sentence longer than the budget is cut every `budget` tokens)."""
    budget = 100
    task = SentenceDistance(sample_tokenizer, SentenceDistanceOptions(distance_segment_tokens=budget), 2 * budget + 3)
    rows = task.build_examples(sample_annotations)
    sentences = _annotated_sentences(sample_annotations, sample_tokenizer)
    for doc_id in sorted(set(rows["doc_id"])):
        segments = {}
        for row in rows.filter(lambda r, d=doc_id: r["doc_id"] == d):
            segments[row["sentence_index"]] = row["anchor_tokens"]
        assert sorted(segments) == list(range(len(segments)))  # every segment is an anchor, numbered in order
        joined = [t for i in range(len(segments)) for t in segments[i]]
        n = max(i for d, i in sentences if d == doc_id) + 1
        assert joined == [t for i in range(n) for t in sentences[doc_id, i]]
        cuts, position = set(), 0  # sentence starts, and every `budget` tokens inside a longer sentence
        for j in range(n):
            cuts.update(range(position, position + len(sentences[doc_id, j]), budget))
            position += len(sentences[doc_id, j])
        position = 0
        for i in range(len(segments)):
            assert position in cuts and len(segments[i]) <= budget
            position += len(segments[i])
        assert len(segments) < n  # segments of several sentences


def _documents(docs: list[list[str]]):
    """Annotated documents, one paragraph each, of the given sentences."""
    import datasets

    rows = []
    for d, sentences in enumerate(docs):
        text, starts, ends = "", [], []
        for sentence in sentences:
            starts.append(len(text))
            text += sentence
            ends.append(len(text))
            text += " "
        rows.append({"doc_id": f"doc-{d}", "title": None, "text": text.rstrip(), "paragraph_starts": [0],
                     "paragraph_ends": [len(text.rstrip())], "sentence_starts": starts, "sentence_ends": ends})
    return datasets.Dataset.from_list(rows)


def test_partners_that_repeat_a_sentence_the_label_rules_out_are_replaced(sample_tokenizer):
    """'"Yes."' is in both documents: as an other-document partner of an anchor of document 0 it would
    make the same input as a same-document pair; and a far sentence that repeats the anchor's
    neighbour would make an adjacent pair's input. Such candidates never stay."""
    first = ["Anne walked to Uppercross.", '"Yes."', "She was glad of the walk.", "Mary was at home.",
             "Charles came in later.", "They talked of Kellynch.", '"Yes."', "The evening passed."]
    second = ['"Yes."', "Captain Wentworth arrived.", '"Yes."', '"Yes."']
    third = ["Lady Russell drove to Bath.", "The streets were wet.", "Mr Elliot called twice.",
             "Elizabeth was pleased.", "Mrs Clay smiled.", "Sir Walter read the Baronetage."]
    task = SentenceDistance(sample_tokenizer, SentenceDistanceOptions(distance_candidates=8), max_seq_length=64)

    rows = task.build_examples(_documents([first, second, third]))

    documents = [first, second, third]
    own_texts = [{tuple(sample_tokenizer(s, add_special_tokens=False)["input_ids"]) for s in doc} for doc in documents]
    for row in rows:
        d = int(row["doc_id"][-1])
        assert not own_texts[d] & {tuple(t) for t in row["other_doc_tokens"]}
        neighbours = {row["sentence_index"] - 1, row["sentence_index"] + 1}
        sentences = documents[d]
        neighbour_texts = {tuple(sample_tokenizer(sentences[i], add_special_tokens=False)["input_ids"])
                           for i in neighbours if 0 <= i < len(sentences)}
        assert not neighbour_texts & {tuple(t) for t in row["same_doc_tokens"]}
    # Document 1 is Y C Y Y (Y = '"Yes."'). C's only far sentence, Y, is also its neighbours' text; the
    # second Y's only far sentence, the first Y, would make (Y, Y) as the adjacent pair of the last two
    # does. Neither has a same-document partner left: they are no anchors, and that is counted.
    anchors = [(row["doc_id"], row["sentence_index"]) for row in rows]
    assert [a for a in anchors if a[0] == "doc-1"] == [("doc-1", 0), ("doc-1", 3)] and len(anchors) == 8 + 2 + 6
    assert task.notes == ["sentence_distance dropped 2 of 18 anchors: every candidate partner repeats the text of a "
                          "sentence the label rules out"]


def test_rows_are_kept_in_the_cache_and_read_back_by_the_next_build(task, rows, sample_annotations, sample_tokenizer,
                                                                    monkeypatch):
    """The anchor rows of annotations from the cache are kept beside them (another run, another rank reads them);
    other options are another key."""
    monkeypatch.setattr(SentenceDistance, "_chunk_rows", lambda *args: pytest.fail("the rows were built again"))
    again = task.build_examples(sample_annotations)
    assert again.to_dict() == rows.to_dict() and "examples" in again.cache_files[0]["filename"]
    other = SentenceDistance(sample_tokenizer, SentenceDistanceOptions(distance_candidates=3), max_seq_length=128)
    with pytest.raises(pytest.fail.Exception, match="built again"):
        other.build_examples(sample_annotations)
