"""The child of measure 10 (:mod:`benchmarks.scaleout`), one torchrun rank.

``torchrun --nproc_per_node N -m benchmarks.scaleout_child --corpus P --cache-dir D`` annotates the
corpus with ``--num-proc 1`` per rank, shared out over the N ranks; rank 0 prints one JSON line:
the seconds from a barrier after start-up to the annotations loaded, and the corpus's words.
"""

from __future__ import annotations

import argparse
import json
import time

import torch.distributed as dist

from ernie_cpt.data.corpus import CorpusOptions, corpus_words, load_corpus
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.data.sharded_annotation import annotate_on_all_ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--cache-dir", required=True)
    args = parser.parse_args()
    dist.init_process_group("gloo")
    corpus = load_corpus(CorpusOptions(corpus=[args.corpus]))
    dist.barrier()
    start = time.perf_counter()
    documents = annotate_on_all_ranks(corpus, AnnotationOptions(cache_dir=args.cache_dir, num_proc=1))
    seconds = time.perf_counter() - start
    if dist.get_rank() == 0:
        print(json.dumps({"seconds": seconds, "words": corpus_words(documents)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
