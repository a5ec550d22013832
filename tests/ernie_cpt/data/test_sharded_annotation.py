"""Annotation shared out over ranks gives the 1-process annotation row for row, a rank killed mid-shard
leaves nothing a later run takes for finished, and 2 gloo processes under torchrun annotate one shard
each into the shared cache."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import datasets
import pytest

from ernie_cpt.data.annotate import annotate, annotation_target
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.data.sharded_annotation import annotate_shard, combine_shards, shard_root
from ernie_cpt.errors import UserError

CHAPTERS = 3


def _files(sample_dir: Path) -> list[str]:
    return [str(p) for p in sorted(sample_dir.glob("*.txt"))[:CHAPTERS]]


def _corpus(sample_dir: Path) -> datasets.Dataset:
    return load_corpus(CorpusOptions(corpus=_files(sample_dir)))


@pytest.fixture(scope="module")
def one_process(sample_dir: Path, tmp_path_factory) -> datasets.Dataset:
    """The reference: the chapters annotated by one process with one spaCy worker."""
    cache = tmp_path_factory.mktemp("one-process")
    return annotate(_corpus(sample_dir), AnnotationOptions(cache_dir=str(cache), num_proc=1))


def _same(a: datasets.Dataset, b: datasets.Dataset) -> None:
    assert a.features == b.features and len(a) == len(b) == CHAPTERS
    for row_a, row_b in zip(a, b):
        assert row_a == row_b
    assert sum(len(row["sentence_starts"]) for row in a) > 100  # real annotations, not two empty tables


def test_three_shards_combined_equal_the_one_process_annotation(sample_dir, tmp_path, one_process):
    corpus, options = _corpus(sample_dir), AnnotationOptions(cache_dir=str(tmp_path), num_proc=1)
    shards = [annotate_shard(corpus, options, rank, 3) for rank in range(3)]
    sizes = [len(datasets.load_from_disk(str(shard))) for shard in shards]
    assert max(sizes) - min(sizes) <= 1  # pieces dealt round-robin
    target = combine_shards(corpus, options, 3)
    assert target == annotation_target(corpus, options)[2]
    assert not shard_root(target, 3).exists()  # the shards go once the entry is written
    _same(datasets.load_from_disk(str(target)), one_process)
    assert annotate(corpus, options)["entity_starts"] == one_process["entity_starts"]  # a cache hit


KILLED_RANK = """
import os, signal, sys
from ernie_cpt.data import sharded_annotation
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.options import AnnotationOptions

real = sharded_annotation.parse_pieces

def parse_then_die(*args, **kwargs):
    real(*args, **kwargs)  # the parsed pieces are on disk in the staging folder
    os.kill(os.getpid(), signal.SIGKILL)

sharded_annotation.parse_pieces = parse_then_die
corpus = load_corpus(CorpusOptions(corpus=sys.argv[2:]))
sharded_annotation.annotate_shard(corpus, AnnotationOptions(cache_dir=sys.argv[1], num_proc=1), 1, 2)
"""


@pytest.mark.slow
def test_a_rank_killed_mid_shard_leaves_nothing_taken_for_finished(sample_dir, tmp_path, one_process):
    corpus, options = _corpus(sample_dir), AnnotationOptions(cache_dir=str(tmp_path), num_proc=1)
    annotate_shard(corpus, options, 0, 2)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLED_RANK, str(tmp_path), *_files(sample_dir)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    target = annotation_target(corpus, options)[2]
    root = shard_root(target, 2)
    left = sorted(p.name for p in root.iterdir())
    assert left[0].startswith(".rank-1.staging-") and left[1:] == ["rank-0"]  # rank 1's work is only staged
    assert not target.exists()
    with pytest.raises(UserError, match=r"the annotation shards of rank\(s\) 1 are not in .*share the cache folder"):
        combine_shards(corpus, options, 2)
    assert not target.exists()
    annotate_shard(corpus, options, 1, 2)  # a later run: the killed rank's staging folder is removed
    assert sorted(p.name for p in root.iterdir()) == ["rank-0", "rank-1"]
    _same(datasets.load_from_disk(str(combine_shards(corpus, options, 2))), one_process)


TORCHRUN_CHILD = """
import logging, sys
import torch.distributed as dist
from ernie_cpt import distributed
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.data.sharded_annotation import annotate_on_all_ranks

logging.basicConfig(level=logging.INFO, format=f"rank {dist.get_rank() if dist.is_initialized() else '?'} %(message)s")
dist.init_process_group("gloo")
documents = annotate_on_all_ranks(load_corpus(CorpusOptions(corpus=sys.argv[2:])),
                                  AnnotationOptions(cache_dir=sys.argv[1], num_proc=1))
