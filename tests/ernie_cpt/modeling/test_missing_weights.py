"""A model folder with a weights file missing (an incomplete copy) is a one-line error naming the file, for every
weights file a folder can have: the state dict of a routed export, model.safetensors, a shard of an index, the
heads file, a checkpoint's training state."""

from __future__ import annotations

import json

import pytest
from test_saved_model import _model

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.safe_loading import load_state, weight_files
from ernie_cpt.modeling.saved_model import HEADS_FILE, STATE_DICT_FILE, read_model_folder, save_model_folder

pytestmark = pytest.mark.usefixtures("column_per_task")

INCOMPLETE = "(its weights): the folder is incomplete; export the model again, or copy the file back"


@pytest.mark.parametrize(("architecture", "missing"), [("test_column_per_task", STATE_DICT_FILE),
                                                       ("hard", "model.safetensors"), ("hard", HEADS_FILE)])
def test_a_missing_weights_file_is_named(tmp_path, architecture, missing):
    save_model_folder(_model(architecture), tmp_path, {})
    (tmp_path / missing).unlink()
    with pytest.raises(UserError) as raised:
        read_model_folder(tmp_path)
    assert str(raised.value) == f"{tmp_path} has no {missing} {INCOMPLETE}"


def test_a_missing_shard_and_a_damaged_index_are_named(tmp_path):
    (tmp_path / "model-00001-of-00002.safetensors").write_bytes(b"")
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(UserError) as raised:
        weight_files(tmp_path, "model folder")
    assert str(raised.value) == f"{tmp_path} has no model-00002-of-00002.safetensors {INCOMPLETE}"
    index.write_text("{")
    with pytest.raises(UserError, match=r"model.safetensors.index.json is damaged \(JSONDecodeError: "):
        weight_files(tmp_path, "model folder")


def test_a_missing_training_state_is_named(tmp_path):
    with pytest.raises(UserError) as raised:
        load_state(tmp_path / "training_state.pt")
    assert str(raised.value) == (f"{tmp_path} has no training_state.pt (its training state): the folder is "
                                 f"incomplete; export the model again, or copy the file back")
