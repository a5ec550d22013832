"""A budget too small for a curriculum: refused before any work with the smallest budget that fills it
(found from the curriculum itself), and a warning where it only leaves tasks out of some stages."""

from __future__ import annotations

import itertools
import logging
import re

import pytest

from ernie_cpt.errors import UserError
from schedules.budget import BudgetTooSmall, smallest_budgets
from schedules.curricula import CURRICULA, build_schedule
from schedules.options import ScheduleOptions
from schedules.stage import split_budget

GENERATED = ["continual", "joint", "sequential", "pairwise"]


def _options(schedule: str, allocation: str = "even", **fields) -> ScheduleOptions:
    return ScheduleOptions(schedule=schedule, stage_allocation=allocation, **fields)


def _fills(schedule: str, allocation: str, tasks: list[str], budgets: dict[str, int]) -> bool:
    """Whether every task has a step in every stage it takes part in, worked out here from an ample budget."""
    curriculum = CURRICULA[schedule]
    design = [set(s.steps) for s in curriculum(tasks, dict.fromkeys(tasks, 10**6), _options(schedule, allocation))]
    return [set(s.steps) for s in curriculum(tasks, budgets, _options(schedule, allocation))] == design


def test_pairwise_with_three_tasks_and_four_steps_is_refused_with_the_budget_that_fills_it():
    with pytest.raises(UserError) as error:
        build_schedule(_options("pairwise"), ["A", "B", "C"], 4)
    assert str(error.value) == ("--schedule pairwise with 3 tasks has 7 stages and needs at least 12 steps "
                                "(--max-steps 12 or --steps-per-task 4); --max-steps 4 leaves stages 5-7 without a "
                                "step")
    with pytest.raises(UserError, match=re.escape("--steps-per-task 1 leaves stages 4-7 without a step")):
        build_schedule(_options("pairwise", steps_per_task=1), ["A", "B", "C"], 4)


@pytest.mark.parametrize("schedule", GENERATED)
@pytest.mark.parametrize("allocation", ["even", "front"])
def test_the_named_budgets_are_the_smallest_that_fill_the_curriculum(schedule, allocation):
    for k in range(1, 6):
        tasks = [f"t{i}" for i in range(k)]

        def build(budgets, schedule=schedule, tasks=tasks):
            return CURRICULA[schedule](tasks, budgets, _options(schedule, allocation))

        total, per_task = smallest_budgets(build, tasks)
        assert _fills(schedule, allocation, tasks, dict.fromkeys(tasks, per_task))
        assert per_task == 1 or not _fills(schedule, allocation, tasks, dict.fromkeys(tasks, per_task - 1))
        assert _fills(schedule, allocation, tasks, split_budget(total, tasks))
        assert total == k or not _fills(schedule, allocation, tasks, split_budget(total - 1, tasks))
        # and the advice works: these budgets build without an error or a warning
        for fields, steps in (({"steps_per_task": per_task}, 0), ({}, total)):
            build_schedule(_options(schedule, allocation, **fields), tasks, steps)


@pytest.mark.parametrize("schedule", GENERATED)
def test_every_budget_is_either_refused_or_gives_every_stage_a_step(schedule):
    for k, n in itertools.product(range(1, 6), range(1, 30)):
        tasks = [f"t{i}" for i in range(k)]
        for allocation in ("even", "front"):
            try:
                stages = build_schedule(_options(schedule, allocation), tasks, n, warn=False)
            except BudgetTooSmall as e:
                assert e.total > n, (schedule, allocation, k, n)
                continue
            assert all(stage.total_steps > 0 for stage in stages), (schedule, allocation, k, n)
            assert {task for stage in stages for task in stage.steps} == set(tasks)


def test_replay_never_empties_a_stage():
    for fraction in (0.05, 0.5, 0.9):
        stages = build_schedule(_options("pairwise", replay=fraction), ["A", "B", "C"], 12)
        assert all(stage.total_steps > 0 for stage in stages)


def test_a_budget_that_leaves_tasks_out_of_their_stages_is_a_warning_naming_the_budget_that_fills_them(caplog):
    with caplog.at_level(logging.WARNING):
        stages = build_schedule(_options("sequential", steps_per_task=1), ["A", "B", "C"], 0)
    assert [s.steps for s in stages] == [{"A": 1}, {"B": 1}, {"C": 1}]
    assert caplog.messages == ["--schedule sequential: --steps-per-task 1 leaves A out of stages 2-3; B out of "
                               "stage 3 (one task per stage, as --schedule continual); every task trains in each of "
                               "its stages with at least 7 steps (--max-steps 7 or --steps-per-task 3)"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_schedule(_options("pairwise"), ["A", "B", "C"], 10)  # budgets 4, 3, 3: B and C miss (A,B,C)
    assert caplog.messages == ["--schedule pairwise: --max-steps 10 leaves B out of stage 7; C out of stage 7; every "
                               "task trains in each of its stages with at least 12 steps (--max-steps 12 or "
                               "--steps-per-task 4)"]


@pytest.mark.parametrize("schedule", ["sequential", "pairwise"])
def test_a_curriculum_of_one_task_says_it_is_continual(schedule, caplog):
    with caplog.at_level(logging.WARNING):
        build_schedule(_options(schedule), ["A"], 100)
    assert caplog.messages == [f"--schedule {schedule} with 1 task is the same as --schedule continual: every stage "
                               f"trains one task"]


def test_a_budget_that_fills_the_curriculum_says_nothing(caplog):
    with caplog.at_level(logging.WARNING):
        build_schedule(_options("pairwise"), ["A", "B", "C"], 12)
        build_schedule(_options("continual"), ["A"], 1)
        build_schedule(_options("joint"), ["A"], 1)  # one stage of one task is what joint training means
    assert caplog.messages == []
