"""ArchitectureForSequenceClassification: the downstream task of ``finetune --train`` on an
architecture that does not fold into one ErnieModel, checked against the architecture's own
encode and head, its routing copied from the first task, and a save/load round trip."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ernie_cpt.commands.finetune_loop import load_classifier
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.heads import MaskedLMHead, SequenceClassificationHead
from ernie_cpt.modeling.sequence_classifier import (
    DOWNSTREAM_TASK,
    ArchitectureForSequenceClassification,
    downstream_task_name,
)
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
    classifier = ArchitectureForSequenceClassification(model, num_labels=4).eval()
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
    ArchitectureForSequenceClassification(model, num_labels=2).eval()
    torch.testing.assert_close(model.encode(DOWNSTREAM_TASK, BATCH)[0], model.encode("a", BATCH)[0])
    torch.testing.assert_close(model.encode("b", BATCH)[0], before_b)
    assert not torch.equal(model.encode("a", BATCH)[0], before_b)


def test_downstream_task_names_skip_the_tasks_of_the_model():
    assert downstream_task_name(["a", "b"]) == "downstream"
    assert downstream_task_name(["a", "downstream"]) == "downstream_2"
    assert downstream_task_name(["downstream", "downstream_2", "downstream_4"]) == "downstream_3"
    assert downstream_task_name(["downstream_2"]) == "downstream"


def test_a_task_name_the_model_has_is_refused():
    model = _with_heads(build("mmoe", expert_layers=1))
    with pytest.raises(UserError, match="already in this model"):
        ArchitectureForSequenceClassification(model, num_labels=2, task="a")


def _perturb(model: nn.Module, part: str, scale: float) -> None:
    """Add noise of std ``scale`` to every parameter outside the heads whose name holds ``part``."""
    with torch.no_grad():
        for key, parameter in model.named_parameters():
            if part in key and not key.startswith("heads."):
                parameter.add_(torch.randn_like(parameter) * scale)


@pytest.mark.parametrize("name", ROUTED)
def test_a_fine_tuned_model_fine_tunes_again_from_its_downstream_route(name, tmp_path):
    """finetune on the folder a routed finetune saved (as a fine-tuned hard-sharing encoder can be
    fine-tuned again): the new task is downstream_2, routed as the saved ``finetuned_task``, so
    before training its token states are the fine-tuned task's, not the first task's."""
    model = _with_heads(build(name, expert_layers=1))
    torch.manual_seed(5)
    _perturb(model, "", 0.02)  # experts that differ, so that a gate's weights matter
    first = ArchitectureForSequenceClassification(model, num_labels=3).eval()
    _perturb(model, f".{DOWNSTREAM_TASK}.", 0.5)  # stands in for fine-tuning: the route moves away from task a's
    first.save_pretrained(tmp_path)
    tuned = model.encode(DOWNSTREAM_TASK, BATCH)[0]
    assert (tuned - model.encode("a", BATCH)[0]).abs().max() > 0.1
    again = load_classifier(tmp_path, num_labels=4, device=torch.device("cpu")).eval()
    assert again.task == "downstream_2"
    assert list(again.architecture.task_ids) == ["a", "b", DOWNSTREAM_TASK, "downstream_2"]
    assert again.architecture.task_ids["downstream_2"] == 0
    assert again.architecture.heads["downstream_2"].num_labels == 4
    assert again.architecture.heads[DOWNSTREAM_TASK].num_labels == 3
    torch.testing.assert_close(again.architecture.encode("downstream_2", BATCH)[0], tuned)
    torch.testing.assert_close(again.architecture.encode(DOWNSTREAM_TASK, BATCH)[0], tuned)


def test_save_pretrained_is_read_back_by_load_model_with_its_labels(tmp_path):
    model = _with_heads(build("cgc", expert_layers=1, shared_experts=1, task_experts=1))
    classifier = ArchitectureForSequenceClassification(model, num_labels=3).eval()
    classifier.config.id2label = {0: "x", 1: "y", 2: "z"}
    classifier.save_pretrained(tmp_path)
    saved = load_model(tmp_path)
    assert saved.description["finetuned_task"] == DOWNSTREAM_TASK
    assert saved.model.config.id2label == {0: "x", 1: "y", 2: "z"}
    torch.testing.assert_close(saved.model(DOWNSTREAM_TASK, {**BATCH, "labels": torch.tensor([0, 2])}).logits,
                               classifier(**BATCH).logits)
