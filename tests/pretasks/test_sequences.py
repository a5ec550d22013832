from hypothesis import given, settings
from hypothesis import strategies as st

from pretasks.base import IGNORE_INDEX
from pretasks.sequences import join_segments, truncate_longest_first


class _Tokenizer:
    cls_token_id, sep_token_id = 2, 3


parts_strategy = st.lists(st.lists(st.integers(5, 999), min_size=0, max_size=60), min_size=1, max_size=5)


@settings(max_examples=200, deadline=None)
@given(parts=parts_strategy, max_length=st.integers(8, 128))
def test_labels_stay_aligned_with_their_tokens_under_truncation(parts, max_length):
    # Label every token with a value derived from the token itself, so misalignment shows.
    labels = [[token % 2 for token in part] for part in parts]
    example = join_segments(_Tokenizer(), parts, max_length, labels=labels)
    ids, types, aligned = example["input_ids"], example["token_type_ids"], example["labels"]
    assert len(ids) == len(types) == len(aligned)
    assert len(ids) <= max(max_length, 1 + 2 * len(parts))
    assert ids[0] == 2 and ids.count(3) == len(parts)
    for token, label in zip(ids, aligned):
        if token in (2, 3):
            assert label == IGNORE_INDEX
        else:
            assert label == token % 2
    # Each part keeps a prefix of itself, in order, and the segment ids alternate per part.
    pieces, current, segment_ids = [], [], []
    for token, segment in zip(ids[1:], types[1:]):
        if token == 3:
            pieces.append(current)
            segment_ids.append(segment)
            current = []
        else:
            current.append(token)
    assert all(part[: len(piece)] == piece for part, piece in zip(parts, pieces))
    assert segment_ids == [i % 2 for i in range(len(parts))]


@given(parts=parts_strategy, budget=st.integers(0, 200))
def test_longest_first_cuts_the_longest_part(parts, budget):
    cut, _ = truncate_longest_first(parts, budget)
    total = sum(len(p) for p in parts)
    assert sum(len(p) for p in cut) == min(total, budget)
    if total > budget:  # no part was cut below another part that is still longer than it
        shortened = [len(c) for c, p in zip(cut, parts) if len(c) < len(p)]
        assert all(len(c) <= min(shortened) + 1 for c in cut if len(c) > min(shortened))
