"""The PLE paper's other sharing structures (Tang et al. 2020, Fig. 1b/1c and section 5.1.2) against
hand-computed small cases: customized starts as its shared column, asymmetric's fusion graph (which
columns each task reads, by mean, sum and concat; cycles and unknown tasks refused), and ML-MMoE with
one level is MMoE."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch
from transformers.masking_utils import create_bidirectional_mask

from ernie_cpt.cli import main
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.asymmetric import AsymmetricOptions
from ernie_cpt.modeling.architectures.ml_mmoe import level_depths
from ernie_cpt.modeling.builder import model_from_description
from tests.ernie_cpt.modeling.test_architectures import (
    BATCH,
    Scale,
    Shift,
    build,
    new_encoder,
    set_gate,
    stand_ins,
    trunk_output,
)


def layer_mask(model, h):
    return create_bidirectional_mask(config=model.trunk.config, inputs_embeds=h, attention_mask=BATCH["attention_mask"])


def set_blocks(projection, scales: list[float], bias: float = 0.0) -> None:
    """Make ``projection`` read scales[b] x block b of its concatenated input: W = [s_0 I, s_1 I, ...]."""
    hidden = projection.out_features
    with torch.no_grad():
        projection.weight.copy_(torch.cat([s * torch.eye(hidden) for s in scales], dim=1))
        projection.bias.fill_(bias)


# --- customized -------------------------------------------------------------------------------------------------

def test_customized_starts_as_its_shared_column_whatever_the_task_columns_hold():
    model = build("customized", expert_layers=2)
    with torch.no_grad():
        for p in [*model.shared_column.parameters(), *model.columns.parameters()]:
            p.add_(torch.randn_like(p) * 0.05)  # every column its own, so that reading the wrong one would show
    h = trunk_output(model, "a")
    mask = layer_mask(model, h)
    shared = model.shared_column[1](model.shared_column[0](h, mask), mask)

    assert model.projections["a"].in_features == 2 * model.config.hidden_size
    assert torch.equal(model.encode("a", BATCH)[0], shared)  # W_a = [I, 0], b_a = 0: h_shared exactly
    assert not torch.allclose(model.columns["a"][1](model.columns["a"][0](h, mask), mask), shared, atol=1e-3)


def test_customized_head_input_is_its_projection_of_the_shared_and_its_own_column():
    model = build("customized", expert_layers=1)
    model.shared_column = stand_ins(Shift(1.0))
    model.columns["a"], model.columns["b"] = stand_ins(Shift(10.0)), stand_ins(Scale(3.0))
    set_blocks(model.projections["a"], [0.5, 0.5], bias=0.25)
    set_blocks(model.projections["b"], [0.25, 1.0])
    h = trunk_output(model, "a")

    # a: 0.5 (h + 1) + 0.5 (h + 10) + 0.25 = h + 5.75; b: 0.25 (h + 1) + 3h = 3.25h + 0.25
    assert torch.allclose(model.encode("a", BATCH)[0], h + 5.75, atol=1e-5)
    assert torch.allclose(model.encode("b", BATCH)[0], 3.25 * trunk_output(model, "b") + 0.25, atol=1e-5)
    model.train()
    model.encode("a", BATCH)
    assert model.routing() == {"a": pytest.approx({"shared": 0.5, "a": 0.5})}  # equal Frobenius norms


# --- asymmetric -------------------------------------------------------------------------------------------------

def asymmetric(**options):
    model = build("asymmetric", tasks=("a", "b", "c"), expert_layers=1, **options)
    model.columns["a"], model.columns["b"], model.columns["c"] = (stand_ins(Shift(c)) for c in (1.0, 10.0, 100.0))
    return model


def outputs(model) -> dict[str, torch.Tensor]:
    """Each task's states (batch, tokens, hidden)."""
    return {task: model.encode(task, BATCH)[0] for task in model.task_ids}


@pytest.mark.parametrize(("options", "expected"), [
    # default: b and c read a's column, a only its own
    ({}, {"a": (1, 1.0), "b": (1, 5.5), "c": (1, 50.5)}),
    # c reads b (which reads a) and a: the mean of (h + 100), b's output (h + 5.5) and (h + 1)
    ({"asymmetric_sources": ["b:a", "c:b", "c:a"]}, {"a": (1, 1.0), "b": (1, 5.5), "c": (1, 35.5)}),
    # sums: b = (h + 10) + (h + 1); c = (h + 100) + (2h + 11) + (h + 1)
    ({"asymmetric_sources": ["b:a", "c:b", "c:a"], "asymmetric_fusion": "sum"},
     {"a": (1, 1.0), "b": (2, 11.0), "c": (4, 112.0)}),
    # a reads c, no one reads b: b's column alone
    ({"asymmetric_sources": ["a:c"], "asymmetric_fusion": "sum"}, {"a": (2, 101.0), "b": (1, 10.0), "c": (1, 100.0)}),
], ids=["default-mean", "chain-mean", "chain-sum", "one-pair"])
def test_asymmetric_fusion_graph_by_hand(options, expected):
    model = asymmetric(**options)
    for task, (slope, offset) in expected.items():  # each task's own trunk output h (its task embedding row)
        assert torch.allclose(model.encode(task, BATCH)[0], slope * trunk_output(model, task) + offset, atol=1e-4), task


