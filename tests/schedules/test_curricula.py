"""Curricula: the exact steps of every task in every stage, budgets met exactly, and one-line errors.

Tasks are single letters: curricula only order names, and letters keep the expected tables short.
The expected steps are worked out by hand in the comments: N over s stages is N // s each, the
first N % s stages one more (``even``); shares s : s-1 : ... : 1 with the leftover steps to the
largest remainders (``front``).
"""

from __future__ import annotations

import dataclasses
import itertools
import re

import pytest

from ernie_cpt.errors import UserError
from ernie_cpt.options import help_text
from schedules.curricula import CURRICULA, build_schedule, spread, uses_budget
from schedules.curricula.file import ScheduleFileOptions
from schedules.options import ScheduleOptions, check_schedule
from schedules.stage import ALLOCATIONS, Stage, apportion, split_budget

SEVEN = list("ABCDEFG")


def stages(schedule: str, tasks: list[str], budgets: dict[str, int], allocation: str = "even") -> list[dict]:
    return [stage.steps for stage in CURRICULA[schedule](tasks, budgets, ScheduleOptions(stage_allocation=allocation))]


def each(tasks: str, n: int) -> dict[str, int]:
    return dict.fromkeys(tasks, n)


# --- dividing a budget --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("total", "weights", "parts"), [
    (1000, [1, 1, 1], [334, 333, 333]),
    (1001, [1, 1, 1], [334, 334, 333]),
    (2, [1, 1, 1], [1, 1, 0]),
    (1000, [3, 2, 1], [500, 333, 167]),  # quotas 500, 333.33, 166.67: the leftover step to the largest remainder
    (10, [4, 3, 2, 1], [4, 3, 2, 1]),
    (7, [2, 1], [5, 2]),  # quotas 4.67, 2.33
    (0, [1, 1], [0, 0]),
])
def test_apportion(total, weights, parts):
    assert apportion(total, weights) == parts


def test_allocation_policies():
    assert ALLOCATIONS["even"](1000, 3) == [334, 333, 333]
    assert ALLOCATIONS["even"](1000, 8) == [125] * 8
    assert ALLOCATIONS["front"](1000, 3) == [500, 333, 167]
    assert ALLOCATIONS["front"](100, 1) == [100]


def test_split_budget_gives_the_remainder_to_the_earliest_tasks():
    assert split_budget(1000, ["a", "b", "c"]) == {"a": 334, "b": 333, "c": 333}
    assert split_budget(1001, ["a", "b", "c"]) == {"a": 334, "b": 334, "c": 333}


def test_optimizer_steps_of_a_stage():
    stage = Stage({"A": 300, "B": 500})
    assert stage.optimizer_steps("sample") == 800
    assert stage.optimizer_steps("all") == 500
    assert Stage({}).optimizer_steps("all") == 0


# --- continual and joint ------------------------------------------------------------------------------------


@pytest.mark.parametrize("tasks", ["AB", "ABC", "ABCDEFG"])
def test_continual_gives_each_task_its_own_stage(tasks):
    assert stages("continual", list(tasks), each(tasks, 1000)) == [{t: 1000} for t in tasks]


def test_continual_and_joint_with_uneven_budgets():
    budgets = {"A": 334, "B": 333, "C": 333}
    assert stages("continual", list("ABC"), budgets) == [{"A": 334}, {"B": 333}, {"C": 333}]
    assert stages("joint", list("ABC"), budgets) == [{"A": 334, "B": 333, "C": 333}]


@pytest.mark.parametrize("tasks", ["AB", "ABC", "ABCDEFG"])
def test_joint_is_one_stage_with_every_budget(tasks):
    assert stages("joint", list(tasks), each(tasks, 999)) == [each(tasks, 999)]


# --- sequential ---------------------------------------------------------------------------------------------


def test_sequential_two_tasks():
    # A over 2 stages: 500, 500; B in 1 stage.
    assert stages("sequential", ["A", "B"], each("AB", 1000)) == [{"A": 500}, {"A": 500, "B": 1000}]
    # 1001 over 2: 501, 500.
    assert stages("sequential", ["A", "B"], each("AB", 1001)) == [{"A": 501}, {"A": 500, "B": 1001}]


def test_sequential_three_tasks():
    # A over 3 stages: 334, 333, 333; B over 2: 500, 500.
    assert stages("sequential", list("ABC"), each("ABC", 1000)) == [
        {"A": 334},
        {"A": 333, "B": 500},
        {"A": 333, "B": 500, "C": 1000},
    ]
    # Uneven budgets (1000 steps shared by 3 tasks): A 334 over 3 = 112, 111, 111; B 333 over 2 = 167, 166.
    assert stages("sequential", list("ABC"), {"A": 334, "B": 333, "C": 333}) == [
        {"A": 112},
        {"A": 111, "B": 167},
        {"A": 111, "B": 166, "C": 333},
    ]


