import numpy as np
import pytest

from ernie_cpt.training.batching import EpochExamples
from pretasks.base import IGNORE_INDEX
from pretasks.knowledge_masking import ENTITY, PHRASE, KnowledgeMasking, KnowledgeMaskingOptions


@pytest.fixture(scope="module")
def task(sample_tokenizer):
    return KnowledgeMasking(sample_tokenizer, KnowledgeMaskingOptions(), max_seq_length=128)


@pytest.fixture(scope="module")
def rows(task, sample_annotations):
    return task.build_examples(sample_annotations)


def _row(rows, i):
    return rows[i]


def test_segments_fit_and_cover_the_documents(task, rows, sample_annotations, sample_tokenizer):
    assert max(rows["length"]) <= 128
    assert all(length == len(ids) + 2 for length, ids in zip(rows["length"], rows["input_ids"]))
    # Packing whole sentences keeps segments long: little padding is needed.
    assert np.mean(rows["length"]) > 80
    # Every token of every document is in exactly one segment.
    n_tokens = sum(len(t) for t in sample_tokenizer(
        [text[s:e] for text, starts, ends in zip(sample_annotations["text"], sample_annotations["paragraph_starts"],
                                                 sample_annotations["paragraph_ends"])
         for s, e in zip(starts, ends)], add_special_tokens=False)["input_ids"])
    assert sum(len(ids) for ids in rows["input_ids"]) == n_tokens


@pytest.mark.parametrize("source", ["sample", "austen"])
def test_entity_and_phrase_units_are_spacy_spans(source, task, request, sample_tokenizer):
    """Each entity (phrase) unit's tokens are exactly the tokens of a spaCy entity (noun chunk) text."""
    annotations = request.getfixturevalue(f"{source}_annotations")
    rows = task.build_examples(annotations)
    for kind, prefix in ((ENTITY, "entity"), (PHRASE, "noun_chunk")):
        spans = set()
        for text, starts, ends in zip(annotations["text"], annotations[f"{prefix}_starts"],
                                      annotations[f"{prefix}_ends"]):
            spans.update(tuple(sample_tokenizer(text[s:e], add_special_tokens=False)["input_ids"])
                         for s, e in zip(starts, ends))
        units = [tuple(ids[s:e]) for ids, starts, ends, kinds in
                 zip(rows["input_ids"], rows["unit_starts"], rows["unit_ends"], rows["unit_kinds"])
                 for s, e, k in zip(starts, ends, kinds) if k == kind]
        assert len(units) > 200
        matched = sum(unit in spans for unit in units) / len(units)
        assert matched > 0.97, f"{prefix}: only {matched:.1%} of units are spaCy spans"


def test_about_fifteen_percent_of_tokens_are_targets(task, rows):
    n_targets = n_tokens = 0
    for i in range(len(rows)):
        row = _row(rows, i)
        example = task.make_example(row, np.random.default_rng(i))
        targets = sum(label != IGNORE_INDEX for label in example["labels"])
        assert 1 <= targets <= max(1, round(0.15 * len(row["input_ids"])))
        n_targets, n_tokens = n_targets + targets, n_tokens + len(row["input_ids"])
    assert 0.14 <= n_targets / n_tokens <= 0.152


def test_chosen_units_are_masked_whole(task, rows, sample_tokenizer):
    mask_id = sample_tokenizer.mask_token_id
    outcomes = {"mask": 0, "kept": 0, "other": 0}
    multi_token_entities = 0
    for i in range(len(rows)):
        row = _row(rows, i)
        units = task.choose_units(row, np.random.default_rng(i))
        example = task.make_example(row, np.random.default_rng(i))  # same RNG: same units
        targets = {p for s, e in units for p in range(s + 1, e + 1)}  # +1: [CLS]
        assert targets == {p for p, label in enumerate(example["labels"]) if label != IGNORE_INDEX}
        kinds = dict(zip(zip(row["unit_starts"], row["unit_ends"]), row["unit_kinds"]))
        for s, e in units:
            new, old = example["input_ids"][s + 1:e + 1], row["input_ids"][s:e]
            assert example["labels"][s + 1:e + 1] == old
            if all(t == mask_id for t in new):
                outcomes["mask"] += 1
            elif new == old:
                outcomes["kept"] += 1
            else:
                assert mask_id not in new  # a unit is never partly masked
                outcomes["other"] += 1
            multi_token_entities += kinds[(s, e)] == ENTITY and e - s > 1
    total = sum(outcomes.values())
    assert multi_token_entities > 20
    assert 0.75 < outcomes["mask"] / total < 0.85
    assert 0.06 < outcomes["kept"] / total < 0.14


