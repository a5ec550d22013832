"""The benchmark harness's own logic, on synthetic records: no timing is asserted, ever."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from transformers import ErnieConfig

from benchmarks import run
from benchmarks.common import Recorded, Row, steady_batches, tokens_per_second
from benchmarks.efficiency import training_flops
from benchmarks.generation import consumed_per_second
from benchmarks.memory import peak_memory
from benchmarks.weighting import step_tokens_per_second

pytestmark = pytest.mark.minutes  # the scale rows' 21 commands


def _batch(task: str, asked: float, fetched: float, lengths: list[int]) -> Recorded:
    return Recorded(task, asked, fetched, lengths, targets=len(lengths))


def test_rows_compare_their_ratio_with_the_target_in_the_right_direction():
    assert Row("faster", 300.0, 100.0, "tokens/s", 2.0).met is True
    assert Row("faster", 150.0, 100.0, "tokens/s", 2.0).met is False
    assert Row("memory", 120.0, 100.0, "MiB", 1.3, higher_is_better=False).met is True
    assert Row("memory", 140.0, 100.0, "MiB", 1.3, higher_is_better=False).met is False
    assert Row("report only", 1.0, 2.0, "MiB").met is None
    assert Row("report only", 1.0, 2.0, "MiB").ratio == 0.5


def test_throughput_skips_warmup_and_the_last_batch_whose_step_may_not_have_ended():
    log = [_batch("t", 0.0, 0.1, [100]), _batch("t", 10.0, 10.1, [10, 20]), _batch("t", 11.0, 11.1, [30]),
           _batch("t", 13.0, 13.1, [999])]
    batches, seconds = steady_batches(log, warmup=1)
    assert [b.tokens for b in batches] == [30, 30] and seconds == 3.0
    assert tokens_per_second(log, warmup=1) == 20.0


def test_step_throughput_counts_whole_steps_of_several_batches():
    # Two tasks per step, steps asked at 0, 10, 12 and 15 s; one warm-up step; the last step is not counted.
    log = [_batch(task, asked, asked, [n]) for asked, n in ((0.0, 100), (10.0, 7), (12.0, 8), (15.0, 999))
           for task in ("a", "b")]
    assert step_tokens_per_second(log, tasks=2, warmup=1) == (7 + 7 + 8 + 8) / (15.0 - 10.0)


def test_consumption_leaves_out_the_time_spent_fetching_batches():
    log = [_batch("a", 0.0, 1.0, [5, 5]), _batch("b", 2.0, 2.5, [5]), _batch("a", 3.0, 3.5, [5, 5]),
           _batch("b", 4.0, 4.0, [5])]
    assert consumed_per_second(log, "a", warmup=0) == 4 / (1.0 + 0.5)
    assert consumed_per_second(log, "b", warmup=0) == 1 / 0.5


def test_flops_follow_the_documented_formula():
    config = ErnieConfig(vocab_size=100, hidden_size=8, num_hidden_layers=2, intermediate_size=32)
    matmul_params = 2 * (4 * 8 * 8 + 2 * 8 * 32)
    expected = 6 * matmul_params * 15 + 12 * 2 * 8 * (10**2 + 5**2) + 6 * (8 * 8 + 8 * 100) * 3
    assert training_flops(config, [10, 5], masked=3) == expected


def test_peak_memory_sees_the_memory_of_a_child_process():
    allocate = "import time; block = bytearray(300 * 2**20); time.sleep(2.5)"  # sampled every second
    peak, seconds = peak_memory([sys.executable, "-c", allocate], {})
    assert peak > 250 and seconds > 0


def test_main_prints_the_table_and_writes_the_same_rows_as_json(monkeypatch, tmp_path, capsys):
    rows = [Row("1a. throughput", 3000.0, 1000.0, "tokens/s", 2.0, note="tiny"),
            Row("6b. memory", 800.0, 1000.0, "MiB", higher_is_better=False)]
    monkeypatch.setattr(run, "have_accelerate", lambda: True)
    monkeypatch.setattr(run, "run", lambda settings, *rest: (rows, ""))
    assert run.main(["--quick", "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "| 1a. throughput | 3,000 tokens/s | 1,000 tokens/s | 3.00x | ≥ 2x | yes |" in out
    assert "| 6b. memory | 800 MiB | 1,000 MiB | 0.80x | - | - |" in out and "- 1a. tiny" in out
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["mode"] == "quick" and saved["cores"] >= 1
    assert [(r["measure"], r["ratio"], r["met"]) for r in saved["rows"]] == [("1a. throughput", 3.0, True),
                                                                            ("6b. memory", 0.8, None)]


def test_contention_phases_are_timed_apart_and_skip_the_batches_after_a_change():
    from benchmarks.contention import SETTLE, phase_rates

    assert SETTLE == 2
    # Phase 0: batches 1-5 (1 and 2 settle), phase 1: batches 6-10; one step per second, then two.
    asked = [0, 1, 2, 3, 4, 5, 7, 9, 11, 13, 15, 17]
    log = [_batch("t", t, t + 0.1, [10]) for t in asked]
    assert phase_rates(log, [1, 6, 11]) == [20 / 2, 20 / 4]  # batches 3, 4 over 3 -> 5 s; 8, 9 over 11 -> 15 s


def test_rows_are_ordered_by_number_then_letter():
    labels = ["10. scale-out", "2. flops", "1b. padded", "9. weighting", "1a. grouped", "4a. annotation"]
    ordered = sorted((Row(label, 1.0, 1.0, "x") for label in labels), key=run.row_order)
    assert [row.measure.split(" ")[0] for row in ordered] == ["1a.", "1b.", "2.", "4a.", "9.", "10."]


def test_scaleout_row_is_words_per_second_of_the_fastest_run_of_each_side(monkeypatch):
    from benchmarks import scaleout
    from benchmarks.common import Settings

    runs = iter([{"seconds": 50.0, "words": 1000}, {"seconds": 90.0, "words": 1000},   # 2 ranks, 1 rank
                 {"seconds": 40.0, "words": 1000}, {"seconds": 100.0, "words": 1000}])
    calls = []
    monkeypatch.setattr(scaleout, "annotation_seconds",
                        lambda corpus, ranks, nodes: calls.append((ranks, nodes)) or next(runs))
    row = scaleout.measure("sample", Path("corpus"), Settings(quick=False))
    assert calls == [(2, 1), (1, 1), (2, 1), (1, 1)]
    assert (row.ours, row.baseline, row.ratio, row.target) == (25.0, 1000 / 90, 90 / 40, 1.8)


def test_scaleout_across_two_nodes_starts_two_torchrun_agents_of_one_rank_each(monkeypatch):
    from benchmarks import scaleout
    from benchmarks.common import Settings

    one = scaleout._launcher(2, 1)
    two = scaleout._launcher(2, 2)
    assert one == ["--standalone", "--nproc_per_node", "2"]
    assert two[:4] == ["--nnodes", "2", "--nproc_per_node", "1"] and "c10d" in two
    runs = iter([{"seconds": 50.0, "words": 1000}, {"seconds": 90.0, "words": 1000}])
    calls = []
    monkeypatch.setattr(scaleout, "annotation_seconds",
                        lambda corpus, ranks, nodes: calls.append((ranks, nodes)) or next(runs))
    row = scaleout.measure("sample", Path("corpus"), Settings(quick=False), nodes=2, rounds=1)
    assert calls == [(2, 2), (1, 2)]  # a 1-rank side runs in one agent (annotation_seconds caps nodes by ranks)
    assert "--nnodes 2" in row.measure and row.ratio == 90 / 50


def test_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(run, "have_accelerate", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(run, "run", lambda settings, *rest: pytest.fail("the suite ran without a GPU"))
    assert run.main(["--device", "cuda", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m benchmarks.run: error: --device cuda: CUDA is not available here")
    assert err.count("\n") == 1


def test_cuda_runs_the_base_model_at_batch_64_with_the_same_dropout_on_both_sides(monkeypatch, capsys):
    import torch

    from benchmarks.common import Settings
    from ernie_cpt.modeling.encoder import encoder_config

    seen = []
    monkeypatch.setattr(run, "have_accelerate", lambda: True)
    monkeypatch.setattr(run, "check_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Test GPU")
    monkeypatch.setattr(run, "run", lambda settings, *rest: seen.append(settings) or ([], ""))
    assert run.main(["--device", "cuda:1"]) == 0
    assert "GPU Test GPU" in capsys.readouterr().out
    settings = seen[0]
    assert (settings.device, settings.model_size, settings.batch_size, settings.seq_length) == ("cuda:1", "base", 64,
                                                                                                  128)
    assert Settings.for_device(False, "cpu") == Settings(quick=False)
    config = encoder_config(Settings(quick=True, dropout=0.0, attention_dropout=0.05).model_options(), 100, 128, 8)
    assert (config.hidden_dropout_prob, config.attention_probs_dropout_prob) == (0.0, 0.05)


def test_the_training_rows_run_on_the_cpu_at_other_sizes_from_a_given_cache(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(run, "have_accelerate", lambda: True)
    monkeypatch.setattr(run, "run", lambda settings, *rest: seen.append((settings, *rest)) or ([], ""))
    argv = ["--quick", "--training-rows", "--model-size", "tiny", "--batch-size", "8", "--cache-dir", "C"]
    assert run.main([*argv, "--json", str(tmp_path / "out.json")]) == 0
    settings, training_only, cache = seen[0]
    assert (settings.device, settings.model_size, settings.batch_size, training_only, cache) == (
        "cpu", "tiny", 8, True, "C")
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["command"] == "python -m benchmarks.run --quick --training-rows --model-size tiny --batch-size 8"
    assert (saved["model_size"], saved["batch"]) == ("tiny", "8 x 128")


def test_a_cache_for_the_whole_suite_is_a_one_line_error(monkeypatch, capsys):
    monkeypatch.setattr(run, "have_accelerate", lambda: True)
    monkeypatch.setattr(run, "run", lambda settings, *rest: pytest.fail("the suite ran with a warm cache"))
    assert run.main(["--quick", "--cache-dir", "C"]) == 2
    assert capsys.readouterr().err == ("python -m benchmarks.run: error: --cache-dir applies to the training rows only "
                                       "(the annotation rows measure cache misses); add --training-rows or --device "
                                       "cuda\n")


def test_bert_base_flops_of_a_full_batch_follow_the_formula():
    config = ErnieConfig(vocab_size=30_000, hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
    matmul_params = 84_934_656  # 12 * (4 * 768^2 + 2 * 768 * 3072): BERT-base without embeddings
    expected = 6 * matmul_params * 64 * 128 + 12 * 12 * 768 * 64 * 128**2 + 6 * (768**2 + 768 * 30_000) * 1229
    assert training_flops(config, [128] * 64, masked=1229) == expected


def test_dropout_row_trains_with_dropout_0_against_the_default(monkeypatch):
    from benchmarks import dropout
    from benchmarks.common import Settings, Workload

    def fake_train(self, budgets):  # 2 tokens per second with dropout, 3 without
        rate = 2 if self.settings.dropout else 3
        assert self.settings.dropout == self.settings.attention_dropout
        return None, [_batch("km", i / rate, i / rate, [1]) for i in range(10)]

    monkeypatch.setattr(Workload, "train", fake_train)
    workload = Workload("w", "", None, None, None, Settings(quick=True))
    row = dropout.measure(workload)
    assert row.measure.startswith("11. ") and (row.ours, row.baseline) == (3.0, 2.0)


def test_anonymous_memory_is_summed_over_the_process_tree():
    from benchmarks.anon_memory import peak_anonymous

    # The parent holds 100 MiB, its forked child 200 MiB more (written, so not shared), for 1.5 s each.
    program = ("import os, time; parent = bytearray(100 * 2**20)\n"
               "if os.fork() == 0:\n    child = bytearray(200 * 2**20); time.sleep(1.5); os._exit(0)\n"
               "time.sleep(1.5); os.wait()")
    peak = peak_anonymous([sys.executable, "-c", program])
    assert peak.peak_mib > 280 and 95 < peak.main_peak_mib < 150 and peak.processes == 2


def test_prepare_words_per_second_is_read_from_its_log():
    from benchmarks.scale import words_per_second

    log = "ernie-cpt: Annotating 3 documents ...\nernie-cpt: Annotated 12,000 words in 4.0 s: 3,000 words/s with 1\n"
    assert words_per_second(log) == 3000.0
    with pytest.raises(RuntimeError, match="no annotation throughput"):
        words_per_second("ernie-cpt: Reusing cached annotations")


def test_scale_corpora_are_distinct_documents_and_a_smaller_one_is_part_of_a_larger_one():
    from benchmarks import scale_corpus

    small, small_stats = scale_corpus.build(0.1)
    large, large_stats = scale_corpus.build(0.4)
    for documents, stats, megabytes in ((small, small_stats, 0.1), (large, large_stats, 0.4)):
        assert len({text for _, _, text in documents}) == len({doc_id for doc_id, _, _ in documents}) == len(documents)
        assert stats["distinct"] and megabytes * 1e6 <= stats["bytes"] < megabytes * 1e6 + 60_000
    by_source = {doc_id.split(":")[0].split("/")[0] for doc_id, _, _ in small}
    assert {"pydoc", "stdlib"} <= by_source  # Python's own text is on every machine
    assert {doc_id for doc_id, _, _ in small} <= {doc_id for doc_id, _, _ in large}


def test_a_corpus_of_another_recipe_is_other_text_in_gzipped_shards_that_prepare_reads(tmp_path):
    from benchmarks import scale_corpus
    from ernie_cpt.data.corpus import CorpusOptions, load_corpus

    mixed, _ = scale_corpus.build(0.1)
    stats = scale_corpus.write(tmp_path / "reference", 0.1, recipe="reference", shards=3)
    assert sorted(p.name for p in (tmp_path / "reference").iterdir()) == [f"shard-0000{k}.jsonl.gz" for k in range(3)]
    assert stats["distinct"] and stats["sources"]["libraries"]["documents"] > 0  # the packages of this Python
    corpus = load_corpus(CorpusOptions(corpus=[str(tmp_path / "reference")]))
    assert len(corpus) == stats["documents"] and len(set(corpus["doc_id"])) == len(corpus)
    assert not set(corpus["text"]) & {text for _, _, text in mixed}
    assert scale_corpus.cached(tmp_path / "reference", 0.1, recipe="reference", shards=3) == json.loads(
        (tmp_path / "reference.json").read_text())  # kept, not built again


def test_scale_rows_compare_16_times_the_corpus_with_it(monkeypatch):
    from benchmarks import scale
    from benchmarks.common import Settings

    stats = {"distinct": True, "bytes": 10**6, "words": 150_000, "documents": 300}
    monkeypatch.setattr(scale, "corpus", lambda megabytes, recipe="mixed": (Path(f"{megabytes}.jsonl"), stats))
    monkeypatch.setattr(scale, "peak_memory", lambda command, env: (1300.0 if "4.0.jsonl" in command else 1000.0, 1))
    monkeypatch.setattr(scale, "prepare", lambda path, cache: (1100.0, 9000.0) if "16.0" in str(path) else (1000.0,
                                                                                                            10000.0))
    vocabularies = []
    monkeypatch.setattr(scale, "pretrain", lambda path, cache, run, vocab=None: vocabularies.append(vocab) or (
        (760.0 if vocab else 900.0) if "16.0" in str(path) else 700.0))
    monkeypatch.setattr(scale, "vocabulary", lambda run: 30_000 if "16x" in run else 7_000)
    monkeypatch.setattr(scale, "inspect", lambda path, cache: (330.0, "ir_relevance") if "16.0" in str(path) else
                        (300.0, "sentence_distance"))
    rows = {row.measure.split(" ")[0]: row for row in scale.measure(Settings(quick=False))}
    assert (rows["6a."].ratio, rows["6a."].met) == (1.3, True)
    assert (rows["6c."].ratio, rows["6c."].met) == (1.1, True)
    assert (rows["4c."].ratio, rows["4c."].met) == (0.9, True)
    assert rows["6d."].ratio == 900 / 700 and not rows["6d."].met and "30,000 vs 7,000" in rows["6d."].note
    assert vocabularies == [None, None, 7_000]  # 6e: 16x at the vocabulary of 1x
    assert rows["6e."].ratio == 760 / 700 and rows["6e."].met
    assert rows["6f."].ratio == 1.1 and "ir_relevance at 16x" in rows["6f."].note
    reference = {row.measure.split(" ")[0] for row in scale.measure(Settings(quick=False), recipe="reference")}
    assert reference == {"6c.", "4c.", "6d.", "6e.", "6f."}  # no 4x of another recipe


def test_annotator_row_is_words_per_second_of_the_fastest_run_of_each_side(monkeypatch):
    from benchmarks import annotators
    from benchmarks.common import Settings

    rates = iter([1500.0, 1000.0, 1600.0, 900.0])  # fast, full, fast, full
    calls = []
    monkeypatch.setattr(annotators, "annotation_rate", lambda corpus, annotator: calls.append(annotator) or next(rates))
    row = annotators.measure("sample", Path("corpus"), Settings(quick=False))
    assert calls == ["fast", "full", "fast", "full"]
    assert (row.ours, row.baseline, row.ratio, row.target) == (1600.0, 1000.0, 1.6, 1.5)


@pytest.mark.slow
def test_scale_rows_run_on_tiny_corpora(tmp_path, monkeypatch):
    """Rows 6a, 6c-6f and 4c for real, on corpora of 4 KB to 64 KB."""
    from benchmarks import scale
    from benchmarks.common import Settings

    monkeypatch.setattr(scale, "CORPUS_CACHE", tmp_path)
    rows = scale.measure(Settings(quick=True), base=0.004)
    assert [row.measure.split(" ")[0] for row in rows] == ["6a.", "6c.", "4c.", "6d.", "6e.", "6f."]
    assert all(row.ours > 0 and row.baseline > 0 for row in rows)
    assert all(100 < row.baseline < 4000 for row in rows if row.unit == "MiB")  # a Python process with spaCy or torch


def test_annotator_statistics_put_fast_beside_full():
    from benchmarks.annotators import statistics_table

    task = {"examples": 100, "labels": {"adjacent": 0.5, "same document": 0.3, "other document": 0.2}}
    stats = {"full": {"sentence": 1000, "entity": 50, "noun_chunk": 400, "sentence_distance": task},
             "fast": {"sentence": 1100, "entity": 50, "noun_chunk": 380,
                      "sentence_distance": {**task, "examples": 110}}}
    table = statistics_table(stats)
    assert "| sentences | 1,000 | 1,100 | 1.10 |" in table and "| noun chunks | 400 | 380 | 0.95 |" in table
    assert "| sentence_distance examples | 100 | 110 | 1.10 |" in table
    assert "| sentence_distance | adjacent 50%, same document 30%, other document 20% |" in table


def test_the_fast_pipeline_runs_the_senter_instead_of_the_parser(sample_dir):
    from benchmarks.annotators import component_seconds

    paragraphs = (sample_dir / "chapter-01.txt").read_text(encoding="utf-8").split("\n\n")[:8]
    full, fast = component_seconds(paragraphs, "full"), component_seconds(paragraphs, "fast")
    assert {"tok2vec", "tagger", "parser", "ner"} <= set(full) and "senter" not in full
    assert {"tok2vec", "tagger", "senter", "ner"} <= set(fast) and not {"parser", "attribute_ruler"} & set(fast)
    assert all(seconds >= 0 for seconds in [*full.values(), *fast.values()])


def test_the_annotations_of_two_corpora_put_together_are_those_of_the_pair(tmp_path, caplog):
    import logging

    import datasets

    from benchmarks.scale_cap import combine
    from ernie_cpt.data.annotate import AnnotationOptions, annotate
    from ernie_cpt.data.corpus import CorpusOptions, read_corpus

    first, second = tmp_path / "first.jsonl", tmp_path / "second"
    first.write_text("\n".join(json.dumps({"id": f"a{k}", "text": f"Anne Elliot walked to Uppercross {k} times.\n\n"
                                                                    f"Mary was unwell."}) for k in range(3)) + "\n")
    second.mkdir()
    (second / "b.txt").write_text("Captain Wentworth came back from the sea.\n\nHe was rich.\n", encoding="utf-8")
    cache = str(tmp_path / "cache")
    for part in (first, second):
        annotate(read_corpus(CorpusOptions(corpus=[str(part)])), AnnotationOptions(cache_dir=cache, num_proc=1))
    combined = datasets.load_from_disk(str(combine([first, second], cache)))
    pair = annotate(read_corpus(CorpusOptions(corpus=[str(first), str(second)])),
                    AnnotationOptions(cache_dir=str(tmp_path / "real"), num_proc=1))
    assert combined.to_dict() == pair.to_dict() and len(combined) == 4
    with caplog.at_level(logging.INFO):
        again = annotate(read_corpus(CorpusOptions(corpus=[str(first), str(second)])),
                         AnnotationOptions(cache_dir=cache, num_proc=1))
    assert "Reusing cached annotations" in caplog.text and again["doc_id"] == ["a0", "a1", "a2", "b.txt"]
