"""A task's statistics are logged once for the training split and once for the held-out split: each line says
which (issue 27: the two sentence_reordering lines of a run could not be told apart)."""

from __future__ import annotations

import logging

import pytest

from pretasks import TASKS, get_task

BUILT_IN = ["knowledge_masking", "capitalization", "token_document_relation", "sentence_reordering",
            "sentence_distance", "discourse_relation", "ir_relevance"]


@pytest.mark.parametrize("name", BUILT_IN)
def test_every_statistics_line_names_its_split(name, sample_annotations, sample_tokenizer, caplog):
    assert name in TASKS
    cls = get_task(name)
    task = cls(sample_tokenizer, cls.options_class(), 128)
    train, held_out = sample_annotations.select([0, 1, 2]), sample_annotations.select([3])
    for split, documents, background in (("training", train, None), ("held-out", held_out, train)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="pretasks"):
            task.build_examples(documents, background=background, held_out=split == "held-out")
        lines = [r.getMessage() for r in caplog.records if r.name.startswith("pretasks") and r.levelno == logging.INFO]
        assert all(line.startswith(f"{name} ({split}): ") for line in lines), lines
        if name in ("token_document_relation", "sentence_reordering", "sentence_distance", "ir_relevance"):
            assert lines  # these report their statistics
