import copy
import unicodedata

import numpy as np
import pytest
from tokenizers import normalizers

from ernie_cpt.errors import UserError
from pretasks.base import IGNORE_INDEX
from pretasks.capitalization import Capitalization, CapitalizationOptions
from pretasks.knowledge_masking import KnowledgeMasking, KnowledgeMaskingOptions


@pytest.fixture(scope="module")
def task(sample_tokenizer):
    return Capitalization(sample_tokenizer, CapitalizationOptions(), max_seq_length=128)


def _unaccented(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")


def _words_by_document(rows, annotations, tokenizer):
    """Per document: its raw text and (raw word, reconstructed word, label) for every word that
    starts in the rows, the reconstruction being the lower-cased sub-tokens joined and upper-cased
    at the first letter where the label says so. Character offsets come from tokenizing the
    paragraphs again, independently of the task."""
    rows_of: dict[str, list[int]] = {}
    for i, doc_id in enumerate(rows["doc_id"]):
        rows_of.setdefault(doc_id, []).append(i)
    for doc_id, text, starts, ends in zip(annotations["doc_id"], annotations["text"],
                                          annotations["paragraph_starts"], annotations["paragraph_ends"]):
        encoded = tokenizer([text[s:e] for s, e in zip(starts, ends)], add_special_tokens=False,
                            return_offsets_mapping=True)
        offsets = [(s + a, s + b) for s, doc_offsets in zip(starts, encoded["offset_mapping"]) for a, b in doc_offsets]
        ids = [i for paragraph in encoded["input_ids"] for i in paragraph]
        pieces = tokenizer.convert_ids_to_tokens(ids)
        row_ids = [i for r in rows_of.get(doc_id, []) for i in rows[r]["input_ids"]]
        row_labels = [label for r in rows_of.get(doc_id, []) for label in rows[r]["labels"]]
        # No segment of this document is skipped: its rows hold exactly its tokens, in order.
        assert row_ids == ids
        words = []
        for position, label in enumerate(row_labels):
            if label == IGNORE_INDEX:
                continue
            end = position + 1
            while end < len(pieces) and pieces[end].startswith("##"):
                end += 1
            lower = "".join(p.removeprefix("##") for p in pieces[position:end])
            reconstructed = lower[0].upper() + lower[1:] if label == 1 else lower
            words.append((text[offsets[position][0]:offsets[end - 1][1]], reconstructed, label))
        yield text, words


@pytest.mark.parametrize("source", ["sample", "austen"])
def test_labels_and_lower_cased_tokens_give_back_the_original_casing(source, task, request, sample_tokenizer):
    annotations = request.getfixturevalue(f"{source}_annotations")
    rows = task.build_examples(annotations)
    pre_tokenize = sample_tokenizer.backend_tokenizer.pre_tokenizer.pre_tokenize_str
    n_words = n_capitalized = n_compared = 0
    for text, words in _words_by_document(rows, annotations, sample_tokenizer):
        for raw, reconstructed, label in words:
            assert raw[0].isalpha()  # non-letters are not labelled by default
            n_words += 1
            n_capitalized += label
            if "[UNK]" not in reconstructed:
                # Casing of the initial comes from the label, the rest of the word is lower case.
                assert reconstructed == _unaccented(raw[0] + raw[1:].lower())
                n_compared += 1
        # Every word of the text that starts with a letter is labelled.
        assert len(words) == sum(word[0].isalpha() for word, _ in pre_tokenize(text))
    assert n_words > 5000 and n_compared > 0.99 * n_words
    assert 0.05 < n_capitalized / n_words < 0.2  # names and sentence openings


def test_examples_are_knowledge_masking_segments_with_labels_on_first_sub_tokens(task, sample_annotations,
                                                                                 sample_tokenizer):
    rows = task.build_examples(sample_annotations)
    masking_rows = KnowledgeMasking(sample_tokenizer, KnowledgeMaskingOptions(), 128).build_examples(
        sample_annotations)
    assert rows["input_ids"] == masking_rows["input_ids"]
    example = task.make_example(rows[1], np.random.default_rng(0))
    assert len(example["labels"]) == len(example["input_ids"]) == rows[1]["length"] <= 128
    assert example["labels"][0] == example["labels"][-1] == IGNORE_INDEX
    pieces = sample_tokenizer.convert_ids_to_tokens(example["input_ids"])
    assert all(label == IGNORE_INDEX for piece, label in zip(pieces, example["labels"]) if piece.startswith("##"))
    # Chapter 1 of Persuasion: "Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who ..."
    first = next(task.make_example(row, np.random.default_rng(0)) for row in rows
                 if sample_tokenizer.decode(row["input_ids"]).startswith("sir walter elliot, of kellynch"))
    words = [(p, label) for p, label in zip(sample_tokenizer.convert_ids_to_tokens(first["input_ids"]),
                                            first["labels"]) if not p.startswith("##")][1:14]
    assert words == [("sir", 1), ("walter", 1), ("elliot", 1), (",", IGNORE_INDEX), ("of", 0), ("kellynch", 1),
                     ("hall", 1), (",", IGNORE_INDEX), ("in", 0), ("somersetshire", 1), (",", IGNORE_INDEX),
                     ("was", 0), ("a", 0)]


def test_non_letters_can_be_labelled_lower(sample_tokenizer, sample_annotations):
    task = Capitalization(sample_tokenizer, CapitalizationOptions(capitalization_label_non_letters=True), 128)
    rows = task.build_examples(sample_annotations)
    pieces = sample_tokenizer.convert_ids_to_tokens(rows[1]["input_ids"])
    labels = dict(zip(pieces, rows[1]["labels"]))
    assert labels[","] == 0 and labels["sir"] == 1
    assert all(label != IGNORE_INDEX for p, label in zip(pieces, rows[1]["labels"]) if not p.startswith("##"))


def test_a_cased_tokenizer_is_refused(sample_tokenizer):
    cased = copy.deepcopy(sample_tokenizer)
    cased.backend_tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False)
    with pytest.raises(UserError, match="uncased"):
        Capitalization(cased, CapitalizationOptions(), 128)


@pytest.mark.parametrize(("counts", "skipped"), [
    ({0: 995, 1: 5}, False),  # 99.5 % is not above the bound
    ({0: 996, 1: 4}, True),
    ({1: 10}, True),  # a single class, even at a bound of 1
])
def test_nothing_to_learn_above_the_majority_share(task, counts, skipped):
    from collections import Counter

    reason = task.nothing_to_learn(Counter(counts), 40, 0.995 if len(counts) > 1 else 1.0)

    assert (reason is not None) == skipped
    if len(counts) == 1:
        assert reason == ("capitalization has nothing to learn on this corpus: 10 of the 10 labels (100.0%) of 40 "
                          "sampled training examples are 'capitalized' (1 class; a task is skipped above "
                          "--max-majority-share 1)")


def test_lower_cased_text_leaves_capitalization_nothing_to_learn(task, sample_annotations):
    lower = sample_annotations.map(lambda row: {"text": row["text"].lower()})
    rows = task.build_examples(lower)
    counts, examples = task.sample_labels(rows, seed=0)

    assert set(counts) == {0} and len(examples) == min(len(rows), 2000)
    assert task.nothing_to_learn(counts, len(examples), 0.995).startswith(
        f"capitalization has nothing to learn on this corpus: {counts[0]:,} of the {counts[0]:,} labels (100.0%)")
    cased, _ = task.sample_labels(task.build_examples(sample_annotations), seed=0)
    assert task.nothing_to_learn(cased, 10, 0.995) is None
