"""``ernie-cpt prepare``: read a corpus and annotate it with spaCy, cached for every later run on it.

Under torchrun (``WORLD_SIZE`` above 1, several machines with ``--nnodes``) every process parses a
share of the paragraphs into the shared ``--cache-dir`` (:mod:`ernie_cpt.data.sharded_annotation`);
a single process loads neither torch nor the process group.
"""

from __future__ import annotations

import os
from typing import Any

import datasets

from ernie_cpt.data.annotate import annotate
from ernie_cpt.data.corpus import read_corpus
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions


def prepare(options: dict[type, Any]) -> datasets.Dataset:
    """The annotated documents of ``options[CorpusOptions]`` (one row per document: ``doc_id``, ``title``,
    ``text`` and the paragraph, sentence, entity and noun-chunk spans as character offsets), from the cache
    when they were annotated before. Raises UserError for a corpus that cannot be read or a cache that
    cannot be written."""
    corpus_options, annotation = options[CorpusOptions], options[AnnotationOptions]
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return annotate(read_corpus(corpus_options), annotation)
    import torch

    from ernie_cpt import distributed
    from ernie_cpt.data.sharded_annotation import annotate_on_all_ranks

    distributed.init(torch.device("cpu"))  # gloo: the parsing needs no GPU
    corpus = distributed.every_rank(lambda: read_corpus(corpus_options))
    return annotate_on_all_ranks(corpus, annotation)
