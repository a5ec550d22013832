"""The folders models are saved to and read back from: both layouts, every head and the task embedding.

``ColumnPerTask`` (tests/conftest.py) is a tiny architecture that does not fold into one ErnieModel
(each task has its own copy of the top layer), registered for these tests only: export must write
ernie-cpt's own folder for it, and the loader must rebuild it exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import ColumnPerTask
from safetensors.torch import load_file
from transformers import ErnieForMaskedLM

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import Architecture, ArchitectureOptions
from ernie_cpt.modeling.builder import HeadSpec, build_model
from ernie_cpt.modeling.encoder import encoder_config
from ernie_cpt.modeling.options import ModelOptions
from ernie_cpt.modeling.saved_model import (
    HEADS_FILE,
    MODEL_JSON,
    STATE_DICT_FILE,
    read_model_folder,
    save_model_folder,
)
from pretasks import IGNORE_INDEX, TASKS

pytestmark = pytest.mark.usefixtures("column_per_task")

VOCAB = 60
TASK_HEADS = {"knowledge_masking": HeadSpec("masked_lm", VOCAB), "capitalization": HeadSpec("token_classification", 2),
              "sentence_reordering": HeadSpec("sequence_classification", 9)}
TASK_IDS = {"knowledge_masking": 0, "capitalization": 1, "sentence_reordering": 3}


def _model(architecture: str = "hard", task_ids: dict[str, int] = TASK_IDS, seed: int = 0) -> Architecture:
    torch.manual_seed(seed)
    options = ModelOptions(model_size="tiny", dropout=0.0, attention_dropout=0.0)
    config = encoder_config(options, VOCAB, 64, len(TASKS))
    model = build_model(TASK_HEADS, task_ids, options, ArchitectureOptions(architecture=architecture), VOCAB, 64,
                        len(TASKS), config)
    with torch.no_grad():  # trained-looking weights: no head or bias left at its initial value
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def _batch(task: str) -> dict[str, torch.Tensor]:
    input_ids = torch.tensor([[2, 10, 4, 12, 3], [2, 13, 14, 3, 0]])
    x = IGNORE_INDEX
    labels = {"knowledge_masking": [[x, x, 11, x, x], [x, 13, x, x, x]],
              "capitalization": [[x, 1, 0, 1, x], [x, 0, 1, x, x]], "sentence_reordering": [4, 7]}[task]
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long(),
            "token_type_ids": torch.zeros_like(input_ids), "labels": torch.tensor(labels)}


def _assert_same(a: Architecture, b: Architecture) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    for task in TASK_HEADS:
        assert torch.equal(a(task, _batch(task)).logits, b(task, _batch(task)).logits)


def test_hard_sharing_is_saved_as_an_ernie_for_masked_lm_with_the_other_heads_apart(tmp_path):
    model = _model()
    description = save_model_folder(model, tmp_path, {"step": 7})
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["ErnieForMaskedLM"]
    assert description["layout"] == "transformers" and description["masked_lm_task"] == "knowledge_masking"
    assert description["step"] == 7 and description["task_ids"] == TASK_IDS
    assert description["heads"]["sentence_reordering"] == {"head": "sequence_classification", "num_labels": 9}
    hf_file = load_file(tmp_path / "model.safetensors")
    head = model.heads["knowledge_masking"]
    assert torch.equal(hf_file["cls.predictions.transform.dense.weight"], head.transform.dense.weight)
    assert torch.equal(hf_file["cls.predictions.bias"], head.bias)
    assert "cls.predictions.decoder.weight" not in hf_file  # tied to the word embeddings, stored once
    assert torch.equal(hf_file["ernie.pooler.dense.weight"], model.encoder.pooler.dense.weight)
    assert sorted({k.split(".")[1] for k in load_file(tmp_path / HEADS_FILE)}) == ["capitalization",
                                                                                  "sentence_reordering"]
    loaded, _ = read_model_folder(tmp_path)
    _assert_same(model, loaded.eval())


def test_the_transformers_masked_lm_predicts_what_the_knowledge_masking_head_does(tmp_path):
    model = _model()
    save_model_folder(model, tmp_path, {})
    hf = ErnieForMaskedLM.from_pretrained(tmp_path).eval()
    batch = _batch("knowledge_masking")
    ours = model("knowledge_masking", batch).logits  # the two target positions, task id 0
    theirs = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.allclose(theirs[batch["labels"] != IGNORE_INDEX], ours, atol=1e-5)


def test_without_a_masked_lm_head_on_task_id_0_the_encoder_alone_is_the_transformers_model(tmp_path):
    model = _model(task_ids={**TASK_IDS, "knowledge_masking": 5})  # e.g. a masked-LM task on another row
    description = save_model_folder(model, tmp_path, {})
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["ErnieModel"]
    assert description["masked_lm_task"] is None
    assert {k.split(".")[1] for k in load_file(tmp_path / HEADS_FILE)} == set(TASK_HEADS)
    loaded, _ = read_model_folder(tmp_path)
    _assert_same(model, loaded.eval())


def test_an_architecture_that_does_not_fold_is_saved_as_its_state_dict(tmp_path):
    model = _model("test_column_per_task")
    assert model.ernie_model() is None
    description = save_model_folder(model, tmp_path, {"step": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_JSON, STATE_DICT_FILE]  # no config.json
    assert description["layout"] == "state_dict" and description["architecture"]["architecture"] == ColumnPerTask.name
    loaded, _ = read_model_folder(tmp_path)
    assert isinstance(loaded, ColumnPerTask)
    _assert_same(model, loaded.eval())


def test_a_non_folding_model_starts_a_run_of_the_same_architecture_only(tmp_path):
    source = _model("test_column_per_task")
    options = ModelOptions(model_size="tiny")
    new = build_model({**TASK_HEADS, "token_document_relation": HeadSpec("token_classification", 2)},
                      {**TASK_IDS, "token_document_relation": 2}, options,
                      ArchitectureOptions(architecture=ColumnPerTask.name), VOCAB, 64, len(TASKS), source=source)
    theirs, ours = source.state_dict(), new.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in theirs.items() if not k.startswith("columns."))
    with pytest.raises(UserError, match=f"--init-from is a {ColumnPerTask.name} model.*pass --architecture "
                                        f"{ColumnPerTask.name}"):
        build_model(TASK_HEADS, TASK_IDS, options, ArchitectureOptions(), VOCAB, 64, len(TASKS), source=source)


def test_a_hard_model_starts_a_new_run_with_every_head_of_a_task_it_shares(tmp_path):
    source = _model()
    heads = {**TASK_HEADS, "sentence_reordering": HeadSpec("sequence_classification", 3),  # other classes: new
             "token_document_relation": HeadSpec("token_classification", 2)}  # a new task
    new = build_model(heads, {**TASK_IDS, "token_document_relation": 2}, ModelOptions(), ArchitectureOptions(),
                      VOCAB, 64, len(TASKS), source=source)
    theirs, ours = source.state_dict(), new.state_dict()
    kept = [k for k in theirs if not k.startswith("heads.sentence_reordering.")]
    assert all(torch.equal(ours[k], theirs[k]) for k in kept)
    assert "encoder.embeddings.task_type_embeddings.weight" in kept
    assert ours["heads.sentence_reordering.classifier.weight"].shape == (3, 128)


def test_weights_that_do_not_match_the_description_are_refused(tmp_path):
    save_model_folder(_model(), tmp_path, {})
    description = json.loads((tmp_path / MODEL_JSON).read_text())
    description["heads"]["sentence_reordering"]["num_labels"] = 4
    (tmp_path / MODEL_JSON).write_text(json.dumps(description))
    with pytest.raises(UserError, match=r"do not match .*other shape: \['heads.sentence_reordering.classifier"):
        read_model_folder(tmp_path)
    (tmp_path / MODEL_JSON).unlink()
    with pytest.raises(UserError, match=f"has no {MODEL_JSON}"):
        read_model_folder(Path(tmp_path))


def test_a_non_folding_model_described_as_a_transformers_folder_is_refused(tmp_path):
    save_model_folder(_model("test_column_per_task"), tmp_path, {})
    description = json.loads((tmp_path / MODEL_JSON).read_text())
    (tmp_path / MODEL_JSON).write_text(json.dumps({**description, "layout": "transformers"}))  # edited by hand
    with pytest.raises(UserError, match=f'says layout "transformers" for a {ColumnPerTask.name} model.*export the '
                                        f"model again"):
        read_model_folder(tmp_path)
