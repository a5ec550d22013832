"""Statistics of a dataset's columns, computed one Arrow record batch at a time.

``dataset["column"]`` turns a whole column into Python objects (a list of lists for a span
column), which grows with the corpus. These read ``STATS_ROWS`` rows at a time with
``pyarrow.compute`` and keep only the running result.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:  # pre-task modules import this one, and --help must not load datasets
    import datasets

STATS_ROWS = 65_536


def column_batches(dataset: datasets.Dataset, column: str) -> Iterator[pa.ChunkedArray]:
    """The column, ``STATS_ROWS`` rows at a time, as Arrow arrays (the dataset's row order and selection)."""
    for batch in dataset.select_columns([column]).with_format("arrow").iter(batch_size=STATS_ROWS):
        yield batch[column]


def total_length(dataset: datasets.Dataset, column: str) -> int:
    """The sum over rows of the length of a list column (the spans of every document, say)."""
    return sum(int(pc.sum(pc.list_value_length(values)).as_py() or 0) for values in column_batches(dataset, column))


def column_mean(dataset: datasets.Dataset, column: str) -> float:
    """The mean of a numeric column (nan for no rows)."""
    total = sum(float(pc.sum(values).as_py() or 0) for values in column_batches(dataset, column))
    return total / len(dataset) if len(dataset) else float("nan")


def label_counts(dataset: datasets.Dataset, column: str, minlength: int = 0) -> np.ndarray:
    """How often each value of a column of non-negative integers occurs (``numpy.bincount``)."""
    counts = np.zeros(minlength, dtype=np.int64)
    for values in column_batches(dataset, column):
        found = np.bincount(values.to_numpy(), minlength=len(counts))
        counts = np.pad(counts, (0, len(found) - len(counts))) + found
    return counts


def count_runs(dataset: datasets.Dataset, column: str) -> int:
    """The number of runs of equal consecutive values of a column: its distinct values when equal
    values are contiguous (the examples of one document, say)."""
    runs, last = 0, None
    for values in column_batches(dataset, column):
        items = values.to_pylist()
        runs += sum(1 for i, value in enumerate(items) if value != (items[i - 1] if i else last))
        last = items[-1] if items else last
    return runs