def test_asymmetric_concat_projects_the_concatenation_and_starts_as_the_own_column():
    model = asymmetric(asymmetric_sources=["b:a", "c:b", "c:a"], asymmetric_fusion="concat")
    hidden = model.config.hidden_size
    assert {task: p.in_features for task, p in model.projections.items()} == {"b": 2 * hidden, "c": 3 * hidden}
    start = outputs(model)
    for task, offset in (("a", 1.0), ("b", 10.0), ("c", 100.0)):  # W = [I, 0, ...]: the own column alone
        assert torch.allclose(start[task], trunk_output(model, task) + offset, atol=1e-5), task

    set_blocks(model.projections["b"], [0.25, 0.75])
    set_blocks(model.projections["c"], [0.5, 0.5, 0.0], bias=1.0)

    # b: 0.25 (h + 10) + 0.75 (h + 1) = h + 3.25; c: 0.5 (h + 100) + 0.5 (h + 3.25) + 0 (h + 1) + 1 = h + 52.625
    assert torch.allclose(model.encode("b", BATCH)[0], trunk_output(model, "b") + 3.25, atol=1e-5)
    assert torch.allclose(model.encode("c", BATCH)[0], trunk_output(model, "c") + 52.625, atol=1e-5)
    model.train()
    model.encode("c", BATCH)
    assert model.routing() == {"c": pytest.approx({"c": 0.5, "b": 0.5, "a": 0.0})}


def test_asymmetric_gradients_flow_from_a_reader_into_its_sources_never_back():
    model = build("asymmetric", tasks=("a", "b"), expert_layers=1)  # default: b reads a
    model.encode("b", BATCH)[0].sum().backward()
    assert all(p.grad is not None for p in model.columns["a"].parameters())
    model.zero_grad(set_to_none=True)
    model.encode("a", BATCH)[0].sum().backward()
    assert all(p.grad is None for p in model.columns["b"].parameters())


@pytest.mark.parametrize(("sources", "message"), [
    (["a:b", "b:c", "c:a"], "has a cycle: a reads b reads c reads a"),
    (["c:a", "a:a"], "has a cycle: a reads a"),
    (["a:z"], "names z, which is not a task of this run (a, b, c); name the run's tasks"),
    (["a-b"], "item 'a-b' is not READER:SOURCE; write e.g. capitalization:knowledge_masking"),
    (["a:b", "a:b"], "lists a:b twice"),
])
def test_asymmetric_refuses_a_cycle_an_unknown_task_or_a_malformed_pair(sources, message):
    with pytest.raises(UserError, match=re.escape(f"--asymmetric-sources {message}")):
        build("asymmetric", tasks=("a", "b", "c"), expert_layers=1, asymmetric_sources=sources)


def test_a_task_added_to_asymmetric_reads_what_its_model_reads_after_a_rebuild():
    model = build("asymmetric", tasks=("a", "b"), expert_layers=1, asymmetric_fusion="concat")  # default: b reads a
    model.add_task("c", task_id=0, like="a")  # reads nothing, as a: the default would make it read a
    model.add_task("d", task_id=1, like="b")
    assert model.options.asymmetric_sources == ["b:a", "d:a"] and model.sources["c"] == []
    description = json.loads(json.dumps({**model.describe(), "heads": {}}))
    rebuilt = model_from_description(description, copy.deepcopy(model.config)).eval()
    rebuilt.load_state_dict(model.state_dict())
    for task in ("a", "b", "c", "d"):
        assert torch.equal(rebuilt.encode(task, BATCH)[0], model.encode(task, BATCH)[0]), task
    single = build("asymmetric", tasks=("a",), expert_layers=1)
    single.add_task("c", task_id=0)
    assert single.options.asymmetric_sources == ["a:"]  # explicit: no task reads another
    assert AsymmetricOptions(asymmetric_sources=["a:"]).asymmetric_sources == ["a:"]