def test_sequential_three_tasks_front_loaded():
    # A: 1000 * 3/6, 2/6, 1/6 = 500, 333.3, 166.7 -> 500, 333, 167; B: 1000 * 2/3, 1/3 = 666.7, 333.3 -> 667, 333.
    assert stages("sequential", list("ABC"), each("ABC", 1000), "front") == [
        {"A": 500},
        {"A": 333, "B": 667},
        {"A": 167, "B": 333, "C": 1000},
    ]


def test_sequential_seven_tasks():
    # 1000 over 7 stages: 142 r 6; over 6: 166 r 4; over 5: 200; over 4: 250; over 3: 333 r 1; over 2: 500.
    assert stages("sequential", SEVEN, each(SEVEN, 1000)) == [
        {"A": 143},
        {"A": 143, "B": 167},
        {"A": 143, "B": 167, "C": 200},
        {"A": 143, "B": 167, "C": 200, "D": 250},
        {"A": 143, "B": 167, "C": 200, "D": 250, "E": 334},
        {"A": 143, "B": 166, "C": 200, "D": 250, "E": 333, "F": 500},
        {"A": 142, "B": 166, "C": 200, "D": 250, "E": 333, "F": 500, "G": 1000},
    ]


# --- pairwise -----------------------------------------------------------------------------------------------


def test_pairwise_two_tasks_has_no_repeated_all_tasks_stage():
    # Every task is in 2 stages: alone, then the pair.
    assert stages("pairwise", ["A", "B"], each("AB", 1001)) == [{"A": 501}, {"B": 501}, {"A": 500, "B": 500}]


def test_pairwise_three_tasks():
    # Every task is in 4 stages: alone, two pairs, all. 1000 / 4 = 250; 1003 / 4 = 250 r 3.
    assert stages("pairwise", list("ABC"), each("ABC", 1000)) == [
        {"A": 250}, {"B": 250}, {"C": 250},
        {"A": 250, "B": 250}, {"B": 250, "C": 250}, {"A": 250, "C": 250},
        {"A": 250, "B": 250, "C": 250},
    ]
    assert stages("pairwise", list("ABC"), {"A": 1003, "B": 1000, "C": 1001}) == [
        {"A": 251}, {"B": 250}, {"C": 251},
        {"A": 251, "B": 250}, {"B": 250, "C": 250}, {"A": 251, "C": 250},
        {"A": 250, "B": 250, "C": 250},
    ]


SEVEN_PAIRWISE_GROUPS = [
    "A", "B", "C", "D", "E", "F", "G",
    "AB", "BC", "CD", "DE", "EF", "FG",  # neighbours
    "AC", "BD", "CE", "DF", "EG",  # one apart
    "AD", "BE", "CF", "DG",
    "AE", "BF", "CG",
    "AF", "BG",
    "AG",
    "ABCDEFG",
]


def test_pairwise_seven_tasks():
    # Every task is in 8 stages (alone, 6 pairs, all): 1000 / 8 = 125 each.
    assert stages("pairwise", SEVEN, each(SEVEN, 1000)) == [each(group, 125) for group in SEVEN_PAIRWISE_GROUPS]
    # 1001 / 8 = 125 r 1: a task's first stage, the one it trains alone, gets the extra step.
    expected = [each(group, 126 if len(group) == 1 else 125) for group in SEVEN_PAIRWISE_GROUPS]
    assert stages("pairwise", SEVEN, each(SEVEN, 1001)) == expected


# --- the invariant ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["continual", "joint", "sequential", "pairwise"])
@pytest.mark.parametrize("allocation", ["even", "front"])
def test_every_task_gets_exactly_its_budget(schedule, allocation):
    for k, n in itertools.product(range(1, 9), [1, 2, 3, 5, 7, 8, 29, 100, 999, 1000, 1001, 4097]):
        tasks = [f"t{i}" for i in range(k)]
        budgets = {t: n + 3 * i for i, t in enumerate(tasks)}  # uneven budgets too
        result = CURRICULA[schedule](tasks, budgets, ScheduleOptions(stage_allocation=allocation))
        for task in tasks:
            assert sum(stage.steps.get(task, 0) for stage in result) == budgets[task], (k, n, task)
        assert all(steps > 0 for stage in result for steps in stage.steps.values())


def test_a_share_of_zero_leaves_the_task_out_of_the_stage():
    # A has 2 steps for 3 stages: 1, 1, 0.
    assert [s.steps for s in spread([["A"], ["A"], ["A", "B"]], {"A": 2, "B": 5}, "even")] == [
        {"A": 1}, {"A": 1}, {"B": 5}]


