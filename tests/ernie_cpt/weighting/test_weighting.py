import dataclasses
import io
import math

import pytest
import torch
from torch import nn

from ernie_cpt.errors import UserError
from ernie_cpt.options import help_text
from ernie_cpt.weighting import WEIGHTINGS, LossWeighting, StepContext, WeightingOptions, build_weighting

TASKS = ["a", "b", "c"]


class SharedLayerThreeHeads(nn.Module):
    """A shared layer under three linear heads; head b is ten times larger, so task b's gradient
    on the shared weight is much larger than the others'."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(4, 3)
        self.heads = nn.ModuleDict({task: nn.Linear(3, 1) for task in TASKS})
        with torch.no_grad():
            self.heads["b"].weight.mul_(10)
        self.inputs = torch.linspace(-1, 1, 20).reshape(5, 4)

    def losses(self, tasks: list[str], scale: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        hidden = torch.tanh(self.shared(self.inputs))
        return {task: (self.heads[task](hidden) - 1).pow(2).mean() * (scale or {}).get(task, 1.0) for task in tasks}

    def gradient_norm(self, loss: torch.Tensor) -> float:
        return float(torch.autograd.grad(loss, self.shared.weight, retain_graph=True)[0].norm())


def _constant_losses(values: dict[str, float]) -> dict[str, torch.Tensor]:
    return {task: torch.tensor(value) for task, value in values.items()}


def _combine(weighting: LossWeighting, losses: dict[str, torch.Tensor], kpis: dict[str, float] | None = None,
             shared: nn.Parameter | None = None) -> torch.Tensor:
    return weighting.combine(losses, StepContext(shared=shared if shared is not None else nn.Parameter(torch.zeros(1)),
                                                 kpis=kpis if kpis is not None else dict.fromkeys(losses, 0.5)))


def make(name: str, tasks: list[str], **fields) -> LossWeighting:
    """The weighting ``name`` over ``tasks`` with its own options class made of ``fields``."""
    options_class = WEIGHTINGS.options_class(name)
    return build_weighting(name, tasks, options_class(**fields) if options_class else None)


# Options that make every method do something visible (a manual weight, a short DWA window).
SOME = {"manual": {"task_weights": ["b=0.5"]}, "dwa": {"dwa_window": 2}}


def test_every_method_is_registered_and_named_in_the_help():
    assert set(WEIGHTINGS) == {"equal", "manual", "uncertainty", "gradnorm", "dwa", "dtp", "famo", "pcgrad", "cagrad",
                               "mgda", "nash_mtl"}
    field = next(f for f in dataclasses.fields(WeightingOptions) if f.name == "loss_weighting")
    assert all(f"{name}: {WEIGHTINGS.summary(name)}" in help_text(field) for name in WEIGHTINGS)
    assert all(isinstance(build_weighting(name, TASKS), WEIGHTINGS[name]) for name in WEIGHTINGS)


def test_each_weighting_declares_its_options_next_to_its_code():
    # the fields that were one shared WeightingOptions before, now each in its weighting's module
    owners = {f.name: name for name in WEIGHTINGS if WEIGHTINGS.options_class(name)
              for f in dataclasses.fields(WEIGHTINGS.options_class(name))}
    assert owners == {"task_weights": "manual", "gradnorm_alpha": "gradnorm", "gradnorm_lr": "gradnorm",
                      "dwa_temperature": "dwa", "dwa_window": "dwa", "dtp_gamma": "dtp", "dtp_momentum": "dtp",
                      "cagrad_c": "cagrad", "mgda_normalization": "mgda", "famo_lr": "famo", "famo_gamma": "famo"}
    for name in WEIGHTINGS:
        cls = WEIGHTINGS.options_class(name)
        assert cls is None or cls.__module__ == WEIGHTINGS[name].__module__, name
    assert [name for name, cls in WEIGHTINGS.items() if cls.needs_kpis] == ["dtp"]


def test_an_unknown_weighting_is_a_user_error_with_a_suggestion():
    with pytest.raises(UserError, match="unknown loss weighting 'gradnrom'; did you mean 'gradnorm'"):
        WeightingOptions(loss_weighting="gradnrom")


def test_equal_is_the_plain_sum():
    weighting = build_weighting("equal", TASKS)
    total = _combine(weighting, _constant_losses({"a": 1.5, "b": 0.25, "c": 3.0}))
    assert total.item() == 4.75
    assert weighting.last_weights == {"a": 1.0, "b": 1.0, "c": 1.0}


def test_manual_weighs_with_the_given_weights_and_one_elsewhere():
    weighting = make("manual", TASKS, task_weights=["b=0.5", " c = 2 "])
    total = _combine(weighting, _constant_losses({"a": 1.5, "b": 0.25, "c": 3.0}))
    assert total.item() == 1.5 + 0.5 * 0.25 + 2 * 3.0
    assert weighting.last_weights == {"a": 1.0, "b": 0.5, "c": 2.0}


@pytest.mark.parametrize(("task_weights", "message"), [
    (["b"], "'b' is not TASK=WEIGHT"),
    (["=1"], "is not TASK=WEIGHT"),
    (["b=heavy"], "the weight must be a number >= 0, e.g. --task-weights a=0.5"),
    (["b=-1"], "the weight must be a number >= 0"),
    (["b=nan"], "the weight must be a number >= 0"),
    (["d=1"], "'d' is not a task of this run; write TASK=WEIGHT with TASK one of a, b, c"),
    (["b=1", "b=2"], "gives 'b' twice"),
])
def test_manual_weights_that_cannot_be_read_are_one_line_user_errors(task_weights, message):
    with pytest.raises(UserError, match=message) as raised:
        make("manual", TASKS, task_weights=task_weights)
    assert "\n" not in str(raised.value)


def test_manual_suggests_the_closest_task_name():
    options = {"task_weights": ["capitalisation=0.5"]}
    with pytest.raises(UserError, match="did you mean 'capitalization'"):
        make("manual", ["knowledge_masking", "capitalization"], **options)


def test_uncertainty_total_and_its_gradient_follow_the_formula():
    weighting = build_weighting("uncertainty", ["a", "b"])
    s = {"a": 0.3, "b": -0.7}
    with torch.no_grad():
        for task, value in s.items():
            weighting.log_variances[task].fill_(value)
    losses = {"a": 1.5, "b": 4.0}
    total = _combine(weighting, _constant_losses(losses))
    total.backward()
    expected_total = sum(math.exp(-s[t]) * losses[t] + s[t] for t in losses)
    assert total.item() == pytest.approx(expected_total, rel=1e-6)
    for task in losses:  # dTotal/ds_i = -exp(-s_i) L_i + 1
        assert float(weighting.log_variances[task].grad) == pytest.approx(1 - math.exp(-s[task]) * losses[task],
                                                                           rel=1e-6)
        assert weighting.last_weights[task] == pytest.approx(math.exp(-s[task]), rel=1e-6)


def test_uncertainty_lowers_the_weight_of_the_task_with_the_larger_loss():
    weighting = build_weighting("uncertainty", ["a", "b"])
    optimizer = torch.optim.SGD(weighting.parameters(), lr=0.1)
    losses = {"a": 1.0, "b": 4.0}
    for step in range(300):
        optimizer.zero_grad()
        _combine(weighting, _constant_losses(losses)).backward()
        optimizer.step()
        if step == 0:  # one step of s_i - lr * (1 - exp(-s_i) L_i) from s = 0
            assert weighting.log_variances["a"].item() == 0.0
            assert weighting.log_variances["b"].item() == pytest.approx(0.3, rel=1e-6)
    _combine(weighting, _constant_losses(losses))
    # The minimum of exp(-s) L + s is at s = log L, where the weight exp(-s) is 1 / L.
    assert weighting.last_weights["a"] == pytest.approx(1.0, abs=1e-4)
    assert weighting.last_weights["b"] == pytest.approx(0.25, abs=1e-4)


def test_gradnorm_takes_the_steps_of_the_paper():
    """The paper's Algorithm 1 written out with a second-order gradient through grad_W(w_i L_i)."""
    alpha, lr = 1.5, 0.025
    model = SharedLayerThreeHeads()
    weighting = make("gradnorm", ["a", "b"], gradnorm_alpha=alpha, gradnorm_lr=lr)
    w = torch.ones(2, requires_grad=True)
    optimizer = torch.optim.Adam([w], lr=lr)
    initial = None
    for step in range(30):
        scale = {"a": 1.0 - 0.02 * step, "b": 1.0 - 0.005 * step}
        losses = model.losses(["a", "b"], scale)
        _combine(weighting, losses, shared=model.shared.weight)
        assert list(weighting.last_weights.values()) == pytest.approx(w.tolist(), rel=1e-5)

        values = torch.stack([losses["a"], losses["b"]]).detach()
        initial = values if initial is None else initial
        norms = torch.stack([torch.autograd.grad(w[i] * losses[task], model.shared.weight, create_graph=True)[0].norm()
                             for i, task in enumerate(["a", "b"])])
        ratios = values / initial
        targets = (norms.mean() * (ratios / ratios.mean()) ** alpha).detach()
        w.grad = torch.autograd.grad((norms - targets).abs().sum(), w)[0]
        optimizer.step()
        with torch.no_grad():
            w.mul_(2 / w.sum())
    assert w.tolist()[0] > 1.2  # task a's gradient is the small one, so its weight has grown


