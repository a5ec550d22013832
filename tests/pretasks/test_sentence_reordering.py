import itertools
import math
from collections import Counter

import numpy as np
import pytest

from ernie_cpt.training.batching import EpochExamples
from pretasks.base import TaskUnavailable
from pretasks.sentence_reordering import (
    SentenceReordering,
    SentenceReorderingOptions,
    permutation_of_label,
    permutations_up_to,
)


@pytest.fixture(scope="module")
def task(sample_tokenizer):
    return SentenceReordering(sample_tokenizer, SentenceReorderingOptions(), max_seq_length=128)


@pytest.fixture(scope="module")
def rows(task, sample_annotations):
    return task.build_examples(sample_annotations)


def _sentences(row):
    bounds = np.cumsum([0, *row["sentence_lengths"]])
    return [row["sentence_ids"][s:e] for s, e in itertools.pairwise(bounds)]


def _segments(example, sep_id):
    """The token lists between [CLS]/[SEP] markers, and each segment's token type id."""
    segments, types, current = [], [], []
    for token, token_type in zip(example["input_ids"][1:], example["token_type_ids"][1:]):
        if token == sep_id:
            segments.append(current)
            types.append(token_type)
            current = []
        else:
            current.append(token)
    assert not current, "the input must end with [SEP]"
    return segments, types


def test_labels_enumerate_all_permutations_in_a_fixed_order():
    for m, k in ((2, 3), (3, 9), (4, 33), (5, 153)):
        permutations = [permutation_of_label(label, m) for label in range(k)]
        assert len(permutations_up_to(m)) == k == sum(math.factorial(n) for n in range(1, m + 1))
        assert len(set(permutations)) == k
        assert all(sorted(p) == list(range(len(p))) for p in permutations)
        assert [len(p) for p in permutations] == sorted(len(p) for p in permutations)
    assert [permutation_of_label(label, 3) for label in (0, 1, 2, 3, 4, 8)] == [
        (0,), (0, 1), (1, 0), (0, 1, 2), (0, 2, 1), (2, 1, 0)]
    # The enumeration of a larger m starts with that of a smaller one.
    assert permutations_up_to(4)[:9] == permutations_up_to(3)


def test_label_names(sample_tokenizer):
    task = SentenceReordering(sample_tokenizer, SentenceReorderingOptions(reorder_max_segments=4), 128)
    assert task.num_labels == 33
    assert task.label_names[:3] == ("1", "1-2", "2-1")
    assert task.label_names[8] == "3-2-1" and task.label_names[-1] == "4-3-2-1"
    assert len(set(task.label_names)) == 33


@pytest.mark.parametrize("source", ["sample", "austen"])
def test_windows_are_consecutive_sentences_of_one_paragraph(source, task, request, sample_tokenizer):
    annotations = request.getfixturevalue(f"{source}_annotations")
    rows = task.build_examples(annotations)
    paragraphs = []  # each paragraph as its sentences, each tokenized on its own
    for text, p_starts, p_ends, s_starts, s_ends in zip(*(annotations[c] for c in (
            "text", "paragraph_starts", "paragraph_ends", "sentence_starts", "sentence_ends"))):
        for p_start, p_end in zip(p_starts, p_ends):
            sentences = [text[s:e] for s, e in zip(s_starts, s_ends) if p_start <= s < p_end]
            paragraphs.append([tuple(ids) for ids in
                               sample_tokenizer(sentences, add_special_tokens=False)["input_ids"] if ids])
    runs = {tuple(p[i:j]) for p in paragraphs for i in range(len(p)) for j in range(i + 2, len(p) + 1)}
    windows = [tuple(tuple(s) for s in _sentences(row)) for row in rows]
    assert len(windows) > 60 and all(len(window) >= 2 for window in windows)
    matched = sum(window in runs for window in windows) / len(windows)
    assert matched > 0.97, f"only {matched:.1%} of windows are runs of sentences of one paragraph"
    # A paragraph of 2 or more sentences that fits in 128 - 1 - m tokens is one whole window.
    whole = [tuple(p) for p in paragraphs if len(p) >= 2 and sum(map(len, p)) <= 128 - 4]
    assert len(whole) >= 15
    assert sum(p in set(windows) for p in whole) / len(whole) > 0.97, "a paragraph that fits was cut"


def test_long_paragraphs_are_cut_into_windows_that_fit(sample_tokenizer, sample_annotations, rows):
    short = SentenceReordering(sample_tokenizer, SentenceReorderingOptions(), max_seq_length=48)
    short_rows = short.build_examples(sample_annotations)
    assert max(short_rows["length"]) <= 48
    assert all(sum(lengths) <= 48 - 4 for lengths in short_rows["sentence_lengths"])
    # A paragraph that no longer fits gives several windows (or none when its sentences are too long).
    assert len(short_rows) > len([r for r in rows["sentence_lengths"] if sum(r) <= 48 - 4])
    for i in range(len(short_rows)):
        row = short_rows[i]
        example = short.make_example(row, np.random.default_rng(i))
        assert len(example["input_ids"]) <= 48
        assert sum(len(s) for s in _segments(example, sample_tokenizer.sep_token_id)[0]) == sum(
            row["sentence_lengths"])  # nothing truncated


