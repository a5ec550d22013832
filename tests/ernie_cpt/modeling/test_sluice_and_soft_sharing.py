"""Sluice networks and soft parameter sharing against hand-computed cases: sluice with one subspace and
beta on the top layer is cross-stitch, its alpha units mix subspaces and its beta units layers as
written out by hand, and its orthogonality penalty; the soft-sharing penalty for each norm, at the
start and after a perturbation, computed independently here (torch.linalg.svdvals for the trace norms)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.modeling.architectures.sluice import SluiceOptions, orthogonality
from ernie_cpt.modeling.architectures.soft_sharing import SoftSharingOptions
from tests.ernie_cpt.modeling.test_architectures import BATCH, Shift, build, new_encoder, stand_ins, trunk_output


def test_sluice_with_one_subspace_and_beta_on_the_top_layer_is_cross_stitch():
    tasks = ("a", "b", "c")
    cross = build("cross_stitch", tasks=tasks, expert_layers=2)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in cross.parameters():  # columns that differ, units far from their start
            p.add_(torch.randn_like(p) * 0.05)
    sluice = build("sluice", tasks=tasks, expert_layers=2, subspaces=1)
    missing = sluice.load_state_dict(cross.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["betas.a", "betas.b", "betas.c"]  # the same parameters, beta besides
    with torch.no_grad():
        for beta in sluice.betas.values():
            beta.copy_(torch.tensor([0.0, 1.0]))

    for task in tasks:
        assert torch.allclose(sluice.encode(task, BATCH)[0], cross.encode(task, BATCH)[0], atol=1e-6), task
    assert sluice.aux_loss() is None  # one subspace: nothing to keep orthogonal


def test_sluice_alpha_mixes_every_subspace_of_every_column_and_beta_the_layers():
    model = build("sluice", expert_layers=1, subspaces=2)
    model.columns["a"], model.columns["b"] = stand_ins(Shift(1.0)), stand_ins(Shift(-2.0))
    with torch.no_grad():  # a.0 <- 0.5 a.0 + 0.25 a.1 + 0.25 b.0;  a.1 <- b.1
        model.stitches[0]["a"].copy_(torch.tensor([[0.5, 0.25, 0.25, 0.0], [0.0, 0.0, 0.0, 1.0]]).flatten())
    h = trunk_output(model, "a")
    half = h.shape[-1] // 2
    h0, h1 = h[..., :half], h[..., half:]
    expected = torch.cat([0.5 * (h0 + 1) + 0.25 * (h1 + 1) + 0.25 * (h0 - 2), h1 - 2], dim=-1)
    assert torch.allclose(model.encode("a", BATCH)[0], expected, atol=1e-5)

    two = build("sluice", expert_layers=2, subspaces=2)
    assert two.stitches[0]["b"].view(2, 4).tolist() == [pytest.approx([0.1, 0, 0.9, 0]),
                                                       pytest.approx([0, 0.1, 0, 0.9])]  # 0.9 on the diagonal
    assert two.betas["a"].tolist() == [0.5, 0.5]  # uniform
    two.columns["a"] = stand_ins(Shift(1.0), Shift(2.0))
    with torch.no_grad():
        for stitch in two.stitches:  # every subspace reads only itself: column a alone
            stitch["a"].copy_(torch.eye(2, 4).flatten())
        two.betas["a"].copy_(torch.tensor([0.25, 0.75]))
    # layer outputs h + 1 and h + 3: 0.25 (h + 1) + 0.75 (h + 3) = h + 2.5
    assert torch.allclose(two.encode("a", BATCH)[0], trunk_output(two, "a") + 2.5, atol=1e-5)


def test_the_orthogonality_penalty_is_the_squared_frobenius_norm_of_the_subspaces_products():
    weight = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 2]])  # rows 0-1 write subspace 0, 2-3 subspace 1
    # W_0 W_1^T = [[1, 0], [1, 0]]
    assert orthogonality(weight, 2).item() == 2.0
    assert orthogonality(weight, 1).item() == 0.0
    # three subspaces of one row each: pairs (0, 1) 0, (0, 2) 1, (1, 2) 1 (rows 0, 1, 2 of a 3-row matrix)
    assert orthogonality(weight[:3], 3).item() == 2.0

    model = build("sluice", tasks=("a", "b", "c"), expert_layers=2, subspaces=2, orthogonality_weight=0.5)
    expected = 0.0
    for column in model.columns.values():
        for layer in column:
            for w in (layer.attention.output.dense.weight, layer.output.dense.weight):
                half = w.shape[0] // 2
                expected += ((w[:half] @ w[half:].T) ** 2).sum().item()
    assert model.aux_loss().item() == pytest.approx(0.5 * expected, rel=1e-5)


def test_sluice_refuses_subspaces_that_do_not_divide_the_hidden_size():
    with pytest.raises(UserError, match="--subspaces 3 does not divide the hidden size 128"):
        build("sluice", expert_layers=1, subspaces=3)
    with pytest.raises(UserError, match="--subspaces must be between 1 and 64, got 0"):
        SluiceOptions(subspaces=0)
    with pytest.raises(UserError, match="--soft-sharing-norm"):
        SoftSharingOptions(soft_sharing_norm="l1")


def _columns(model: nn.Module) -> list[torch.Tensor]:
    """Each task's column as one vector of all its parameters."""
    return [torch.cat([p.detach().reshape(-1) for p in column.parameters()]) for column in model.columns.values()]


