"""The stages and steps written in a YAML file (``--schedule file --schedule-file FILE``)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ernie_cpt.errors import UserError
from ernie_cpt.options import option
from ernie_cpt.yaml_files import read_yaml
from schedules.curricula.base import register
from schedules.stage import Stage

if TYPE_CHECKING:
    from schedules.options import ScheduleOptions

FILE_EXAMPLE = "stages: [{knowledge_masking: 500}, {knowledge_masking: 200, capitalization: 300}]"


@dataclass
class ScheduleFileOptions:
    """Schedule file: the stages of --schedule file"""

    schedule_file: str | None = option(None, f"YAML file of stages for --schedule file, e.g. {FILE_EXAMPLE}")

    def check_chosen(self) -> None:
        """Raise a UserError when ``--schedule file`` is chosen without a file."""
        if not self.schedule_file:
            raise UserError(f"--schedule file needs --schedule-file FILE, a YAML file of stages like {FILE_EXAMPLE}")


@register("file", summary="the stages and steps written in --schedule-file (every task's steps: no budget)",
          options_class=ScheduleFileOptions, uses_budget=False)
def from_file(tasks: list[str], budgets: dict[str, int], options: ScheduleOptions,
              settings: ScheduleFileOptions) -> list[Stage]:
    """The stages and steps written in ``--schedule-file``, a YAML mapping with one key, a list of
    stages, each mapping task names to steps, e.g. ``stages: [{knowledge_masking: 500},
    {knowledge_masking: 200, capitalization: 300}]``. The tasks are those of ``--tasks``: the file
    may name no other, and must give every one of them steps. ``budgets`` is not used: the file
    sets every step."""
    settings.check_chosen()
    path = str(settings.schedule_file)
    stages = [Stage(steps) for steps in _stages_of(_read_yaml(path), path, tasks)]
    missing = [task for task in tasks if not any(task in stage.steps for stage in stages)]
    if missing:
        raise UserError(f"task {missing[0]} of --tasks has no steps in schedule file {path}; "
                        f"give it steps in a stage or drop it from --tasks")
    return stages


def _read_yaml(path: str) -> Any:
    return read_yaml(path, "schedule file", "--schedule-file")[0]


def _stages_of(data: Any, path: str, tasks: list[str]) -> list[dict[str, int]]:
    """The ``stages`` list of a schedule file, checked: known tasks, positive whole steps."""
    if not isinstance(data, dict) or "stages" not in data:
        raise UserError(f"schedule file {path} must hold a 'stages' list, e.g. {FILE_EXAMPLE}")
    for key in data:
        if key != "stages":
            raise UserError(f"unknown key '{key}' in schedule file {path}; it holds only a 'stages' list, "
                            f"e.g. {FILE_EXAMPLE}")
    if not isinstance(data["stages"], list) or not data["stages"]:
        raise UserError(f"'stages' in schedule file {path} must be a non-empty list of stages, e.g. {FILE_EXAMPLE}")
    stages = []
    for number, stage in enumerate(data["stages"], start=1):
        where = f"stage {number} of schedule file {path}"
        if not isinstance(stage, dict) or not stage:
            raise UserError(f"{where} must map task names to steps, like {{knowledge_masking: 500}}; got {stage!r}")
        for task, steps in stage.items():
            if task not in tasks:
                close = difflib.get_close_matches(str(task), tasks, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise UserError(f"{where} names task '{task}', which is not in --tasks ({', '.join(tasks)}); "
                                f"{hint}add it to --tasks or remove it from the file")
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise UserError(f"{where} gives {task} {steps!r} steps; write a positive whole number of steps, "
                                f"or leave the task out of that stage")
        stages.append(dict(stage))
    return stages
