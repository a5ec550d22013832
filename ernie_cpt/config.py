"""``PretrainConfig``: every option of a pre-training run in one flat dataclass.

It is made of the option groups the ``pretrain`` command reads (run, corpus, annotation, tokenizer,
model, architecture, training, schedule, loss weighting, evaluation), so its keyword arguments are
the command's flags with underscores, as ``transformers.TrainingArguments`` mirrors ``Trainer``'s
flags. Each plugin's own options sit under its kind's field, keyed by its name: ``task_options``
(a pre-task's), ``architecture_options`` (``{"mmoe": {"num_experts": 8}}``), ``weighting_options``
(``{"dwa": {"dwa_window": 10}}``) and ``schedule_options`` (``{"file": {"schedule_file": "s.yaml"}}``),
each value the plugin's options dataclass or a plain dict of its fields. Every check the command line
runs that needs no data runs in ``__post_init__``: type, choice, range, registry name (with the closest
known name suggested) and the checks across options; a wrong value raises :class:`~ernie_cpt.errors.ConfigError` (a
``ValueError``) naming the option, the value and what is allowed::

    >>> PretrainConfig(lr_schedule="wholee")
    Traceback (most recent call last):
    ernie_cpt.errors.ConfigError: lr_schedule must be one of whole, per-stage, got a string ('wholee')

:meth:`PretrainConfig.to_dict` is flat (a plugin's fields too), as ``run_config.json`` records a run
and as ``--config`` files and :meth:`PretrainConfig.from_yaml` read one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ernie_cpt.commands.options import RunOptions, pretrain_option_classes
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions, TokenizerOptions
from ernie_cpt.errors import ConfigError, UserError
from ernie_cpt.modeling.options import ArchitectureOptions, ModelOptions
from ernie_cpt.options import check_type, check_value, config_values, option_fields, to_dict
from ernie_cpt.registry import Registry
from ernie_cpt.training.options import EvaluationOptions, TrainingOptions
from ernie_cpt.weighting.options import WeightingOptions
from pretasks import TASKS, get_task
from schedules import CURRICULA, ScheduleOptions, build_schedule, check_schedule, uses_budget

# The groups, last first: a dataclass orders inherited fields from the last base to the first.
GROUPS = (RunOptions, CorpusOptions, AnnotationOptions, TokenizerOptions, ModelOptions, ArchitectureOptions,
          TrainingOptions, ScheduleOptions, WeightingOptions, EvaluationOptions)
# Each plugin kind's own options: the config's field -> the option that chooses the kind's plugins in a run.
PLUGIN_OPTIONS = {"task_options": "tasks", "architecture_options": "architecture",
                  "weighting_options": "loss_weighting", "schedule_options": "schedule"}


def _registry(kind: str) -> Registry[Any]:
    """The registry of the plugins whose options ``kind`` (a key of PLUGIN_OPTIONS) holds; the architectures and
    weightings are imported here (torch), not when this module is."""
    if kind == "architecture_options":
        from ernie_cpt.modeling.architectures import ARCHITECTURES

        return ARCHITECTURES
    if kind == "weighting_options":
        from ernie_cpt.weighting import WEIGHTINGS

        return WEIGHTINGS
    return TASKS if kind == "task_options" else CURRICULA


@contextlib.contextmanager
def _config_errors() -> Iterator[None]:
    """A UserError raised inside (a group's own check) comes out as the ConfigError it is to Python."""
    try:
        yield
    except ConfigError:
        raise
    except UserError as e:
        raise ConfigError(str(e)) from e


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
    architecture_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Each architecture's own options: its name -> its options dataclass or a dict of its fields"})
    weighting_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Each loss weighting's own options: its name -> its options dataclass or a dict of its fields"})
    schedule_options: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Each curriculum's own options: its name -> its options dataclass or a dict of its fields"})

    def __post_init__(self) -> None:
        for name, (f, annotation) in option_fields(list(GROUPS)).items():
            value = check_type(getattr(self, name), annotation, f.metadata.get("choices"), name)
            check_value(f, value, name)
            setattr(self, name, value)
        if not self.tasks:
            raise ConfigError("tasks is empty; name at least one pre-training task: " + ", ".join(sorted(TASKS)))
        with _config_errors():
            self._groups()  # the registry names checked before a plugin's options are looked up
            for kind in PLUGIN_OPTIONS:
                registry, chosen = _registry(kind), self._chosen(kind)
                given = {name: _plugin_options(kind, registry, name, value)
                         for name, value in getattr(self, kind).items()}
                defaults = {name: cls() for name in chosen if (cls := registry.options_class(name)) is not None}
                setattr(self, kind, {**defaults, **given})
        _cross_checks(self.option_groups())

    def _chosen(self, kind: str) -> list[str]:
        """The plugins of ``kind`` this run uses: its tasks, or the one architecture, weighting or curriculum."""
        chosen = getattr(self, PLUGIN_OPTIONS[kind])
        return list(chosen) if isinstance(chosen, list) else [chosen]

    def _groups(self) -> dict[type, Any]:
        """The framework's option groups of this config, each with its own checks run."""
        return {cls: cls(**{f.name: getattr(self, f.name) for f in dataclasses.fields(cls)}) for cls in GROUPS}

    def option_groups(self) -> dict[type, Any]:
        """The option groups the ``pretrain`` command reads, keyed by class: the framework's, then every
        registered plugin's own (the entry of a plugin this run uses, else any entry given, else its defaults)."""
        given: dict[type, Any] = {}
        for kind in PLUGIN_OPTIONS:
            chosen = set(self._chosen(kind))
            for _, value in sorted(getattr(self, kind).items(), key=lambda item: item[0] in chosen):  # chosen last
                given[type(value)] = value
        with _config_errors():
            groups = self._groups()
            return {cls: groups[cls] if cls in groups else given.get(cls) or cls() for cls in pretrain_option_classes()}

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
        """The config of flat option names (a plugin's fields by their own names, as in a ``--config`` file or
        ``run_config.json``; a field several plugins share goes to each), or nested ``task_options``,
        ``architecture_options``, ``weighting_options``, ``schedule_options``. Raises ConfigError for an
        unknown name."""
        own, plugin_fields = _own_fields(), _plugin_fields()
        kwargs: dict[str, Any] = {}
        nested: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in PLUGIN_OPTIONS}
        for key, value in values.items():
            if key in own:
                kwargs[key] = value
            elif key in plugin_fields:
                for kind, name in plugin_fields[key]:
                    nested[kind].setdefault(name, {})[key] = value
            elif key in PLUGIN_OPTIONS:
                for name, options in dict(value).items():
                    given = dict(options) if isinstance(options, Mapping) else dataclasses.asdict(options)
                    nested[key].setdefault(name, {}).update(given)
            else:
                close = difflib.get_close_matches(key, [*own, *plugin_fields], n=1)
                raise ConfigError(f"unknown option '{key}'" + (f"; did you mean '{close[0]}'?" if close else ""))
        for kind, chooser in PLUGIN_OPTIONS.items():  # what the run's plugins read, and other plugins' changes
            registry, chosen = _registry(kind), kwargs.get(chooser, _default(chooser))
            chosen = chosen if isinstance(chosen, list) else [chosen]
            read = {registry.options_class(name) for name in chosen if name in registry}
            nested[kind] = {name: options for name, options in nested[kind].items() if name in chosen or (
                options != _defaults(registry, name, options) and registry.options_class(name) not in read)}
        return cls(**kwargs, task_options=nested["task_options"], architecture_options=nested["architecture_options"],
                   weighting_options=nested["weighting_options"], schedule_options=nested["schedule_options"])

    @classmethod
    def from_yaml(cls, path: str | Path) -> PretrainConfig:
        """The config of a YAML file of flat option names, as ``ernie-cpt pretrain --config`` reads it: the same
        checks (duplicate keys, type hints, unknown keys with the closest name suggested), each error naming
        the line. Raises ConfigError, or UserError for a file that cannot be read or is not YAML."""
        return cls.from_dict(config_values(str(path), option_fields(pretrain_option_classes())))


