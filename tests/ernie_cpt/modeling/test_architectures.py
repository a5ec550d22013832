"""The sharing architectures on a tiny encoder: hand-computed routing (experts replaced by layers that
add or multiply by a constant, gates set to known weights), the split into trunk and top layers,
add_task, the routing statistics and the rebuild from describe()."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from torch import nn
from transformers import ErnieModel
from transformers.masking_utils import create_bidirectional_mask

from ernie_cpt.cli import main
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures import ARCHITECTURES, ArchitectureOptions
from ernie_cpt.modeling.architectures.cgc import CGCOptions
from ernie_cpt.modeling.architectures.mmoe import MMoEOptions
from ernie_cpt.modeling.builder import HeadSpec, build_model, model_from_description
from ernie_cpt.modeling.encoder import ModelOptions, encoder_config
from ernie_cpt.options import help_text
from pretasks import TASKS

# The built-in architectures that do not fold into one ErnieModel (from the registry, as --help lists them).
ROUTED = [name for name, cls in ARCHITECTURES.items() if not cls.folds and ARCHITECTURES.origin(name) is None]
INPUT_IDS = torch.tensor([[2, 10, 11, 12, 3, 0], [2, 13, 14, 3, 0, 0]])  # the second padded
BATCH = {"input_ids": INPUT_IDS, "attention_mask": (INPUT_IDS != 0).long(),
         "token_type_ids": torch.zeros_like(INPUT_IDS)}


class Shift(nn.Module):
    """A stand-in layer: hidden + c."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = c

    def forward(self, hidden, mask=None):
        return hidden + self.c


class Scale(Shift):
    """A stand-in layer: hidden * c."""

    def forward(self, hidden, mask=None):
        return hidden * self.c


def new_encoder(layers: int = 3) -> ErnieModel:
    options = ModelOptions(model_size="tiny", num_layers=layers, dropout=0.0, attention_dropout=0.0)
    config = encoder_config(options, 60, 64, len(TASKS))
    torch.manual_seed(0)
    return ErnieModel(config).eval()


def split_options(name: str, **flags) -> tuple[ArchitectureOptions, object]:
    """Flat options, as flags give them, as architecture ``name`` takes them: the seam's ArchitectureOptions
    and its own options (of the others' options, those it does not read are dropped)."""
    seam = {f.name for f in dataclasses.fields(ArchitectureOptions)}
    known = seam | {f.name for cls in ARCHITECTURES.option_classes() for f in dataclasses.fields(cls)}
    assert set(flags) <= known, set(flags) - known
    own_class = ARCHITECTURES.options_class(name)
    own = {f.name: flags[f.name] for f in dataclasses.fields(own_class) if f.name in flags} if own_class else {}
    return (ArchitectureOptions(architecture=name, **{k: v for k, v in flags.items() if k in seam}),
            own_class(**own) if own_class else None)


def build(name: str, layers: int = 3, tasks: tuple[str, ...] = ("a", "b"), encoder: ErnieModel | None = None,
          **options) -> nn.Module:
    encoder = encoder or new_encoder(layers)
    sharing, own = split_options(name, **options)
    return ARCHITECTURES.get(name)(encoder, {task: i for i, task in enumerate(tasks)}, sharing, own).eval()


def trunk_output(model, task: str) -> torch.Tensor:
    return model.trunk(input_ids=INPUT_IDS, attention_mask=BATCH["attention_mask"],
                       token_type_ids=BATCH["token_type_ids"],
                       task_type_ids=model.task_type_ids(task, INPUT_IDS)).last_hidden_state


def set_gate(gate: nn.Linear, weights: list[float]) -> None:
    """Make ``gate`` give ``weights`` to its experts for every token: W = 0, bias = log(weights)."""
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.copy_(torch.tensor(weights).log())


def stand_ins(*layers: nn.Module) -> nn.ModuleList:
    return nn.ModuleList(layers)


def test_mmoe_output_is_the_gate_weighted_sum_of_the_expert_outputs():
    model = build("mmoe", expert_layers=1, num_experts=2)
    model.experts[0], model.experts[1] = stand_ins(Shift(1.0)), stand_ins(Shift(-2.0))
    set_gate(model.gates["a"], [0.25, 0.75])
    set_gate(model.gates["b"], [0.5, 0.5])

    states, _ = model.encode("a", BATCH)

    # 0.25 (h + 1) + 0.75 (h - 2) = h - 1.25
    assert torch.allclose(states, trunk_output(model, "a") - 1.25, atol=1e-6)
    assert torch.allclose(model.encode("b", BATCH)[0], trunk_output(model, "b") - 0.5, atol=1e-6)


