"""finetune --output-dir: the saved folder replaces an old one whole, with id2label, the tokenizer's
model_max_length, metrics.json and the umask's modes, and leaves no temporary folder behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, ErnieConfig, ErnieForSequenceClassification

from ernie_cpt.commands.finetune_output import save_output
from ernie_cpt.data.tokenizer import load_tokenizer

TOKENIZER = Path(__file__).resolve().parents[2] / "data" / "sample-tokenizer"


def test_save_output_replaces_the_folder_with_labels_and_umask_modes(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("from an earlier run")
    config = ErnieConfig(vocab_size=3000, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=48, num_labels=3)
    previous = os.umask(0o027)
    try:
        save_output(out, ErnieForSequenceClassification(config), load_tokenizer(TOKENIZER), ["neg", "neu", "pos"],
                    48, {"accuracy_mean": 0.5})
    finally:
        os.umask(previous)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary or moved-aside folder left
    assert not (out / "old.txt").exists()
    model = AutoModelForSequenceClassification.from_pretrained(str(out))
    assert model.config.id2label == {0: "neg", 1: "neu", 2: "pos"} and model.config.label2id["pos"] == 2
    assert AutoTokenizer.from_pretrained(str(out)).model_max_length == 48
    assert json.loads((out / "metrics.json").read_text()) == {"accuracy_mean": 0.5}
    assert stat.S_IMODE(out.stat().st_mode) == 0o750
    assert {stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {0o640}
