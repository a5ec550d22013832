"""ArchitectureForSequenceClassification: the downstream task of ``finetune --train`` on an
architecture that does not fold into one ErnieModel, checked against the architecture's own
encode and head, its routing copied from the first task, and a save/load round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.heads import MaskedLMHead, SequenceClassificationHead
from ernie_cpt.modeling.sequence_classifier import DOWNSTREAM_TASK, ArchitectureForSequenceClassification
from ernie_cpt.training.loading import load_model
from tests.ernie_cpt.modeling.test_architectures import BATCH, INPUT_IDS, ROUTED, build


def _with_heads(model: nn.Module) -> nn.Module:
    for task in model.task_ids:
        model.add_head(task, MaskedLMHead(model.config, model.config.vocab_size, model.word_embeddings()))
    return model


@pytest.mark.parametrize("name", ROUTED)
def test_logits_and_loss_are_the_architectures_own_for_the_new_task(name):
    model = _with_heads(build(name, expert_layers=1))
    torch.manual_seed(3)
    classifier = ArchitectureForSequenceClassification.for_new_task(model, num_labels=4).eval()
    assert model.task_ids[DOWNSTREAM_TASK] == 0 and isinstance(model.heads[DOWNSTREAM_TASK],
                                                                SequenceClassificationHead)
    labels = torch.tensor([3, 1])
    out = classifier(**BATCH, labels=labels)
    _, pooled = model.encode(DOWNSTREAM_TASK, BATCH)
    head = model.heads[DOWNSTREAM_TASK].classifier
    expected = pooled @ head.weight.T + head.bias
    assert out.logits.shape == (2, 4)
    torch.testing.assert_close(out.logits, expected)
    torch.testing.assert_close(out.loss, nn.functional.cross_entropy(expected, labels))
    assert classifier(input_ids=INPUT_IDS, attention_mask=BATCH["attention_mask"]).loss is None


@pytest.mark.parametrize("name", ROUTED)
def test_the_new_task_is_routed_as_the_first_task_until_trained(name):
    """add_task copies the first task's gate, experts or column: before any training the new task's
    token states equal those of task "a", and task "b"'s are untouched."""
    model = _with_heads(build(name, expert_layers=1))
    before_b = model.encode("b", BATCH)[0]
    ArchitectureForSequenceClassification.for_new_task(model, num_labels=2).eval()
    torch.testing.assert_close(model.encode(DOWNSTREAM_TASK, BATCH)[0], model.encode("a", BATCH)[0])
    torch.testing.assert_close(model.encode("b", BATCH)[0], before_b)
    assert not torch.equal(model.encode("a", BATCH)[0], before_b)


def test_a_model_fine_tuned_before_gets_the_next_free_task_name():
    model = _with_heads(build("mmoe", tasks=("a", DOWNSTREAM_TASK), expert_layers=1))
    again = ArchitectureForSequenceClassification.for_new_task(model, num_labels=2)
    assert again.task == "downstream_2" and model.task_ids == {"a": 0, DOWNSTREAM_TASK: 1, "downstream_2": 0}
    assert ArchitectureForSequenceClassification.for_new_task(model, num_labels=2).task == "downstream_3"
    third = ArchitectureForSequenceClassification.for_new_task(model, num_labels=2, like="downstream_2").eval()
    assert third.task == "downstream_4"
    torch.testing.assert_close(model.encode("downstream_4", BATCH)[0], model.encode("downstream_2", BATCH)[0])


@pytest.mark.parametrize("name", ["cgc", "sluice", "soft_sharing"])
def test_save_pretrained_is_read_back_by_load_model_with_its_labels(tmp_path, name):
    model = _with_heads(build(name, expert_layers=1, shared_experts=1, task_experts=1, subspaces=2,
                              soft_sharing_norm="trace"))
    classifier = ArchitectureForSequenceClassification.for_new_task(model, num_labels=3).eval()
    classifier.config.id2label = {0: "x", 1: "y", 2: "z"}
    classifier.save_pretrained(tmp_path)
    saved = load_model(tmp_path)
    assert saved.description["finetuned_task"] == DOWNSTREAM_TASK
    assert saved.model.config.id2label == {0: "x", 1: "y", 2: "z"}
    torch.testing.assert_close(saved.model(DOWNSTREAM_TASK, {**BATCH, "labels": torch.tensor([0, 2])}).logits,
                               classifier(**BATCH).logits)
    reloaded = ArchitectureForSequenceClassification.from_pretrained(tmp_path)  # as a user calls it, no labels
    assert reloaded.task == DOWNSTREAM_TASK and not reloaded.training
    torch.testing.assert_close(reloaded(input_ids=INPUT_IDS, attention_mask=BATCH["attention_mask"]).logits,
                               classifier(**BATCH).logits)


def test_from_pretrained_refuses_a_folder_that_was_not_fine_tuned(tmp_path):
    from ernie_cpt.modeling.saved_model import save_model_folder

    save_model_folder(_with_heads(build("ple", expert_layers=1)), tmp_path, {})
    with pytest.raises(UserError, match="holds no model saved by finetune --output-dir"):
        ArchitectureForSequenceClassification.from_pretrained(tmp_path)