def test_gradnorm_pulls_the_gradient_norms_toward_the_target():
    alpha = 1.5
    model = SharedLayerThreeHeads()
    weighting = make("gradnorm", ["a", "b"], gradnorm_alpha=alpha)
    # Task a's loss halves after its first step, task b's stays: r_a / r_b = 0.5, so the target
    # ratio of the weighted gradient norms G_a / G_b is 0.5 ** alpha.
    target = 0.5 ** alpha
    _combine(weighting, model.losses(["a", "b"]), shared=model.shared.weight)

    def norm_ratio() -> float:
        losses = model.losses(["a", "b"], {"a": 0.5})
        _combine(weighting, losses, shared=model.shared.weight)
        w = weighting.last_weights
        assert sum(w.values()) == pytest.approx(2.0, rel=1e-6)
        return (w["a"] * model.gradient_norm(losses["a"])) / (w["b"] * model.gradient_norm(losses["b"]))

    before = norm_ratio()
    assert before < target / 5  # head b is ten times larger
    for _ in range(100):
        after = norm_ratio()
    # Adam's steps on |G_i - target_i| leave the ratio oscillating near the target, not on it.
    assert abs(math.log(after / target)) < 0.1 * abs(math.log(before / target))
    assert weighting.last_weights["a"] > weighting.last_weights["b"]