def _parameters(model: nn.Module) -> list[torch.Tensor]:
    """Each parameter of the columns stacked over the tasks and flattened: (T, n) each."""
    per_column = [list(column.parameters()) for column in model.columns.values()]
    return [torch.stack([p.detach().reshape(-1) for p in same]) for same in zip(*per_column)]


def test_the_l2_penalty_is_zero_at_the_start_then_the_squared_distances_from_the_mean():
    model = build("soft_sharing", tasks=("a", "b", "c"), expert_layers=2, soft_sharing_norm="l2",
                  soft_sharing_weight=0.1)
    assert model.aux_loss().item() == pytest.approx(0.0, abs=1e-10)  # the mean of 3 copies: float rounding only
    hidden = model.config.hidden_size
    with torch.no_grad():
        model.columns["b"][0].output.dense.bias.add_(3.0)  # a hidden-sized vector: mean +1, deviations -1, 2, -1
    # sum_t ||theta_t - theta_bar||^2 = hidden * (1 + 4 + 1)
    assert model.aux_loss().item() == pytest.approx(0.1 * hidden * 6, rel=1e-5)
    model.train()
    model.encode("b", BATCH)
    assert model.routing()["b"] == pytest.approx({"distance": hidden * 4.0, "penalty": 0.1 * hidden * 6}, rel=1e-5)

    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.columns.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    columns = torch.stack(_columns(model))
    expected = ((columns - columns.mean(0)) ** 2).sum().item()
    assert model.aux_loss().item() == pytest.approx(0.1 * expected, rel=1e-4)


def test_the_trace_norm_penalty_is_zero_at_the_start_then_the_singular_values_of_the_deviations():
    model = build("soft_sharing", tasks=("a", "b", "c"), expert_layers=2, soft_sharing_norm="trace",
                  soft_sharing_weight=0.1)
    penalty = model.aux_loss()
    assert penalty.item() == 0.0  # identical columns: every deviation from the mean is exactly 0
    penalty.backward()  # all singular values 0: no gradient, and not NaN
    assert all(torch.equal(p.grad, torch.zeros_like(p)) for p in model.columns.parameters())

    with torch.no_grad():  # one bias stack: rows 0, 3 e_0, 0 -> mean e_0, deviations -e_0, 2 e_0, -e_0
        model.columns["b"][1].output.dense.bias[0] += 3.0
    # a rank-one deviation matrix: its one singular value is ||(-1, 2, -1)|| = sqrt(6)
    assert model.aux_loss().item() == pytest.approx(0.1 * 6 ** 0.5, rel=1e-5)
    with torch.no_grad():  # and along e_1, columns a and c apart: deviations (4, 0, -4) e_1
        model.columns["a"][1].output.dense.bias[1] += 4.0
        model.columns["c"][1].output.dense.bias[1] -= 4.0
    # task vectors (-1, 2, -1) and (4, 0, -4) are orthogonal, as are e_0 and e_1: singular values
    # sqrt(6) and sqrt(32)
    assert model.aux_loss().item() == pytest.approx(0.1 * (6 ** 0.5 + 32 ** 0.5), rel=1e-5)

    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.columns.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    expected = sum(torch.linalg.svdvals((stack - stack.mean(0)).double()).sum().item()
                   for stack in _parameters(model))
    assert model.aux_loss().item() == pytest.approx(0.1 * expected, rel=1e-5)


def test_the_uncentred_trace_norm_penalty_is_the_sum_of_singular_values_of_each_stacked_parameter():
    model = build("soft_sharing", tasks=("a", "b"), expert_layers=2, soft_sharing_norm="trace_uncentered",
                  soft_sharing_weight=0.1)
    # identical columns: each stack is rank one, its one singular value sqrt(T) ||w||
    at_start = sum(2 ** 0.5 * stack[0].norm().item() for stack in _parameters(model))
    penalty = model.aux_loss()
    assert penalty.item() == pytest.approx(0.1 * at_start, rel=1e-5)
    penalty.backward()  # the zero singular values carry no gradient, not NaN
    assert all(torch.isfinite(p.grad).all() for p in model.columns.parameters())

    with torch.no_grad():  # one bias stack made of orthogonal rows 3 e_0 and 4 e_1: singular values 3 and 4
        bias_a, bias_b = model.columns["a"][1].output.dense.bias, model.columns["b"][1].output.dense.bias
        bias_a.zero_()[0] = 3.0
        bias_b.zero_()[1] = 4.0
    rest = sum(2 ** 0.5 * stack[0].norm().item() for stack in _parameters(model)) - 2 ** 0.5 * 3.0
    assert model.aux_loss().item() == pytest.approx(0.1 * (rest + 7.0), rel=1e-5)

    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.columns.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    expected = sum(torch.linalg.svdvals(stack.double()).sum().item() for stack in _parameters(model))
    assert model.aux_loss().item() == pytest.approx(0.1 * expected, rel=1e-5)


def test_no_soft_sharing_penalty_at_weight_zero_and_the_columns_start_as_copies():
    encoder = new_encoder()
    model = build("soft_sharing", encoder=encoder, expert_layers=1, soft_sharing_weight=0.0)
    assert model.aux_loss() is None
    assert all(torch.equal(p, q) for p, q in zip(model.columns["a"].parameters(), model.columns["b"].parameters()))