def _own_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(PretrainConfig)} - set(PLUGIN_OPTIONS)


def _default(name: str) -> Any:
    """The default of the option ``name``."""
    f = next(f for f in dataclasses.fields(PretrainConfig) if f.name == name)
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _plugin_fields() -> dict[str, list[tuple[str, str]]]:
    """Every registered plugin's option names -> (the config's field of its kind, the plugin's name) of each
    plugin that has it (PLE and CGC share theirs)."""
    found: dict[str, list[tuple[str, str]]] = {}
    for kind in PLUGIN_OPTIONS:
        registry = _registry(kind)
        for name in registry.names():
            if (options_class := registry.options_class(name)) is not None:
                for f in dataclasses.fields(options_class):
                    found.setdefault(f.name, []).append((kind, name))
    return found


def _defaults(registry: Registry[Any], name: str, given: dict[str, Any]) -> dict[str, Any]:
    """The defaults of plugin ``name``'s options (``given`` itself when it is no plugin of ``registry``: an
    unknown name is reported by the config)."""
    options_class = registry.options_class(name) if name in registry else None
    return dataclasses.asdict(options_class()) if options_class is not None else given


def _plugin_options(kind: str, registry: Registry[Any], name: str, value: Any) -> Any:
    """Plugin ``name``'s options dataclass from ``value`` (one already, or a dict of its fields), every field
    checked; ``kind`` is the config's field that holds it (``task_options``...)."""
    options_class = registry.options_class(name)
    if options_class is None:
        raise ConfigError(f"{kind}['{name}']: {registry.kind} {name} has no options of its own; remove the entry")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):  # the options dataclass (or another's)
        value = dataclasses.asdict(value)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{kind}['{name}'] must be a {options_class.__name__} or a dict of its fields, "
                          f"got {type(value).__name__}")
    hints = typing.get_type_hints(options_class)
    fields = {f.name: f for f in dataclasses.fields(options_class)}
    checked = {}
    for key, item in value.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(f"{kind}['{name}'] has no option '{key}'; {hint}{name}'s options: "
                              f"{', '.join(fields)}")
        where = f"{kind}['{name}'].{key}"
        checked[key] = check_type(item, hints[key], fields[key].metadata.get("choices"), where)
        check_value(fields[key], checked[key], where)
    with _config_errors():
        return options_class(**checked)