# --- build_schedule -----------------------------------------------------------------------------------------


def test_build_schedule_uses_steps_per_task():
    options = ScheduleOptions(schedule="sequential", steps_per_task=1000)
    assert [s.steps for s in build_schedule(options, ["A", "B"], total_steps=10)] == [
        {"A": 500}, {"A": 500, "B": 1000}]


def test_build_schedule_shares_total_steps_evenly():
    # 1000 steps for 3 tasks: 334, 333, 333.
    assert [s.steps for s in build_schedule(ScheduleOptions(schedule="continual"), list("ABC"), 1000)] == [
        {"A": 334}, {"B": 333}, {"C": 333}]


@pytest.mark.parametrize(("tasks", "total", "message"), [
    (["A", "B", "C"], 2, "--schedule joint with 3 tasks has 1 stage and needs at least 3 steps (--max-steps 3 or "
                         "--steps-per-task 1); --max-steps 2 leaves task C without a step"),
    (["A", "B", "A"], 100, "task A is listed twice in --tasks"),
    ([], 100, "--tasks is empty"),
])
def test_build_schedule_errors(tasks, total, message):
    with pytest.raises(UserError, match=re.escape(message)):
        build_schedule(ScheduleOptions(), tasks, total)


# --- options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "message"), [
    ({"schedule": "sequental"}, "unknown schedule 'sequental'; did you mean 'sequential'?"),
    ({"stage_allocation": "frnt"}, "unknown stage allocation 'frnt'; did you mean 'front'?"),
    ({"task_sampling": "uniformly"}, "unknown task sampling 'uniformly'; did you mean 'uniform'?"),
    ({"task_mixing": "al"}, "unknown task mixing 'al'; did you mean 'all'?"),
    ({"steps_per_task": 0}, "--steps-per-task must be at least 1, got 0"),
    ({"sampling_temperature": 0.0}, "--sampling-temperature must be above 0"),
    ({"schedule": "file", "steps_per_task": 5}, "--steps-per-task does not apply to --schedule file"),
])
def test_bad_options_are_one_line_errors(fields, message):
    with pytest.raises(UserError, match=re.escape(message)) as error:
        ScheduleOptions(**fields)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("schedule", "file", "message"), [
    ("file", None, "--schedule file needs --schedule-file FILE"),
    ("joint", "s.yaml", "--schedule-file is read only by --schedule file, not --schedule joint; add --schedule "
                        "file or drop --schedule-file"),
])
def test_a_curriculum_s_own_options_are_checked_against_the_chosen_one(schedule, file, message):
    groups = {ScheduleOptions: ScheduleOptions(schedule=schedule), ScheduleFileOptions: ScheduleFileOptions(file)}
    with pytest.raises(UserError, match=re.escape(message)):
        check_schedule(groups)
    check_schedule({ScheduleOptions: ScheduleOptions(schedule="file"), ScheduleFileOptions: ScheduleFileOptions("s")})
    check_schedule({ScheduleOptions: ScheduleOptions(schedule="joint")})


def test_defaults():
    options = ScheduleOptions()
    assert dataclasses.asdict(options) == {
        "schedule": "joint", "steps_per_task": None, "stage_allocation": "even",
        "task_mixing": "sample", "task_sampling": "remaining", "sampling_temperature": 2.0,
        "replay": 0.0, "reset_optimizer": False, "shared_task_id": False}


def test_every_curriculum_is_a_module_of_its_own_with_its_summary_and_options():
    assert CURRICULA.names() == ["continual", "joint", "sequential", "pairwise", "file"]
    for name, curriculum in CURRICULA.items():
        assert curriculum.__module__ == f"schedules.curricula.{name}", name
        assert CURRICULA.summary(name) and "\n" not in CURRICULA.summary(name)
    assert CURRICULA.option_classes() == [ScheduleFileOptions]
    assert [name for name in CURRICULA if not uses_budget(name)] == ["file"]
    assert "file: the stages and steps written in --schedule-file" in help_text(
        next(f for f in dataclasses.fields(ScheduleOptions) if f.name == "schedule"))


# --- replay -------------------------------------------------------------------------------------------------


def test_replay_gives_a_fraction_of_each_stage_to_the_earlier_tasks_it_lacks():
    # continual, 1000 steps each, 5 %: stage 2 gives 50 steps to a; stage 3 gives 50 to a and b (25 each).
    stages = build_schedule(ScheduleOptions(schedule="continual", replay=0.05), ["a", "b", "c"], 3000)

    assert [stage.steps for stage in stages] == [{"a": 1000}, {"b": 950, "a": 50}, {"c": 950, "a": 25, "b": 25}]
    assert [stage.total_steps for stage in stages] == [1000, 1000, 1000]


