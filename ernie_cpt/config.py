"""``PretrainConfig``: every option of a pre-training run in one flat dataclass.

It is made of the option groups the ``pretrain`` command reads (run, corpus, annotation, tokenizer,
model, architecture, training, schedule, loss weighting, evaluation), so its keyword arguments are
the command's flags with underscores, as ``transformers.TrainingArguments`` mirrors ``Trainer``'s
flags. Each pre-task's own options sit under ``task_options`` (task name -> its options dataclass,
or a plain dict of its fields). Every check the command line runs that needs no data runs in
``__post_init__``: type, choice, range, registry name (with the closest known name suggested) and
the checks across options; a wrong value raises :class:`~ernie_cpt.errors.ConfigError` (a
``ValueError``) naming the option, the value and what is allowed::

    >>> PretrainConfig(lr_schedule="wholee")
    Traceback (most recent call last):
    ernie_cpt.errors.ConfigError: lr_schedule must be one of whole, per-stage, got a string ('wholee')

:meth:`PretrainConfig.to_dict` is flat (a task's fields too), as ``run_config.json`` records a run
and as ``--config`` files and :meth:`PretrainConfig.from_yaml` read one.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie_cpt.commands.options import RunOptions, pretrain_option_classes, task_option_classes
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions, TokenizerOptions
from ernie_cpt.errors import ConfigError, UserError
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.options import check_type, check_value, config_values, option_fields, to_dict
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.weighting.options import WeightingOptions
from pretasks import TASKS, get_task
from schedules import ScheduleOptions, build_schedule

# The groups, last first: a dataclass orders inherited fields from the last base to the first.
GROUPS = (RunOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, ModelOptions, ArchitectureOptions,
          TrainingOptions, ScheduleOptions, WeightingOptions, EvaluationOptions)


@dataclass
class PretrainConfig(EvaluationOptions, WeightingOptions, ScheduleOptions, TrainingOptions, ArchitectureOptions,
                     ModelOptions, TokenizerOptions, AnnotationOptions, CorpusOptions, RunOptions):
    """The options of one pre-training run (``ernie-cpt pretrain``; ERNIE 2.0's continual multi-task
    pre-training, Sun et al. 2020), flat, as ``transformers.TrainingArguments`` is::

        PretrainConfig(corpus=["texts/"], output_dir="runs/x", tasks=["knowledge_masking", "capitalization"],
                       model_size="tiny", max_steps=50, task_options={"knowledge_masking": {"mask_ratio": 0.2}})

    Every keyword is a ``pretrain`` flag with underscores, with its default, unit and range as
    ``ernie-cpt pretrain --help`` shows them (``max_steps``: optimizer steps over all stages;
    ``batch_size``: examples per step over all processes; ``learning_rate``: AdamW's peak). ``tasks`` are
    pre-task names in curriculum order; ``task_options`` maps a task's name to its options dataclass or a
    dict of its fields (a task not listed gets its defaults). A list option also takes a comma-separated
    string, a number option the text of a number, a path option a ``Path``; values are converted as flags
    are. :meth:`from_yaml` reads a ``--config`` file, :meth:`to_dict` gives the flat ``run_config.json`` form.

    Raises:
        ConfigError: (a ``ValueError``) for a value of the wrong type, outside its choices or range, a name no
            registry knows (task, architecture, curriculum, loss weighting, ...; the closest one suggested) or
            options that cannot work together (a task longer than ``max_seq_length``, a ``max_steps`` that leaves
            a stage of the curriculum without a step, ``expert_layers`` beyond the encoder's layers), naming
            the option, the value and what is allowed.
    """

    task_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Each pre-task's options: task name -> its options dataclass or a dict of its fields"})

    def __post_init__(self) -> None:
        for name, (f, annotation) in option_fields(list(GROUPS)).items():
            value = check_type(getattr(self, name), annotation, f.metadata.get("choices"), name)
            check_value(f, value, name)
            setattr(self, name, value)
        if not self.tasks:
            raise ConfigError("tasks is empty; name at least one pre-training task: " + ", ".join(sorted(TASKS)))
        for name in self.tasks:
            get_task(name)
        given = {name: _task_options(name, value) for name, value in self.task_options.items()}
        self.task_options = {**{name: get_task(name).options_class() for name in self.tasks}, **given}
        groups = self.option_groups()  # each group's own checks (registry names, options across fields)
        _cross_checks(groups)

    def option_groups(self) -> dict[type, Any]:
        """The option groups the ``pretrain`` command reads, keyed by class: the framework's, then every
        registered task's (its ``task_options`` entry, else its defaults)."""
        try:
            groups: dict[type, Any] = {cls: cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)})
                                       for cls in GROUPS}
            given = {get_task(name).options_class: value for name, value in self.task_options.items()}
            groups.update({cls: given.get(cls) or cls() for cls in task_option_classes()})
        except ConfigError:
            raise
        except UserError as e:
            raise ConfigError(str(e)) from e
        return groups

    def to_dict(self) -> dict[str, Any]:
        """Every option as one flat, JSON-friendly dict (a task's fields too), as ``run_config.json`` holds them
        and :meth:`from_dict` reads them back."""
        return to_dict(*self.option_groups().values())

    @classmethod
    def from_groups(cls, groups: Mapping[type, Any]) -> PretrainConfig:
        """The config of option-group instances keyed by class (as ``resolve_options`` gives them for the
        command line): the same as :meth:`from_dict` of their fields, so flags and Python give equal configs."""
        return cls.from_dict(to_dict(*groups.values()))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PretrainConfig:
        """The config of flat option names (a task's fields by their own names, as in a ``--config`` file or
        ``run_config.json``), or a nested ``task_options``. Raises ConfigError for an unknown name."""
        own, task_fields = _own_fields(), _task_fields()
        kwargs: dict[str, Any] = {}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            if key in own:
                kwargs[key] = value
            elif key in task_fields:
                nested.setdefault(task_fields[key], {})[key] = value
            elif key == "task_options":
                for task, options in dict(value).items():
                    given = dict(options) if isinstance(options, Mapping) else dataclasses.asdict(options)
                    nested.setdefault(task, {}).update(given)
            else:
                close = difflib.get_close_matches(key, [*own, *task_fields], n=1)
                raise ConfigError(f"unknown option '{key}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        defaults = {name: dataclasses.asdict(TASKS.get(name).options_class()) for name in nested if name in TASKS}
        nested = {name: options for name, options in nested.items()  # a task not run, at its defaults: left out
                  if name in kwargs.get("tasks", RunOptions().tasks) or options != defaults.get(name, options)}
        return cls(**kwargs, task_options=nested)

    @classmethod
    def from_yaml(cls, path: str | Path) -> PretrainConfig:
        """The config of a YAML file of flat option names, as ``ernie-cpt pretrain --config`` reads it: the same
        checks (duplicate keys, type hints, unknown keys with the closest name suggested), each error naming
        the line. Raises ConfigError, or UserError for a file that cannot be read or is not YAML."""
        return cls.from_dict(config_values(str(path), option_fields(pretrain_option_classes())))


def _own_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(PretrainConfig)} - {"task_options"}