def _cross_checks(groups: dict[type, Any]) -> None:
    """The checks across option groups that need no data: every task listed once and fitting
    --max-seq-length, the curriculum's own options given for it only, a curriculum whose budget gives every
    stage a step (one that sets its own steps, as ``file``, is read when the run starts), and the
    architecture's --expert-layers within the encoder's layers (when the preset or --num-layers gives them)."""
    from ernie_cpt.modeling.architectures.base import check_expert_layers
    from ernie_cpt.modeling.encoder import preset_layers

    run, schedule = groups[RunOptions], groups[ScheduleOptions]
    if repeated := [task for i, task in enumerate(run.tasks) if task in run.tasks[:i]]:
        raise ConfigError(f"tasks lists {repeated[0]} twice ({', '.join(run.tasks)}); list every task once")
    with _config_errors():
        for name in run.tasks:
            get_task(name).check_seq_length(TASKS.options_for(name, groups), run.max_seq_length)
        check_schedule(groups)
        if uses_budget(schedule.schedule):  # else the curriculum's own file, read when the run starts
            build_schedule(schedule, run.tasks, groups[TrainingOptions].max_steps, warn=False,
                           settings=CURRICULA.options_for(schedule.schedule, groups))
        if (layers := preset_layers(groups[ModelOptions])) is not None:
            check_expert_layers(groups[ArchitectureOptions], layers)