def test_mmoe_with_real_layers_mixes_each_token_by_its_own_gate():
    model = build("mmoe", expert_layers=2, num_experts=3)
    with torch.no_grad():
        for expert in model.experts:  # experts that differ, gates that differ per token
            for p in expert.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        model.gates["a"].weight.normal_(std=0.1)
    h = trunk_output(model, "a")
    mask = create_bidirectional_mask(config=model.trunk.config, inputs_embeds=h, attention_mask=BATCH["attention_mask"])
    outputs = []
    for expert in model.experts:
        x = h
        for layer in expert:
            x = layer(x, mask)
        outputs.append(x)
    gates = torch.softmax(h @ model.gates["a"].weight.T + model.gates["a"].bias, dim=-1)  # (batch, tokens, 3)
    expected = sum(gates[..., e:e + 1] * outputs[e] for e in range(3))

    states, _ = model.encode("a", BATCH)

    assert gates.std(dim=1).mean() > 0.01  # the weights really differ between tokens
    assert torch.allclose(states, expected, atol=1e-5)


def test_cgc_gate_of_a_task_sees_only_its_own_and_the_shared_experts():
    model = build("cgc", expert_layers=1, shared_experts=1, task_experts=1)
    model.shared_experts[0][0] = stand_ins(Shift(1.0))
    model.task_experts["a"][0][0] = stand_ins(Shift(10.0))
    model.task_experts["b"][0][0] = stand_ins(Shift(100.0))
    assert model.task_gates["a"][0].out_features == 2  # shared + its own, never b's
    set_gate(model.task_gates["a"][0], [0.25, 0.75])
    set_gate(model.task_gates["b"][0], [0.75, 0.25])

    # a: 0.25 (h + 1) + 0.75 (h + 10) = h + 7.75; b: 0.75 (h + 1) + 0.25 (h + 100) = h + 25.75
    assert torch.allclose(model.encode("a", BATCH)[0], trunk_output(model, "a") + 7.75, atol=1e-5)
    assert torch.allclose(model.encode("b", BATCH)[0], trunk_output(model, "b") + 25.75, atol=1e-5)
    assert len(model.shared_gates) == 0  # one level: no shared gate


def test_ple_levels_feed_the_shared_gate_of_the_lower_level_to_the_next_shared_experts():
    model = build("ple", expert_layers=2, shared_experts=1, task_experts=1)
    model.shared_experts[0][0], model.shared_experts[1][0] = stand_ins(Shift(1.0)), stand_ins(Scale(2.0))
    model.task_experts["a"][0][0], model.task_experts["a"][1][0] = stand_ins(Shift(2.0)), stand_ins(Scale(3.0))
    model.task_experts["b"][0][0], model.task_experts["b"][1][0] = stand_ins(Shift(3.0)), stand_ins(Scale(5.0))
    assert [gate.out_features for gate in model.shared_gates] == [3]  # level 1 only: shared, a's, b's
    set_gate(model.shared_gates[0], [0.5, 0.25, 0.25])
    set_gate(model.task_gates["a"][0], [0.75, 0.25])
    set_gate(model.task_gates["a"][1], [0.5, 0.5])

    # level 1: shared input 0.5 (h + 1) + 0.25 (h + 2) + 0.25 (h + 3) = h + 1.75 (b's expert included);
    # a's input 0.75 (h + 1) + 0.25 (h + 2) = h + 1.25. Level 2: 0.5 * 2 (h + 1.75) + 0.5 * 3 (h + 1.25).
    h = trunk_output(model, "a")
    assert torch.allclose(model.encode("a", BATCH)[0], 2.5 * h + 3.625, atol=1e-5)


def test_ple_of_one_level_is_cgc():
    cgc, ple = build("cgc", expert_layers=1), build("ple", expert_layers=1)
    ple.load_state_dict(cgc.state_dict())  # the same parameters, under the same names

    assert torch.equal(cgc.encode("b", BATCH)[0], ple.encode("b", BATCH)[0])


