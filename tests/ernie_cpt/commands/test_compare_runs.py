"""The ``none`` baseline is the encoder pre-training starts from: same seed, same config, same weights."""

from __future__ import annotations

import torch
from transformers import ErnieModel

from ernie_cpt.commands.compare_runs import _write_initial_encoder
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
