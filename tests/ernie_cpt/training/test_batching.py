"""Training batches: length bucketing by the examples made, resumable streams, and sharding over
processes (every rank takes a contiguous share of the same global batch)."""

import pytest
import torch

from ernie_cpt.training.batching import BUCKET_BATCHES, TaskStream, rank_share
from pretasks.sentence_distance import SentenceDistance, SentenceDistanceOptions


def test_the_shares_of_the_ranks_make_up_each_global_batch():
    batches = [[5, 3, 9, 1, 7, 2, 8, 6], [4, 0, 11, 10, 12]]
    shares = [rank_share(batches, rank, 2) for rank in range(2)]
    assert shares == [[[5, 3, 9, 1], [4, 0, 11]], [[7, 2, 8, 6], [10, 12]]]
    assert [a + b for a, b in zip(*shares)] == batches


def test_batches_smaller_than_the_number_of_ranks_are_left_out():
    batches = [[1, 2, 3], [4], [5, 6]]
    assert [rank_share(batches, rank, 3) for rank in range(3)] == [[[1]], [[2]], [[3]]]
    assert rank_share(batches, 0, 1) is batches  # one process: unchanged


@pytest.fixture(scope="module")
def pair_task(sample_tokenizer, sample_annotations):
    task = SentenceDistance(sample_tokenizer, SentenceDistanceOptions(), max_seq_length=128)
    return task, task.build_examples(sample_annotations)


def test_pair_batches_are_bucketed_by_the_length_of_the_pairs_made(pair_task):
    """A pair's length is known only once its partner is drawn: sorting the static rows (the anchor
    sentence alone) left half of every sentence_distance batch padding."""
    task, rows = pair_task
    stream = TaskStream(task, rows, batch_size=32, seed=0)
    batches = [next(stream) for _ in range(20)]
    real = sum(int(batch["attention_mask"].sum()) for batch in batches)
    assert real / sum(batch["attention_mask"].numel() for batch in batches) > 0.9


def test_an_epoch_makes_every_row_into_one_example(pair_task):
    task, rows = pair_task
    stream = TaskStream(task, rows, batch_size=32, seed=0)
    sizes = []
    while stream.epoch == 0:
        sizes.append(len(next(stream)["input_ids"]))
    assert sum(sizes[:-1]) == len(rows) and stream.state() == {"epoch": 1, "position": 1}


def test_a_stream_restored_mid_window_yields_the_batches_of_the_uninterrupted_one(pair_task):
    task, rows = pair_task
    stream = TaskStream(task, rows, batch_size=4, seed=3)
    for _ in range(BUCKET_BATCHES + 3):  # into the second window
        next(stream)
    restored = TaskStream(task, rows, batch_size=4, seed=3)
    restored.load_state(stream.state())
    for _ in range(5):
        expected, got = next(stream), next(restored)
        assert all(torch.equal(expected[key], got[key]) for key in expected)