def test_cross_stitch_at_identity_is_independent_columns():
    model = build("cross_stitch", expert_layers=2)
    with torch.no_grad():
        for stitch in model.stitches:
            stitch["a"].copy_(torch.tensor([1.0, 0.0]))
            stitch["b"].copy_(torch.tensor([0.0, 1.0]))
        for p in model.columns["b"].parameters():  # b's column differs: at identity it must not matter to a
            p.add_(1.0)
    h = trunk_output(model, "a")
    mask = create_bidirectional_mask(config=model.trunk.config, inputs_embeds=h, attention_mask=BATCH["attention_mask"])
    alone = model.columns["a"][1](model.columns["a"][0](h, mask), mask)

    assert torch.allclose(model.encode("a", BATCH)[0], alone, atol=1e-6)


def test_cross_stitch_mixes_the_columns_after_every_layer_from_the_papers_initialisation():
    model = build("cross_stitch", expert_layers=2)
    assert [stitch["a"].tolist() for stitch in model.stitches] == [pytest.approx([0.9, 0.1])] * 2
    model.columns["a"] = stand_ins(Shift(1.0), Shift(1.0))
    model.columns["b"] = stand_ins(Scale(2.0), Scale(2.0))

    # layer 1: x_a = 0.9 (h + 1) + 0.1 (2h) = 1.1h + 0.9, x_b = 0.1 (h + 1) + 0.9 (2h) = 1.9h + 0.1;
    # layer 2: 0.9 (x_a + 1) + 0.1 (2 x_b) = 1.37h + 1.73
    h = trunk_output(model, "a")
    assert torch.allclose(model.encode("a", BATCH)[0], 1.37 * h + 1.73, atol=1e-5)
    three = build("cross_stitch", tasks=("a", "b", "c"), expert_layers=1)
    assert three.stitches[0]["b"].tolist() == pytest.approx([0.05, 0.9, 0.05])


@pytest.mark.parametrize("name", ROUTED)
def test_at_initialisation_every_architecture_computes_the_encoder_it_was_built_from(name):
    encoder = new_encoder()
    reference = copy.deepcopy(encoder)
    model = build(name, encoder=encoder, expert_layers=2)
    out = reference(**BATCH, task_type_ids=torch.full_like(INPUT_IDS, 1))

    states, pooled = model.encode("b", BATCH)

    assert torch.allclose(states, out.last_hidden_state, atol=1e-5)
    assert torch.allclose(pooled, out.pooler_output, atol=1e-5)
    assert len(model.trunk.encoder.layer) == 1 and model.trunk.encoder.layer[0] is encoder.encoder.layer[0]


@pytest.mark.parametrize("name", ROUTED)
def test_shared_parameters_are_the_trunk_and_the_pooler(name):
    model = build(name, expert_layers=2)
    shared = {id(p) for p in model.shared_parameters()}
    trunk = [*model.trunk.parameters(), *model.pooler.parameters()]

    assert shared == {id(p) for p in trunk}
    assert model.shared_layer_weights() == [model.trunk.encoder.layer[0].output.dense.weight]
    everything = build(name, expert_layers=3)  # K = L: no layer left to share
    assert everything.shared_layer_weights() == [everything.word_embeddings().weight]


@pytest.mark.parametrize("name", ROUTED)
def test_routing_gives_the_mean_weights_since_the_last_call_over_training_tokens_only(name):
    model = build(name, expert_layers=1, num_experts=2, shared_experts=1, task_experts=1)
    if name == "cross_stitch":
        expected = {"layer3/a": 0.9, "layer3/b": 0.1}
    else:
        gate = model.gates["a"] if name == "mmoe" else model.task_gates["a"][0]
        set_gate(gate, [0.25, 0.75])
        expected = {"expert.0": 0.25, "expert.1": 0.75} if name == "mmoe" else {"shared.0": 0.25, "a.0": 0.75}

    model.encode("a", BATCH)  # evaluation: not counted
    assert model.routing() == {}
    model.train()
    model.encode("a", BATCH)
    model.encode("a", BATCH)
    routing = model.routing()

    assert list(routing) == ["a"]
    assert routing["a"] == pytest.approx(expected)
    assert model.routing() == {}