def test_labels_decode_to_the_shuffled_order(task, rows, sample_tokenizer):
    n_groups = Counter()
    for i in range(len(rows)):
        row = rows[i]
        sentence_ends = set(np.cumsum(row["sentence_lengths"]).tolist())
        for epoch in range(8):
            example = task.make_example(row, np.random.default_rng([i, epoch]))
            segments, types = _segments(example, sample_tokenizer.sep_token_id)
            permutation = permutation_of_label(example["labels"], 3)
            assert len(permutation) == len(segments) <= min(3, len(row["sentence_lengths"]))
            assert types == [position % 2 for position in range(len(segments))]
            # Undo the shuffle: shuffled position p holds original group permutation[p].
            groups = [None] * len(segments)
            for position, group in enumerate(permutation):
                groups[group] = segments[position]
            assert list(itertools.chain(*groups)) == row["sentence_ids"]
            assert all(groups)
            assert set(np.cumsum([len(g) for g in groups]).tolist()) <= sentence_ends  # cut between sentences
            expected_groups, expected_permutation = task.shuffle(row, np.random.default_rng([i, epoch]))
            assert expected_permutation == permutation and expected_groups == groups
            n_groups[len(segments)] += 1
    assert set(n_groups) == {1, 2, 3}


def test_label_distribution_follows_the_construction(task, rows):
    """n is uniform over 1..min(m, sentences) and the permutation uniform over the n! orders."""
    expected = np.zeros(task.num_labels)
    for lengths in rows["sentence_lengths"]:
        top = min(3, len(lengths))
        for n in range(1, top + 1):
            for label, permutation in enumerate(permutations_up_to(3)):
                expected[label] += (len(permutation) == n) / top / math.factorial(n)
    expected /= len(rows)
    epochs = 40
    counts = np.zeros(task.num_labels)
    for epoch in range(epochs):
        examples = EpochExamples(task, rows, seed=3, epoch=epoch).__getitems__(list(range(len(rows))))
        counts += np.bincount([e["labels"] for e in examples], minlength=task.num_labels)
    assert np.abs(counts / counts.sum() - expected).max() < 0.025
    assert counts.min() > 0


def test_shuffles_are_resampled_each_epoch_and_reproducible(task, rows):
    indices = list(range(40))
    epoch0 = EpochExamples(task, rows, seed=1, epoch=0).__getitems__(indices)
    again = EpochExamples(task, rows, seed=1, epoch=0).__getitems__(indices)
    epoch1 = EpochExamples(task, rows, seed=1, epoch=1).__getitems__(indices)
    assert epoch0 == again
    assert sum(a != b for a, b in zip(epoch0, epoch1)) >= 20


def test_four_segments_give_33_classes(sample_tokenizer, sample_annotations):
    task = SentenceReordering(sample_tokenizer, SentenceReorderingOptions(reorder_max_segments=4), 128)
    rows = task.build_examples(sample_annotations)
    labels = [task.make_example(rows[i % len(rows)], np.random.default_rng(i))["labels"] for i in range(2000)]
    assert max(labels) < 33 and len(set(labels) - set(range(9))) > 15  # 4-segment permutations occur


def test_corpus_without_multi_sentence_paragraphs_is_unavailable(task, sample_annotations):
    one_sentence_paragraphs = sample_annotations.map(
        lambda doc: {"paragraph_starts": doc["sentence_starts"], "paragraph_ends": doc["sentence_ends"]})
    n = sum(len(starts) for starts in sample_annotations["sentence_starts"])
    with pytest.raises(TaskUnavailable, match=f"at least 2 sentences; 4 documents, {n} paragraphs, {n} sentences"):
        task.build_examples(one_sentence_paragraphs)
    assert len(task.build_examples(one_sentence_paragraphs, held_out=True)) == 0


def test_equal_groups_get_the_smallest_label_of_the_permutations_showing_the_same_input(sample_tokenizer):
    """A window of '"Yes." "Yes." "No."': shuffled (2, 1, 3) and (1, 2, 3) show the same input, so both
    are labelled as the identity of three groups; every example's label is readable from its input."""
    from pretasks.sentence_reordering import SentenceReordering, SentenceReorderingOptions, permutation_of_label

    task = SentenceReordering(sample_tokenizer, SentenceReorderingOptions(), max_seq_length=64)
    yes, no = [5, 6, 7], [8, 9]
    row = {"sentence_ids": yes + yes + no, "sentence_lengths": [3, 3, 2]}
    seen: dict[tuple, set[int]] = {}
    for seed in range(200):
        example = task.make_example(row, np.random.default_rng(seed))
        seen.setdefault(tuple(example["input_ids"]), set()).add(example["labels"])
    assert all(len(labels) == 1 for labels in seen.values())  # one label per input
    three = {ids: labels.pop() for ids, labels in seen.items() if len(ids) == 1 + 8 + 3}
    assert len(three) == 3  # yes yes no, yes no yes, no yes yes: 3 inputs of the 6 permutations
    assert sorted(permutation_of_label(label, 3) for label in three.values()) == [(0, 1, 2), (0, 2, 1), (2, 0, 1)]
