"""Sharding batches over processes: every rank takes a contiguous share of the same global batch."""

from ernie_cpt.batching import rank_share


def test_the_shares_of_the_ranks_make_up_each_global_batch():
    batches = [[5, 3, 9, 1, 7, 2, 8, 6], [4, 0, 11, 10, 12]]
    shares = [rank_share(batches, rank, 2) for rank in range(2)]
    assert shares == [[[5, 3, 9, 1], [4, 0, 11]], [[7, 2, 8, 6], [10, 12]]]
    assert [a + b for a, b in zip(*shares)] == batches


def test_batches_smaller_than_the_number_of_ranks_are_left_out():
    batches = [[1, 2, 3], [4], [5, 6]]
    assert [rank_share(batches, rank, 3) for rank in range(3)] == [[[1]], [[2]], [[3]]]
    assert rank_share(batches, 0, 1) is batches  # one process: unchanged
