"""finetune --output-dir: the saved folder replaces an old one whole, with id2label, the tokenizer's
model_max_length, metrics.json and the umask's modes, and leaves no temporary folder behind."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from transformers import AutoModelForSequenceClassification, AutoTokenizer, ErnieConfig, ErnieForSequenceClassification

from ernie_cpt.commands.finetune import saved_model_line
from ernie_cpt.commands.finetune_output import save_output
from ernie_cpt.data.tokenizer import load_tokenizer
from ernie_cpt.modeling.saved_model import MODEL_JSON

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


def test_finetune_says_where_the_model_went_or_that_it_kept_none(tmp_path):
    """Issue 27: without --output-dir, finetune saved nothing and said nothing."""
    assert saved_model_line({"saved_seed": None}, None) == ("The fine-tuned model was not saved: add --output-dir DIR "
                                                            "to keep it (with its tokenizer and labels).")
    hard, routed = tmp_path / "hard", tmp_path / "routed"
    for folder, written in ((hard, "config.json"), (routed, MODEL_JSON)):  # what each save_pretrained writes
        folder.mkdir()
        (folder / written).write_text("{}")
    assert saved_model_line({"saved_seed": 3}, str(hard)) == (
        f"Fine-tuned model (seed 3, the best validation accuracy): {hard}; load it with "
        "AutoModelForSequenceClassification.from_pretrained(...)")
    assert "ArchitectureForSequenceClassification.from_pretrained" in saved_model_line({"saved_seed": 1}, str(routed))