def test_unit_weights_choose_the_kind(sample_tokenizer, rows):
    only_entities = KnowledgeMasking(sample_tokenizer, KnowledgeMaskingOptions(word_unit_weight=0,
                                     phrase_unit_weight=0, entity_unit_weight=1), 128)
    for i in range(50):
        row = _row(rows, i)
        kinds = dict(zip(zip(row["unit_starts"], row["unit_ends"]), row["unit_kinds"]))
        assert all(kinds[u] == ENTITY for u in only_entities.choose_units(row, np.random.default_rng(i)))


def test_masks_are_resampled_each_epoch_and_reproducible(task, rows):
    indices = list(range(16))
    epoch0 = EpochExamples(task, rows, seed=1, epoch=0).__getitems__(indices)
    again = EpochExamples(task, rows, seed=1, epoch=0).__getitems__(indices)
    epoch1 = EpochExamples(task, rows, seed=1, epoch=1).__getitems__(indices)
    assert [e["labels"] for e in epoch0] == [e["labels"] for e in again]
    assert sum(a["labels"] != b["labels"] for a, b in zip(epoch0, epoch1)) >= 14


def test_an_example_whose_units_all_overshoot_the_budget_masks_the_shortest(task):
    """7 tokens at 15%: a budget of 1 token. The units are 2, 3 and 2 tokens: none fits, so the
    shortest drawn first is masked (ERNIE masks at least one unit)."""
    row = {"input_ids": list(range(1000, 1007)), "unit_starts": [0, 2, 5], "unit_ends": [2, 5, 7],
           "unit_kinds": [0, 0, 0]}
    for seed in range(20):
        rng = np.random.default_rng(seed)
        order = [int(u) for u in np.random.default_rng(seed).permutation(3)][::-1]  # the order units are drawn
        chosen = task.choose_units(row, rng)
        first_short = next(u for u in order if u != 1)
        assert chosen == [(row["unit_starts"][first_short], row["unit_ends"][first_short])]


def test_two_word_documents_give_every_example_a_target(sample_tokenizer, tmp_path, cache_dir):
    """The report: a corpus of two-word documents, where a 15% budget fits no whole unit of most of
    them; every example still has a target, so no loss is NaN."""
    from ernie_cpt.data.annotate import AnnotationOptions, annotate
    from ernie_cpt.data.corpus import CorpusOptions, load_corpus

    names = ["Zebra quagmire", "Xylophone juxtaposition", "Kellynch Hall", "Quixotic zeppelin", "Lady Russell",
             "Syzygy rhythm", "Wentworth's jukebox", "Fjord kayak", "Mrs Clay", "Byzantine zucchini"]
    table = tmp_path / "names.jsonl"
    table.write_text("".join(f'{{"text": "{name}"}}\n' for name in names), encoding="utf-8")
    documents = annotate(load_corpus(CorpusOptions(corpus=[str(table)])), AnnotationOptions(cache_dir=cache_dir))
    task = KnowledgeMasking(sample_tokenizer, KnowledgeMaskingOptions(), max_seq_length=128)
    rows = task.build_examples(documents)
    assert len(rows) == len(names)
    budget_fits_nothing = 0
    for i in range(len(rows)):
        row = rows[i]
        budget = max(1, round(0.15 * len(row["input_ids"])))
        budget_fits_nothing += min(e - s for s, e in zip(row["unit_starts"], row["unit_ends"])) > budget
        for epoch in range(5):
            labels = task.make_example(row, np.random.default_rng([epoch, i]))["labels"]
            assert sum(label != IGNORE_INDEX for label in labels) >= 1
    assert budget_fits_nothing >= 3  # the case of the report occurs here


def test_a_segment_with_no_unit_of_a_weighted_kind_gives_no_example(sample_tokenizer, rows):
    """Words weigh 0: only segments with a phrase or an entity can be masked, so only they are examples."""
    task = KnowledgeMasking(sample_tokenizer, KnowledgeMaskingOptions(word_unit_weight=0), max_seq_length=128)
    short = rows.select(range(20))
    for row in (short[i] for i in range(len(short))):
        assert any(k > 0 for k in row["unit_kinds"])
        assert task.choose_units(row, np.random.default_rng(0))