print(f"rank {distributed.rank()} of {distributed.world_size()}: {len(documents)} documents", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_gloo_processes_under_torchrun_equal_one_process(sample_dir, tmp_path, one_process):
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(TORCHRUN_CHILD), encoding="utf-8")
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(cache), *_files(sample_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "rank 0 of 2: 3 documents" in log and "rank 1 of 2: 3 documents" in log
    assert "Rank 0 of 2: annotating" in log and "Rank 1 of 2: annotating" in log  # each parsed its shard
    corpus = _corpus(sample_dir)
    target = annotation_target(corpus, AnnotationOptions(cache_dir=str(cache)))[2]
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no shards or staging left
    _same(datasets.load_from_disk(str(target)), one_process)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_prepare_on_two_torchrun_nodes_shares_the_parsing_into_one_cache(sample_dir, tmp_path, one_process):
    """Two torchrun agents (two "machines", --nnodes 2, c10d rendezvous) run ``ernie-cpt prepare``: each
    rank parses its shard into the shared cache and the entry is the 1-process annotation."""
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{_free_port()}", "--rdzv-id", "prepare-test",
               "-m", "ernie_cpt", "prepare", "--corpus", *_files(sample_dir), "--cache-dir", str(cache),
               "--num-proc", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    nodes = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    logs = [node.communicate(timeout=600)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], logs
    log = "".join(logs)
    mine, total = map(int, re.search(r"Rank 0 of 2: annotating (\d+) paragraph pieces of (\d+)", log).groups())
    assert mine == (total + 1) // 2  # rank 0 parsed its half; only rank 0 logs and reports
    assert log.count("3 documents: ") == 1
    corpus = _corpus(sample_dir)
    target = annotation_target(corpus, AnnotationOptions(cache_dir=str(cache)))[2]
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no shards or staging left
    _same(datasets.load_from_disk(str(target)), one_process)


MISMATCHED_CHILD = """
import sys
import torch.distributed as dist
from ernie_cpt import distributed
from ernie_cpt.data.corpus import CorpusOptions, load_corpus
from ernie_cpt.data.options import AnnotationOptions
from ernie_cpt.data.sharded_annotation import annotate_on_all_ranks
from ernie_cpt.errors import UserError

dist.init_process_group("gloo")
rank = dist.get_rank()
cache, corpus = sys.argv[2 + rank], sys.argv[4 + rank]  # what this "machine" sees
try:
    loaded = distributed.every_rank(lambda: load_corpus(CorpusOptions(corpus=[corpus])))
    annotate_on_all_ranks(loaded, AnnotationOptions(cache_dir=cache, num_proc=1))
except UserError as e:
    with open(f"{sys.argv[1]}/rank-{rank}.txt", "w") as out:  # not stdout: the ranks' lines would interleave
        out.write(f"rank {rank} error: {e}")
    sys.exit(2)
finally:
    dist.destroy_process_group()
"""


def _mismatched(tmp_path, caches: tuple[str, str], corpora: tuple[str, str]) -> list[str]:
    script = tmp_path / "mismatched.py"
    script.write_text(textwrap.dedent(MISMATCHED_CHILD), encoding="utf-8")
    errors = tmp_path / f"errors-{len(list(tmp_path.glob('errors-*')))}"
    errors.mkdir()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
               str(errors), *caches, *corpora]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    return [(errors / f"rank-{rank}.txt").read_text() for rank in range(2)]


@pytest.mark.slow
def test_a_corpus_or_cache_one_rank_lacks_is_one_clear_error_on_every_rank(sample_dir, tmp_path):
    """A path that exists on one machine only, and a cache folder the machines do not share, stop every
    rank at once with the same one-line error (not a wait until the process group's timeout)."""
    corpus = str(sorted(sample_dir.glob("*.txt"))[0])
    absent = str(tmp_path / "not-on-this-machine.txt")
    lines = _mismatched(tmp_path, (str(tmp_path / "cache"),) * 2, (corpus, absent))
    assert lines == [f"rank {r} error: on rank 1 of 2 only: corpus path {absent} does not exist; pass existing "
                     f"files or folders to --corpus" for r in (0, 1)]
    lines = _mismatched(tmp_path, (str(tmp_path / "cache-0"), str(tmp_path / "cache-1")), (corpus, corpus))
    assert len(lines) == 2 and all("rank 1 reads another corpus or cache than rank 0" in line for line in lines)
    assert not [p for cache in ("cache-0", "cache-1") for p in (tmp_path / cache).rglob("*.arrow")]  # nothing parsed


def test_more_ranks_than_paragraphs_leave_empty_shards_that_combine(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("Anne Elliot lived at Kellynch Hall.\n\nCaptain Wentworth sailed from Plymouth.\n",
                                  encoding="utf-8")
    corpus = load_corpus(CorpusOptions(corpus=[str(folder)]))
    options = AnnotationOptions(cache_dir=str(tmp_path / "sharded"), num_proc=1)
    for rank in range(3):  # two paragraph pieces: rank 2 gets none
        annotate_shard(corpus, options, rank, 3)
    combined = datasets.load_from_disk(str(combine_shards(corpus, options, 3)))
    alone = annotate(corpus, AnnotationOptions(cache_dir=str(tmp_path / "alone"), num_proc=1))
    assert list(combined) == list(alone)
    text = combined[0]["text"]
    assert [text[s:e] for s, e in zip(combined[0]["entity_starts"], combined[0]["entity_ends"])] == [
        "Anne Elliot", "Kellynch Hall", "Wentworth", "Plymouth"]