@pytest.mark.parametrize(("flags", "message"), [
    (["--architecture", "asymmetric", "--asymmetric-sources", "capitalization:knowledge_masking,"
      "knowledge_masking:capitalization"], "--asymmetric-sources has a cycle: knowledge_masking reads capitalization "
     "reads knowledge_masking"),
    (["--architecture", "asymmetric", "--asymmetric-sources", "capitalization:sentence_reordering"],
     "--asymmetric-sources names sentence_reordering, which is not a task of this run"),
    (["--architecture", "ml_mmoe", "--levels", "3", "--expert-layers", "2"],
     "--levels 3 is more than --expert-layers 2: every level of ml_mmoe holds at least one layer; lower --levels"),
])
def test_pretrain_refuses_an_impossible_graph_or_levels_before_reading_anything(tmp_path, capsys, flags, message):
    argv = ["pretrain", "--output-dir", str(tmp_path / "run"), "--corpus", str(tmp_path / "absent"),
            "--tasks", "knowledge_masking", "capitalization", *flags]

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


# --- ML-MMoE ----------------------------------------------------------------------------------------------------

def test_ml_mmoe_with_one_level_is_mmoe():
    encoder = new_encoder()
    mmoe = build("mmoe", encoder=copy.deepcopy(encoder), expert_layers=2, num_experts=3)
    ml_mmoe = build("ml_mmoe", encoder=copy.deepcopy(encoder), expert_layers=2, num_experts=3, levels=1)
    with torch.no_grad():
        for p in mmoe.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # experts that differ, gates that differ per token
    state = {name.replace("experts.", "experts.0.", 1) if name.startswith("experts.") else name: value
             for name, value in mmoe.state_dict().items()}  # ML-MMoE's experts are level -> expert -> layers
    ml_mmoe.load_state_dict(state)  # strict: no parameter left over on either side

    for task in ("a", "b"):
        assert torch.equal(ml_mmoe.encode(task, BATCH)[0], mmoe.encode(task, BATCH)[0])
    assert len(ml_mmoe.expert_gates) == 0


def test_ml_mmoe_lower_gates_mix_the_experts_for_each_next_level_expert():
    model = build("ml_mmoe", expert_layers=2, num_experts=2, levels=2)
    model.experts[0][0], model.experts[0][1] = stand_ins(Shift(1.0)), stand_ins(Shift(2.0))
    model.experts[1][0], model.experts[1][1] = stand_ins(Scale(2.0)), stand_ins(Scale(3.0))
    set_gate(model.expert_gates[0][0], [0.25, 0.75])  # next-level expert 0 reads h + 1.75
    set_gate(model.expert_gates[0][1], [0.5, 0.5])  # next-level expert 1 reads h + 1.5
    set_gate(model.gates["a"], [0.5, 0.5])

    # 0.5 * 2 (h + 1.75) + 0.5 * 3 (h + 1.5) = 2.5h + 4
    assert torch.allclose(model.encode("a", BATCH)[0], 2.5 * trunk_output(model, "a") + 4.0, atol=1e-5)


def test_every_ml_mmoe_gate_reads_the_blocks_input():
    model = build("ml_mmoe", expert_layers=2, num_experts=2, levels=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    h = trunk_output(model, "a")
    mask = layer_mask(model, h)

    def gate(linear):
        return torch.softmax(h @ linear.weight.T + linear.bias, dim=-1)

    first = [expert[0](h, mask) for expert in model.experts[0]]
    inputs = [sum(gate(g)[..., e:e + 1] * first[e] for e in range(2)) for g in model.expert_gates[0]]
    top = [expert[0](x, mask) for expert, x in zip(model.experts[1], inputs)]
    expected = sum(gate(model.gates["a"])[..., e:e + 1] * top[e] for e in range(2))

    assert torch.allclose(model.encode("a", BATCH)[0], expected, atol=1e-5)


def test_ml_mmoe_levels_split_the_top_layers_lower_levels_first():
    assert level_depths(2, 2) == [1, 1] and level_depths(5, 2) == [3, 2] and level_depths(3, 1) == [3]
    encoder = new_encoder(3)
    model = build("ml_mmoe", encoder=copy.deepcopy(encoder), expert_layers=3, levels=2, num_experts=2)
    assert [len(model.experts[level][0]) for level in range(2)] == [2, 1]
    assert torch.equal(model.experts[1][1][0].output.dense.weight, encoder.encoder.layer[2].output.dense.weight)
    with pytest.raises(UserError, match="--levels 3 is more than --expert-layers 2"):
        build("ml_mmoe", expert_layers=2, levels=3)