def test_gradnorm_backpropagates_the_weights_before_the_update_and_only_the_total():
    model = SharedLayerThreeHeads()
    weighting = build_weighting("gradnorm", ["a", "b"])
    losses = model.losses(["a", "b"])
    total = _combine(weighting, losses, shared=model.shared.weight)
    assert weighting.last_weights == {"a": 1.0, "b": 1.0}
    assert weighting.loss_weights["a"].item() > 1.0  # updated after use
    assert all(p.grad is None for p in [*model.parameters(), *weighting.parameters()])
    expected = sum(torch.autograd.grad(loss, model.shared.weight, retain_graph=True)[0] for loss in losses.values())
    total.backward()
    torch.testing.assert_close(model.shared.weight.grad, expected)
    assert all(p.grad is None for p in weighting.parameters())


def _feed_dwa(weighting: LossWeighting, losses: dict[str, float], steps: int) -> list[dict[str, float]]:
    weights = []
    for _ in range(steps):
        _combine(weighting, _constant_losses(losses))
        weights.append(weighting.last_weights)
    return weights


def _dwa_expected(rates: dict[str, float], temperature: float) -> dict[str, float]:
    exps = {task: math.exp(r / temperature) for task, r in rates.items()}
    return {task: len(rates) * e / sum(exps.values()) for task, e in exps.items()}


@pytest.mark.parametrize("temperature", [2.0, 0.5])
def test_dwa_weights_are_k_softmax_of_the_window_loss_ratios(temperature):
    weighting = make("dwa", ["a", "b"], dwa_window=3, dwa_temperature=temperature)
    first_two_windows = _feed_dwa(weighting, {"a": 2.0, "b": 1.0}, 3) + _feed_dwa(weighting, {"a": 1.0, "b": 1.0}, 3)
    assert first_two_windows == [{"a": 1.0, "b": 1.0}] * 6
    third = _feed_dwa(weighting, {"a": 0.5, "b": 2.0}, 3)
    expected = _dwa_expected({"a": 1.0 / 2.0, "b": 1.0 / 1.0}, temperature)
    for weights in third:  # constant over the window
        assert weights == pytest.approx(expected, rel=1e-12)
    assert third[0]["b"] > third[0]["a"]  # b's loss fell less
    fourth = _feed_dwa(weighting, {"a": 0.5, "b": 2.0}, 1)
    assert fourth[0] == pytest.approx(_dwa_expected({"a": 0.5 / 1.0, "b": 2.0 / 1.0}, temperature), rel=1e-12)


def test_dwa_gives_a_task_without_two_windows_a_ratio_of_one():
    weighting = make("dwa", TASKS, dwa_window=2)
    _feed_dwa(weighting, {"a": 4.0, "b": 1.0}, 2)
    _feed_dwa(weighting, {"a": 1.0, "b": 2.0}, 2)
    [weights] = _feed_dwa(weighting, {"a": 1.0, "b": 1.0, "c": 1.0}, 1)
    assert weights == pytest.approx(_dwa_expected({"a": 0.25, "b": 2.0, "c": 1.0}, 2.0), rel=1e-12)
    assert sum(weights.values()) == pytest.approx(3.0, rel=1e-12)


def _focal(kappa: float, gamma: float) -> float:
    return -((1 - kappa) ** gamma) * math.log(kappa)