def _task_fields() -> dict[str, str]:
    """Every registered task's option names -> the task's name."""
    return {f.name: name for name, task in TASKS.items() for f in dataclasses.fields(task.options_class)}


def _task_options(task: str, value: Any) -> Any:
    """``task``'s options dataclass from ``value`` (one already, or a dict of its fields), every field checked."""
    options_class = get_task(task).options_class
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # the options dataclass (or another's)
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"task_options['{task}'] must be a {options_class.__name__} or a dict of its fields, "
                          f"got {type(value).__name__}")
    hints = typing.get_type_hints(options_class)
    fields = {f.name: f for f in dataclasses.fields(options_class)}
    checked = {}
    for key, item in value.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"task_options['{task}'] has no option '{key}'; {hint}{task}'s options: "
                              f"{', '.join(fields)}")
        where = f"task_options['{task}'].{key}"
        checked[key] = check_type(item, hints[key], fields[key].metadata.get("choices"), where)
        check_value(fields[key], checked[key], where)
    try:
        return options_class(**checked)
    except ConfigError:
        raise
    except UserError as e:
        raise ConfigError(str(e)) from e


def _cross_checks(groups: dict[type, Any]) -> None:
    """The checks across option groups that need no data: every task listed once and fitting
    --max-seq-length, a curriculum whose budget gives every stage a step (a ``file`` curriculum's stages
    are read when the run starts), and the architecture's --expert-layers within the encoder's layers
    (when the preset or --num-layers gives them)."""
    from ernie_cpt.modeling.architectures.base import check_expert_layers
    from ernie_cpt.modeling.encoder import preset_layers

    run, schedule = groups[RunOptions], groups[ScheduleOptions]
    if repeated := [task for i, task in enumerate(run.tasks) if task in run.tasks[:i]]:
        raise ConfigError(f"tasks lists {repeated[0]} twice ({', '.join(run.tasks)}); list every task once")
    try:
        for name in run.tasks:
            task = get_task(name)
            task.check_seq_length(groups[task.options_class], run.max_seq_length)
        if schedule.schedule != "file":
            build_schedule(schedule, run.tasks, groups[TrainingOptions].max_steps, warn=False)
        if (layers := preset_layers(groups[ModelOptions])) is not None:
            check_expert_layers(groups[ArchitectureOptions], layers)
    except ConfigError:
        raise
    except UserError as e:
        raise ConfigError(str(e)) from e
