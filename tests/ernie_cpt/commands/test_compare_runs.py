"""The ``none`` baseline is the encoder pre-training starts from: same seed, same config, same weights. A finished
run is kept only for the fine-tuning it would get now, down to the content of the labelled files."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import ErnieModel

from ernie_cpt.commands.compare_runs import RESULT, _read_finished, _write_initial_encoder, finetune_settings
from ernie_cpt.commands.options import FinetuneOptions
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import ArchitectureOptions
from ernie_cpt.modeling.builder import build_model
from ernie_cpt.modeling.encoder import ModelOptions, encoder_config
from pretasks import TASKS, get_task

NAMES = ["knowledge_masking", "capitalization", "sentence_reordering"]


def test_the_none_baseline_has_the_weights_pretraining_starts_from(sample_tokenizer, tmp_path):
    options = ModelOptions(model_size="tiny")
    source = tmp_path / "run"
    source.mkdir()
    encoder_config(options, len(sample_tokenizer), 64, len(TASKS)).to_json_file(str(source / "encoder_config.json"))
    sample_tokenizer.save_pretrained(str(source / "tokenizer"))
    tasks = {name: get_task(name)(sample_tokenizer, get_task(name).options_class(), 64) for name in NAMES}

    _write_initial_encoder(source, options, 5, tmp_path / "none")

    torch.manual_seed(5)  # as pretrain does right before it builds the model
    model = build_model(tasks, {name: task.task_id for name, task in tasks.items()}, options, ArchitectureOptions(),
                        len(sample_tokenizer), 64, len(TASKS))
    expected = {k.removeprefix("encoder."): v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    saved = ErnieModel.from_pretrained(str(tmp_path / "none")).state_dict()
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    torch.manual_seed(6)
    assert not torch.equal(ErnieModel(model.config).embeddings.word_embeddings.weight,
                           saved["embeddings.word_embeddings.weight"])


def test_a_finished_run_whose_downstream_file_changed_is_not_kept(tmp_path):
    """compare run again after --downstream-train was edited (same path): the finished runs' scores are of the old
    file, so they are refused, naming the file, not mixed into the report with new ones. A run recorded before the
    contents were is read as before."""
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    for path in (train, test):
        path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n')
    options = FinetuneOptions(train=str(train), test=str(test))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    recorded = {"downstream_options": finetune_settings(options)}
    (run_dir / RESULT).write_text(json.dumps(recorded))
    assert _read_finished(run_dir, options) == recorded

    train.write_text('{"text": "a", "label": "y"}\n{"text": "b", "label": "x"}\n')

    with pytest.raises(UserError) as error:
        _read_finished(run_dir, options)
    assert str(error.value) == (f"{run_dir} was run with other downstream options (the content of the fine-tuning "
                                f"train file {train} changed); run compare with the options it was started with, or "
                                f"use a new --output-dir")
    older = {"downstream_options": {k: v for k, v in recorded["downstream_options"].items() if "sha256" not in k}}
    (run_dir / RESULT).write_text(json.dumps(older))
    assert _read_finished(run_dir, options) == older