def test_dtp_gives_the_task_with_the_lower_kpi_the_higher_focal_weight():
    weighting = make("dtp", TASKS, dtp_gamma=2.0, dtp_momentum=0.9)
    _combine(weighting, _constant_losses({"a": 1.0, "b": 1.0, "c": 1.0}), kpis={"a": 0.9, "b": 0.4, "c": 1.0})
    assert weighting.last_weights["a"] == pytest.approx(_focal(0.9, 2.0), rel=1e-12)
    assert weighting.last_weights["b"] == pytest.approx(_focal(0.4, 2.0), rel=1e-12)
    assert weighting.last_weights["b"] > weighting.last_weights["a"] > weighting.last_weights["c"]
    assert weighting.last_weights["c"] == pytest.approx(_focal(1 - 1e-6, 2.0), rel=1e-6)  # clamped, finite
    total = _combine(weighting, _constant_losses({"a": 2.0, "b": 3.0}), kpis={"a": 0.5, "b": 0.0})
    kappa_a, kappa_b = 0.9 * 0.9 + 0.1 * 0.5, 0.9 * 0.4 + 0.1 * 0.0
    assert weighting.last_weights == pytest.approx({"a": _focal(kappa_a, 2.0), "b": _focal(kappa_b, 2.0)},
                                                   rel=1e-12)
    assert total.item() == pytest.approx(2.0 * _focal(kappa_a, 2.0) + 3.0 * _focal(kappa_b, 2.0), rel=1e-6)


def _step(weighting: LossWeighting, model: SharedLayerThreeHeads, step: int, tasks: list[str]) -> torch.Tensor:
    """One step with losses and KPIs that change with the step; learned weights take an SGD step."""
    scale = {task: 1.0 / (1 + 0.1 * step * (i + 1)) for i, task in enumerate(tasks)}
    kpis = {task: 0.3 + 0.05 * step + 0.1 * i for i, task in enumerate(tasks)}
    total = weighting.combine(model.losses(tasks, scale), StepContext(step=step, shared=model.shared.weight, kpis=kpis))
    trained = [p for p in weighting.parameters() if p.requires_grad]
    if trained:
        grads = torch.autograd.grad(total, trained, allow_unused=True, retain_graph=True)
        with torch.no_grad():
            for param, grad in zip(trained, grads):
                if grad is not None:
                    param.sub_(0.1 * grad)
    if weighting.needs_losses_after_step:  # FAMO: each task's loss fell by a different fraction
        after = model.losses(tasks, scale)
        weighting.after_step({task: after[task].item() * (0.8 + 0.1 * i) for i, task in enumerate(tasks)})
    return total


LOSS_LEVEL = sorted(name for name, cls in WEIGHTINGS.items() if cls.level == "loss")


@pytest.mark.parametrize("name", LOSS_LEVEL)  # gradient-level ones: tests/ernie_cpt/weighting/test_gradient_methods.py
def test_a_weighting_restored_from_its_state_dict_continues_bit_exactly(name):
    model = SharedLayerThreeHeads()
    original = make(name, TASKS, **SOME.get(name, {}))
    for step in range(5):
        _step(original, model, step, TASKS)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored = make(name, TASKS, **SOME.get(name, {}))
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    fresh = make(name, TASKS, **SOME.get(name, {}))
    for step in range(5, 10):
        totals = [_step(weighting, model, step, TASKS) for weighting in (original, restored, fresh)]
        assert restored.last_weights == original.last_weights
        assert torch.equal(totals[1], totals[0])
    if name not in ("equal", "manual"):  # the state matters: a fresh weighting would differ
        assert fresh.last_weights != original.last_weights


@pytest.mark.parametrize("name", sorted(WEIGHTINGS))
def test_every_weighting_works_on_the_tasks_present(name):
    model = SharedLayerThreeHeads()
    weighting = make(name, TASKS, **SOME.get(name, {}))
    for step, tasks in enumerate([TASKS, TASKS, ["a", "b"], ["a", "b"], ["c"], TASKS, ["a", "b"], ["b", "c"]]):
        total = _step(weighting, model, step, tasks)
        assert set(weighting.last_weights) == set(tasks)
        assert math.isfinite(total.item())
        assert all(math.isfinite(w) and w > 0 for w in weighting.last_weights.values())
        if name in ("equal", "gradnorm", "dwa"):  # the methods whose weights sum to the number of tasks
            assert sum(weighting.last_weights.values()) == pytest.approx(len(tasks), rel=1e-6)


def test_losses_of_an_unknown_task_are_refused():
    weighting = build_weighting("equal", ["a", "b"])
    with pytest.raises(ValueError, match="needs losses of some of"):
        _combine(weighting, _constant_losses({"z": 1.0}))
    with pytest.raises(ValueError, match="needs losses of some of"):
        _combine(weighting, {})