@pytest.mark.parametrize("name", ROUTED)
def test_a_task_added_like_another_starts_with_its_outputs_and_leaves_the_others_alone(name):
    model = build(name, expert_layers=2)
    with torch.no_grad():
        for p in model.parameters():  # move away from identical copies, so that a wrong copy would show
            p.add_(torch.randn_like(p) * 0.02)
    before = {task: model.encode(task, BATCH)[0] for task in ("a", "b")}

    model.add_task("c", task_id=1, like="b")  # b's task id: the same input to the trunk

    assert list(model.task_ids) == ["a", "b", "c"]
    for task in ("a", "b"):
        assert torch.allclose(model.encode(task, BATCH)[0], before[task], atol=1e-5), task
    assert torch.allclose(model.encode("c", BATCH)[0], before["b"], atol=1e-5)
    with pytest.raises(UserError, match="already in this model"):
        model.add_task("a", task_id=0)
    with pytest.raises(UserError, match="like z"):
        model.add_task("d", task_id=0, like="z")


@pytest.mark.parametrize("name", ["hard", *ROUTED])
def test_state_dict_and_describe_rebuild_the_model_exactly(name):
    tasks = {"a": HeadSpec("token_classification", 2), "b": HeadSpec("sentence_pair", 3),
             "m": HeadSpec("masked_lm", 60)}
    sharing, own = split_options(name, expert_layers=1, num_experts=3, shared_experts=1, task_experts=2)
    torch.manual_seed(0)
    model = build_model(tasks, {"a": 1, "b": 4, "m": 0}, ModelOptions(model_size="tiny"), sharing, 60, 64,
                        len(TASKS), architecture_options=own)
    if name != "hard":
        model.add_task("c", task_id=2, like="a")
        model.add_head("c", model.heads["a"].__class__(model.config, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    description = json.loads(json.dumps(model.describe()))  # as a file holds it
    config = copy.deepcopy(model.config)

    rebuilt = model_from_description(description, config)
    rebuilt.load_state_dict(model.state_dict())  # strict: the same parameters under the same names

    model.eval()
    rebuilt.eval()
    labels = {"a": torch.tensor([[-100, 1, 0, 1, -100, -100]] * 2), "b": torch.tensor([2, 0]),
              "m": torch.tensor([[-100, 7, -100, -100, -100, -100]] * 2),
              "c": torch.tensor([[-100, 0, 1, 1, 0, -100]] * 2)}
    for task in model.heads:
        batch = {**BATCH, "labels": labels[task]}
        assert torch.equal(model(task, batch).logits, rebuilt(task, batch).logits), task
    assert rebuilt.describe() == description


def test_expert_layers_beyond_the_encoder_and_empty_gates_are_refused():
    with pytest.raises(UserError, match=r"--expert-layers 4 is outside 1\.\.3"):
        build("mmoe", expert_layers=4)
    with pytest.raises(UserError, match="--num-experts must be between 1 and 64, got 0"):
        MMoEOptions(num_experts=0)
    with pytest.raises(UserError, match="both 0"):
        CGCOptions(shared_experts=0, task_experts=0)


def test_pretrain_refuses_expert_layers_beyond_the_model_before_reading_anything(tmp_path, capsys):
    argv = ["pretrain", "--output-dir", str(tmp_path / "run"), "--corpus", str(tmp_path / "absent"),
            "--model-size", "mini", "--expert-layers", "5"]

    assert main([*argv, "--architecture", "cross_stitch"]) == 2
    assert "--expert-layers 5 is outside 1..4, the encoder's layers" in capsys.readouterr().err
    assert main([*argv, "--architecture", "hard"]) == 2  # hard reads no --expert-layers: the corpus is next
    assert "absent" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_help_lists_every_registered_architecture_and_who_reads_each_option():
    fields = {f.name: help_text(f) for f in dataclasses.fields(ArchitectureOptions)}
    assert list(fields) == ["architecture", "expert_layers"]  # the seam's; the rest are the architectures' own
    assert all(f"{name}: {cls.summary}" in fields["architecture"] for name, cls in ARCHITECTURES.items())
    assert fields["architecture"].index("hard:") < fields["architecture"].index("cgc:")  # the default first
    assert fields["expert_layers"].startswith("cgc/cross_stitch/mmoe/ple:")
    own = {f.name: (cls, help_text(f)) for cls in ARCHITECTURES.option_classes() for f in dataclasses.fields(cls)}
    assert own["num_experts"][0] is MMoEOptions and own["num_experts"][1].startswith("mmoe:")
    assert own["task_experts"][0] is CGCOptions and own["task_experts"][1].startswith("cgc/ple:")
    assert ARCHITECTURES.options_class("ple") is CGCOptions  # PLE is CGC stacked, with the same options
    assert ROUTED == ["cgc", "cross_stitch", "mmoe", "ple"]