def test_replay_takes_from_a_stage_s_tasks_in_proportion_and_splits_remainders_to_the_earliest():
    # pairwise with 3 tasks, 40 steps each: stage (b) has 10 steps and replays a: round(0.25 * 10) = 2 (10 -> 8).
    # Stage (c): 10 steps, 2 to replay, split 1 to a, 1 to b. Stage (a,b) 20: c replayed 5, taken 3 + 2 (10 and 10
    # give quotas 2.5 and 2.5; the tie goes to the earlier task). Stages training every earlier task are unchanged.
    stages = build_schedule(ScheduleOptions(schedule="pairwise", replay=0.25), ["a", "b", "c"], 120)

    assert [stage.steps for stage in stages][:4] == [{"a": 10}, {"b": 8, "a": 2}, {"c": 8, "a": 1, "b": 1},
                                                     {"a": 7, "b": 8, "c": 5}]
    assert [stage.steps for stage in stages][-1] == {"a": 10, "b": 10, "c": 10}


def test_replay_leaves_curricula_without_earlier_missing_tasks_unchanged():
    for schedule in ("joint", "sequential"):
        plain = build_schedule(ScheduleOptions(schedule=schedule), ["a", "b", "c"], 300)
        assert build_schedule(ScheduleOptions(schedule=schedule, replay=0.05), ["a", "b", "c"], 300) == plain


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_replay_out_of_range_is_a_one_line_error(fraction):
    with pytest.raises(UserError, match=re.escape(f"--replay must be at least 0 and below 1, got {fraction}")):
        ScheduleOptions(replay=fraction)


# --- file ---------------------------------------------------------------------------------------------------


def from_file(tmp_path, text: str, tasks: list[str]) -> list[dict]:
    path = tmp_path / "stages.yaml"
    path.write_text(text, encoding="utf-8")
    settings = ScheduleFileOptions(schedule_file=str(path))
    return [stage.steps for stage in build_schedule(ScheduleOptions(schedule="file"), tasks, 1, settings=settings)]


def test_file_gives_the_stages_as_written(tmp_path):
    text = "stages:\n  - {knowledge_masking: 500}\n  - {knowledge_masking: 200, capitalization: 300}\n"
    assert from_file(tmp_path, text, ["knowledge_masking", "capitalization"]) == [
        {"knowledge_masking": 500}, {"knowledge_masking": 200, "capitalization": 300}]


@pytest.mark.parametrize(("text", "message"), [
    ("stages: [{A: 5}\n", "schedule file .* is not valid YAML"),
    ("- {A: 5}\n", "must hold a 'stages' list, e.g. stages: "),
    ("stages: [{A: 5}]\nstage: [{B: 5}]\n", "unknown key 'stage' in schedule file .*; it holds only a 'stages' list"),
    ("stages: []\n", "'stages' in schedule file .* must be a non-empty list"),
    ("stages: [{A: 5}, [B]]\n", r"stage 2 of schedule file .* must map task names to steps"),
    ("stages: [{A: 5}, {}]\n", r"stage 2 of schedule file .* must map task names to steps"),
    ("stages: [{A: 5, Bb: 5}]\n", r"stage 1 of .* names task 'Bb', which is not in --tasks \(A, B\); "
                                  r"did you mean 'B'\? add it to --tasks"),
    ("stages: [{A: 5}, {B: 0}]\n", "stage 2 of .* gives B 0 steps; write a positive whole number of steps"),
    ("stages: [{A: 5}, {B: -3}]\n", "gives B -3 steps"),
    ("stages: [{A: 5}, {B: 2.5}]\n", "gives B 2.5 steps"),
    ("stages: [{A: 5}, {B: true}]\n", "gives B True steps"),
    ("stages: [{A: 5}]\n", "task B of --tasks has no steps in schedule file .*; give it steps in a stage or drop it"),
    # a key given twice: YAML would keep the last without a word
    ("stages:\n  - A: 5\n    B: 5\n    A: 50\n", r"schedule file .* gives the key 'A' twice, on lines 2 and 4 "
                                                  r"\(YAML would keep the last without a word\); keep one"),
    ("stages: [{A: 5}]\nstages: [{A: 5}, {B: 5}]\n", "gives the key 'stages' twice, on lines 1 and 2"),
])
def test_bad_schedule_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as error:
        from_file(tmp_path, text, ["A", "B"])
    assert "\n" not in str(error.value)


def test_missing_schedule_file(tmp_path):
    settings = ScheduleFileOptions(schedule_file=str(tmp_path / "nowhere.yaml"))
    with pytest.raises(UserError, match=r"cannot read schedule file .*nowhere\.yaml: No such file or directory; "
                                        r"check the path given to --schedule-file"):
        build_schedule(ScheduleOptions(schedule="file"), ["A"], total_steps=1, settings=settings)
