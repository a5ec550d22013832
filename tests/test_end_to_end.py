"""prepare → pretrain a tiny model → the loss goes down → export → load in a fresh process; resume."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from ernie_cpt.cli import main
from ernie_cpt.training.run_log import read_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus_args(sample_dir):
    return ["--corpus", *[str(p) for p in sorted(sample_dir.glob("*.txt"))[:4]]]


def _pretrain_args(corpus_args, run_dir, steps, *extra):
    return ["pretrain", *corpus_args, "--output-dir", str(run_dir), "--model-size", "tiny", "--max-steps", str(steps),
            "--batch-size", "16", "--learning-rate", "1e-3", "--logging-steps", "1", "--eval-steps", "0",
            "--vocab-size", "3000", "--seed", "7", *extra]


def test_prepare_twice_reuses_the_cache(corpus_args, cache_dir, caplog, capsys):
    with caplog.at_level(logging.INFO):
        assert main(["prepare", *corpus_args, "--output-dir", cache_dir]) == 0
        caplog.clear()
        assert main(["prepare", *corpus_args, "--output-dir", cache_dir]) == 0
    assert "Reusing cached annotations" in caplog.text
    assert "4 documents" in capsys.readouterr().out


def test_pretrain_lowers_the_loss_and_exports_a_loadable_model(corpus_args, tmp_path):
    run_dir, out_dir = tmp_path / "run", tmp_path / "export"
    assert main(_pretrain_args(corpus_args, run_dir, 60, "--save-steps", "30")) == 0
    losses = [r["loss"] for r in read_records(run_dir, "train")]
    assert len(losses) == 60
    # It starts near the targets' prior (6.35 nats over the first 10 steps, not ln 3000 = 8.0: the masked-LM
    # bias starts at the prior) and learns context beyond it: 5.97 over the last 10 when measured.
    assert sum(losses[:10]) / 10 < 7.0 and sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.25
    final_eval = read_records(run_dir, "eval")[-1]
    assert final_eval["step"] == 60 and final_eval["scored"] > 100 and 0 < final_eval["accuracy"] < 1

    assert main(["export", str(run_dir), str(out_dir)]) == 0
    script = f"""
import json
from transformers import AutoModel, AutoTokenizer, ErnieForSequenceClassification
model = AutoModel.from_pretrained({str(out_dir)!r})
tokenizer = AutoTokenizer.from_pretrained({str(out_dir)!r})
clf, info = ErnieForSequenceClassification.from_pretrained({str(out_dir)!r}, num_labels=2, output_loading_info=True)
out = model(**tokenizer("Anne Elliot walked to Uppercross.", return_tensors="pt"))
print(json.dumps({{"model": type(model).__name__, "use_task_id": model.config.use_task_id,
                   "missing": sorted(info["missing_keys"]), "unexpected": sorted(info["unexpected_keys"]),
                   "hidden": list(out.last_hidden_state.shape), "tokens": tokenizer.tokenize("Anne Elliot")}}))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["model"] == "ErnieModel" and loaded["use_task_id"] is True
    assert loaded["missing"] == ["classifier.bias", "classifier.weight"]
    assert all(key.startswith("cls.predictions.") for key in loaded["unexpected"])  # the masked-LM head
    assert loaded["hidden"][0] == 1 and loaded["hidden"][2] == 128
    assert loaded["tokens"][0] == "anne"
    description = json.loads((out_dir / "ernie_cpt_model.json").read_text())
    assert description["task_ids"] == {"knowledge_masking": 0} and description["step"] == 60


def test_resume_after_sigkill_repeats_the_uninterrupted_losses(corpus_args, tmp_path):
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    assert main(_pretrain_args(corpus_args, reference, 40, "--save-steps", "10")) == 0
    expected = [(r["step"], r["loss"]) for r in read_records(reference, "train")]

    command = [sys.executable, "-m", "ernie_cpt", *_pretrain_args(corpus_args, resumed, 40, "--save-steps", "10")]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (resumed / "checkpoints" / "step-00000020").exists():
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before step 20"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (resumed / "checkpoints" / "step-00000040").exists()

    assert main([*_pretrain_args(corpus_args, resumed, 40, "--save-steps", "10"), "--resume"]) == 0
    assert [(r["step"], r["loss"]) for r in read_records(resumed, "train")] == expected


def test_pretrain_continues_a_local_bert_checkpoint(corpus_args, sample_tokenizer, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertForMaskedLM

    bert_dir, run_dir = tmp_path / "bert", tmp_path / "run"
    config = BertConfig(vocab_size=len(sample_tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(bert_dir)
    sample_tokenizer.save_pretrained(bert_dir)

    assert main(["pretrain", *corpus_args, "--output-dir", str(run_dir), "--init-from", str(bert_dir),
                 "--max-steps", "3", "--batch-size", "4", "--eval-steps", "0"]) == 0
    encoder_config = json.loads((run_dir / "encoder_config.json").read_text())
    assert (encoder_config["hidden_size"], encoder_config["num_hidden_layers"]) == (64, 2)
    assert encoder_config["use_task_id"] is True
    assert (run_dir / "tokenizer" / "tokenizer.json").read_text() == (bert_dir / "tokenizer.json").read_text()
    # Three small steps move the weights only a little from BERT's.
    bert = load_file(bert_dir / "model.safetensors")
    trained = load_file(run_dir / "checkpoints" / "step-00000003" / "model.safetensors")
    before = bert["bert.encoder.layer.0.attention.self.query.weight"]
    after = trained["encoder.encoder.layer.0.attention.self.query.weight"]
    assert 0 < (after - before).abs().max() < 0.05


@pytest.mark.parametrize("disable", [False, True])
def test_tqdm_disable_silences_the_training_bar(corpus_args, tmp_path, disable):
    command = [sys.executable, "-m", "ernie_cpt", *_pretrain_args(corpus_args, tmp_path / "run", 3)]
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"} | {"HF_HUB_OFFLINE": "1"}
    if disable:  # tqdm reads any value as true ("0" too): only an unset variable leaves the bar on
        env["TQDM_DISABLE"] = "1"
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("Pre-training:" in result.stderr) != disable
