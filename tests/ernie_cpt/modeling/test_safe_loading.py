"""Safe loading: model weights only from safetensors, state only with torch.load(weights_only=True);
a pickle dropped in as a model file is refused (one error line, exit code 2) and never unpickled."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import BertConfig, ErnieConfig

from ernie_cpt.modeling.safe_loading import UnreadableFile, load_state, load_weights
from ernie_cpt.training.checkpoint import latest_checkpoint, save_checkpoint
from tests.helpers import expect_error


def evil_pickle(marker: Path) -> bytes:
    """A pickle (protocol 2) that runs ``touch marker`` when unpickled."""
    return b"\x80\x02" + f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def test_the_evil_pickle_really_runs_code_when_unpickled(tmp_path):
    """So that ``not marker.exists()`` below means the file was refused, not that the payload is inert."""
    import pickle

    pickle.loads(evil_pickle(tmp_path / "pwned"))
    assert (tmp_path / "pwned").exists()




@pytest.fixture
def bert_folder(tmp_path) -> Path:
    """A BERT model folder (config.json) without weights yet."""
    folder = tmp_path / "bert"
    BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=64).save_pretrained(folder)
    return folder


def _run_with_one_checkpoint(root: Path) -> Path:
    model = torch.nn.Linear(2, 2)
    step = save_checkpoint(root, 10, model, {"optimizer": {}}, {"step": 10}, keep=2)
    (root / "encoder_config.json").write_text('{"model_type": "ernie"}\n', encoding="utf-8")
    return step


def test_a_torch_save_pickle_as_checkpoint_weights_is_refused(tmp_path, capsys, caplog):
    step = _run_with_one_checkpoint(tmp_path / "run")
    torch.save({"weight": torch.ones(2, 2), "bias": torch.ones(2)}, step / "model.safetensors")

    with caplog.at_level(logging.WARNING):
        expect_error(["export", str(tmp_path / "run"), str(tmp_path / "out")], capsys, None,
                     "has no readable checkpoint yet")
    assert "model.safetensors is not a readable safetensors file (a zip archive such as torch.save writes)" \
           in caplog.text
    assert "never unpickled" in caplog.text
    assert not (tmp_path / "out").exists()


def test_a_malicious_training_state_is_never_unpickled(tmp_path, caplog):
    marker = tmp_path / "pwned"
    step = _run_with_one_checkpoint(tmp_path / "run")
    (step / "training_state.pt").write_bytes(evil_pickle(marker))

    with caplog.at_level(logging.WARNING):
        assert latest_checkpoint(tmp_path / "run") is None
    assert "holds more than tensors and plain data, and was not loaded (UnpicklingError" in caplog.text
    assert not marker.exists()
    with pytest.raises(UnreadableFile):
        load_state(step / "training_state.pt")
    assert not marker.exists()


def test_a_malicious_pickle_as_weights_is_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "model.safetensors").write_bytes(evil_pickle(marker))
    with pytest.raises(UnreadableFile, match="not a readable safetensors file"):
        load_weights(tmp_path / "model.safetensors")
    assert not marker.exists()


def test_init_from_a_folder_with_pickled_weights_is_refused(bert_folder, tmp_path, capsys):
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(100, 32)}, bert_folder / "model.safetensors")

    expect_error(["pretrain", "--corpus", str(tmp_path), "--output-dir", str(tmp_path / "run"),
                  "--init-from", str(bert_folder)], capsys, None,
                 f"{bert_folder / 'model.safetensors'} is not a readable safetensors file (a zip archive such as "
                 f"torch.save writes)", "never unpickled", "safe_serialization=True")
    assert not (tmp_path / "run").exists()


def test_init_from_a_folder_with_only_pytorch_model_bin_is_refused(bert_folder, tmp_path, capsys):
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(100, 32)}, bert_folder / "pytorch_model.bin")

    expect_error(["pretrain", "--corpus", str(tmp_path), "--output-dir", str(tmp_path / "run"),
                  "--init-from", str(bert_folder)], capsys, None,
                 f"--init-from {bert_folder} has no model.safetensors (only pytorch_model.bin, a pickle, which is "
                 f"never loaded)", "safe_serialization=True")


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_finetune_model_dir_with_pickled_weights_is_refused(tmp_path, capsys, weights):
    folder = tmp_path / "ernie"  # an ERNIE folder: a BERT one is refused for its model type first
    ErnieConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                intermediate_size=64).save_pretrained(folder)
    marker = tmp_path / "pwned"
    (folder / weights).write_bytes(evil_pickle(marker))
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 1}\n', encoding="utf-8")

    expect_error(["finetune", str(folder), "--train", str(data), "--test", str(data)], capsys, None,
                 "is not a readable safetensors file (a pickle)" if weights == "model.safetensors"
                 else "has no model.safetensors (only pytorch_model.bin, a pickle, which is never loaded)")
    assert not marker.exists()


def test_safetensors_weights_load(tmp_path):
    save_file({"weight": torch.ones(2, 2)}, tmp_path / "model.safetensors")
    assert torch.equal(load_weights(tmp_path / "model.safetensors")["weight"], torch.ones(2, 2))
