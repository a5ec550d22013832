"""A new masked-LM head starts from the prior of its targets (``--mlm-bias-init prior``, Lin et al.
2017): its bias is the log of each token's add-one smoothed frequency among the targets of the
sampled training examples; ``zeros`` keeps BERT's start, and weights given by ``--init-from`` win."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForMaskedLM

from ernie_cpt.cli import main
from ernie_cpt.modeling.builder import HeadSpec, build_model
from ernie_cpt.modeling.encoder import ModelOptions
from ernie_cpt.modeling.heads import MaskedLMHead
from ernie_cpt.modeling.options import ArchitectureOptions
from ernie_cpt.training.run_log import read_records
from pretasks import TASKS

VOCAB = 40
HEADS = {"knowledge_masking": HeadSpec("masked_lm", VOCAB), "capitalization": HeadSpec("token_classification", 4)}
TASK_IDS = {"knowledge_masking": 0, "capitalization": 1}
COUNTS = {"knowledge_masking": {5: 3, 7: 1}, "capitalization": {0: 9, 1: 1}}


def _build(options: ModelOptions):
    torch.manual_seed(0)
    return build_model(HEADS, TASK_IDS, options, ArchitectureOptions(), VOCAB, 32, len(TASKS),
                       target_counts=COUNTS)


def test_the_bias_is_the_log_of_the_smoothed_target_frequencies():
    bias = _build(ModelOptions(model_size="tiny", num_layers=1)).heads["knowledge_masking"].bias
    total = 4 + VOCAB  # four targets, one added to each of the 40 ids
    assert bias[5].item() == pytest.approx(math.log(4 / total))
    assert bias[7].item() == pytest.approx(math.log(2 / total))
    assert bias[0].item() == bias[39].item() == pytest.approx(math.log(1 / total))
    assert torch.softmax(bias, 0).sum().item() == pytest.approx(1.0)  # a distribution, not a shifted one


def test_only_the_masked_lm_bias_changes_and_nothing_else_draws_randomness():
    prior = _build(ModelOptions(model_size="tiny", num_layers=1))
    zeros = _build(ModelOptions(model_size="tiny", num_layers=1, mlm_bias_init="zeros"))
    assert torch.equal(zeros.heads["knowledge_masking"].bias, torch.zeros(VOCAB))
    theirs = zeros.state_dict()
    differ = [k for k, v in prior.state_dict().items() if not torch.equal(v, theirs[k])]
    assert differ == ["heads.knowledge_masking.bias"]


def test_an_init_from_checkpoint_keeps_its_mlm_bias(tmp_path):
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(1)
    bert = BertForMaskedLM(config)
    with torch.no_grad():
        bert.cls.predictions.bias.copy_(torch.arange(VOCAB, dtype=torch.float32))
    bert.save_pretrained(tmp_path)
    model = _build(ModelOptions(init_from=str(tmp_path)))
    assert torch.equal(model.heads["knowledge_masking"].bias, torch.arange(VOCAB, dtype=torch.float32))


def test_a_checkpoint_that_saved_only_the_decoder_bias_keeps_it(tmp_path):
    """Some BERT checkpoints store the MLM bias only as ``cls.predictions.decoder.bias`` (tied to
    ``cls.predictions.bias`` in transformers): that bias is the one used, not the prior."""
    config = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(1)
    BertForMaskedLM(config).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    weights.pop("cls.predictions.bias", None)
    weights["cls.predictions.decoder.bias"] = torch.arange(VOCAB, dtype=torch.float32)
    save_file(weights, tmp_path / "model.safetensors")
    model = _build(ModelOptions(init_from=str(tmp_path)))
    assert torch.equal(model.heads["knowledge_masking"].bias, torch.arange(VOCAB, dtype=torch.float32))


def test_an_id_outside_the_vocabulary_is_refused():
    head = _build(ModelOptions(model_size="tiny", num_layers=1)).heads["knowledge_masking"]
    assert isinstance(head, MaskedLMHead)
    with pytest.raises(ValueError, match=r"target ids must lie in \[0, 40\); got 3..40"):
        head.init_bias_from_prior({3: 1, VOCAB: 2})


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_pretrain_starts_knowledge_masking_at_the_prior(sample_dir, tmp_path):
    """The first step's masked-LM loss: about ln(vocabulary) from zeros, the targets' entropy
    (a nat lower on one chapter, sampled targets smoothed over its 2,000 tokens) from the prior."""
    first_loss = {}
    for init in ("prior", "zeros"):
        run = tmp_path / init
        assert main(["pretrain", "--corpus", str(sorted(sample_dir.glob("*.txt"))[0]), "--output-dir", str(run),
                     "--model-size", "tiny", "--tasks", "knowledge_masking", "--max-steps", "1", "--batch-size", "16",
                     "--logging-steps", "1", "--eval-steps", "0", "--mlm-bias-init", init]) == 0
        first_loss[init] = read_records(run, "train")[0]["loss"]
    vocab = len(json.loads((tmp_path / "zeros" / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"])
    assert first_loss["zeros"] == pytest.approx(math.log(vocab), abs=0.5)
    assert first_loss["prior"] < first_loss["zeros"] - 0.5  # 6.47 against 7.60 on this chapter
