"""Every option of every command, given a value of the wrong type or one outside what it allows, is refused
the same way from Python (``PretrainConfig`` and the API's keyword arguments), a YAML file (``--config``,
``PretrainConfig.from_yaml``) and a flag: a ConfigError (a ValueError) in Python, exit 2 and one
``ernie-cpt: error:`` line on the command line, with the same message after the option's name, and
nothing read, trained or written."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
import yaml

import ernie_cpt
from ernie_cpt import ConfigError, PretrainConfig, UserError
from ernie_cpt.cli import main
from ernie_cpt.commands.options import (
    ExportOptions,
    InspectOptions,
    compare_option_classes,
    finetune_option_classes,
    pretrain_option_classes,
)
from ernie_cpt.config import GROUPS
from ernie_cpt.data.options import AnnotationOptions, CorpusOptions
from ernie_cpt.modeling.architectures import ARCHITECTURES
from ernie_cpt.options import Range, _base_type, option_fields
from ernie_cpt.weighting import WEIGHTINGS
from pretasks import TASKS
from schedules import CURRICULA

# each command's own option groups (compare and inspect-task read pretrain's groups too, walked there)
COMMANDS = {
    "pretrain": pretrain_option_classes(),
    "prepare": [CorpusOptions, AnnotationOptions],
    "inspect-task": [InspectOptions],
    "finetune": finetune_option_classes(),
    "compare": compare_option_classes()[:1],
    "export": [ExportOptions],
}
POSITIONAL = {"inspect-task": ["knowledge_masking"], "finetune": ["MODEL"], "export": ["RUN", "OUT"]}
# should a check be missing, these keep a command from getting far (no spaCy pipeline of that name)
SAFETY = {"spacy_model": "no_such_pipeline_xyz"}
SAFE_COMMANDS = {"pretrain", "prepare", "inspect-task", "compare"}
# string options whose allowed values are the names of a registry, not declared choices: "unknown loss
# weighting 'x'; did you mean 'y'? available: ..." names the option in words whatever the way it was given
REGISTRY_NAMES = {"architecture", "loss_weighting", "schedule", "stage_allocation", "task_sampling", "task_mixing"}
# a plugin's own option -> (the config's field of its kind, the first plugin that has it): set there from Python
PLUGIN_FIELDS: dict[str, tuple[str, str]] = {}
for _kind, _registry in (("task_options", TASKS), ("architecture_options", ARCHITECTURES),
                         ("weighting_options", WEIGHTINGS), ("schedule_options", CURRICULA)):
    for _name in _registry:
        if (_own := _registry.options_class(_name)) is not None:
            for _f in dataclasses.fields(_own):
                PLUGIN_FIELDS.setdefault(_f.name, (_kind, _name))


def wrong_type(annotation: typing.Any) -> typing.Any:
    """A value of the wrong type for a field: text for a number or a boolean, a list for a string, a mapping
    for a list of strings, text for a list of numbers."""
    kind, is_list = _base_type(annotation)
    if is_list:
        return {"a": 1} if kind is str else ["x"]
    return [1, 2] if kind is str else "maybe"


def not_allowed(field: dataclasses.Field, annotation: typing.Any) -> typing.Any:
    """A value of the right type that the field does not allow: just below its range (above it where it
    has no lower bound), or a name outside its choices; None where every value of its type is allowed."""
    kind, is_list = _base_type(annotation)
    valid, choices = field.metadata.get("valid"), field.metadata.get("choices")
    if isinstance(valid, Range):
        candidates = []
        if valid.low is not None:
            candidates.append(valid.low if valid.low_open else valid.low - 1 if kind is int
                              else math.nextafter(valid.low, -math.inf))
        if valid.high is not None:
            candidates.append(valid.high if valid.high_open else valid.high + 1 if kind is int
                              else math.nextafter(valid.high, math.inf))
        value = kind(next(v for v in candidates if v not in valid))
        return [value] if is_list else value
    if choices or field.name in REGISTRY_NAMES:
        return "no_such_choice"
    return None


CASES = []
for command, classes in COMMANDS.items():
    for name, (f, annotation) in option_fields(classes).items():
        CASES.append((command, name, "type", wrong_type(annotation)))
        if (value := not_allowed(f, annotation)) is not None:
            CASES.append((command, name, "value", value))


def test_the_walk_covers_every_field_of_every_group():
    walked = {name for _, name, _, _ in CASES}
    groups = {*GROUPS, *pretrain_option_classes(), *(c for cs in COMMANDS.values() for c in cs)}
    assert walked == {f.name for cls in groups for f in dataclasses.fields(cls)}
    ranged = {f.name for cls in groups for f in dataclasses.fields(cls)
              if f.metadata.get("valid") or f.metadata.get("choices") or f.name in REGISTRY_NAMES}
    assert {name for _, name, kind, _ in CASES if kind == "value"} == ranged
    assert len(ranged) > 80 and len(CASES) > 250


def test_an_option_name_means_one_thing_in_every_group_of_a_config():
    """PretrainConfig and its flat ``to_dict`` merge the groups' fields (every plugin's too): a name in two
    groups would be one option for two purposes."""
    names = [f.name for cls in pretrain_option_classes() for f in dataclasses.fields(cls)]
    assert len(names) == len(set(names))
    assert {kind for kind, _ in PLUGIN_FIELDS.values()} == {"task_options", "architecture_options",
                                                            "weighting_options", "schedule_options"}


def _safety(command: str, name: str) -> dict[str, str]:
    return {k: v for k, v in SAFETY.items() if k != name} if command in SAFE_COMMANDS else {}


def python_error(command: str, name: str, value: typing.Any) -> str:
    """The ConfigError of the option from Python: the config's constructor, or the command's API call."""
    kwargs = {name: value, **_safety(command, name)}
    calls = {
        "pretrain": lambda: PretrainConfig(**{PLUGIN_FIELDS[name][0]: {PLUGIN_FIELDS[name][1]: {name: value}}})
        if name in PLUGIN_FIELDS else PretrainConfig(**kwargs),
        "prepare": lambda: ernie_cpt.prepare(**kwargs),
        "inspect-task": lambda: ernie_cpt.inspect_task("knowledge_masking", **kwargs),
        "finetune": lambda: ernie_cpt.finetune("MODEL", **kwargs),
        "compare": lambda: ernie_cpt.compare(**kwargs),
        "export": lambda: ernie_cpt.export("RUN", "OUT", **kwargs),
    }
    with pytest.raises(ConfigError) as error:
        calls[command]()
    assert isinstance(error.value, ValueError) and isinstance(error.value, UserError)
    return str(error.value)


def cli_error(argv: list[str], capsys) -> tuple[int, str]:
    """The exit code and the stderr of the command line."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: a value given to a switch
        code = e.code
    return code, capsys.readouterr().err


def cli_value(value: typing.Any, is_list: bool) -> str | None:
    """The value as a flag's text; None where a flag cannot give it (a flag's text is never a mapping, and
    for a string option any text is a string)."""
    if isinstance(value, dict) or (isinstance(value, list) and not is_list):
        return None
    return ",".join(str(v) for v in value) if isinstance(value, list) else str(value)


def after_the_name(message: str) -> str:
    """What a message says about the value, without the name of the place it came from (the option's
    Python name, its flag, or its config key and line)."""
    return message[message.index(" must be "):] if " must be " in message else message


@pytest.mark.parametrize(("command", "name", "kind", "value"), CASES, ids=[f"{c}-{n}-{k}" for c, n, k, _ in CASES])
def test_python_yaml_and_the_command_line_refuse_it_alike(command, name, kind, value, tmp_path, capsys, monkeypatch):
    work, config = tmp_path / "work", tmp_path / "config.yaml"
    work.mkdir()
    monkeypatch.chdir(work)
    config.write_text(yaml.safe_dump({name: value}), encoding="utf-8")
    flag = "--" + name.replace("_", "-")
    registry = name in REGISTRY_NAMES and kind == "value"
    safety = [arg for key, text in _safety(command, name).items() for arg in ("--" + key.replace("_", "-"), text)]
    argv = [command, *POSITIONAL.get(command, [])]

    from_python = python_error(command, name, value)
    where = f"{PLUGIN_FIELDS[name][0]}['{PLUGIN_FIELDS[name][1]}'].{name}" \
        if command == "pretrain" and name in PLUGIN_FIELDS else name
    assert registry or from_python.startswith(f"{where} "), from_python
    shown = value[0] if isinstance(value, list) and len(value) == 1 else value  # a list's errors name the item
    assert repr(shown) in from_python or str(shown) in from_python, from_python
    messages = [from_python]

    code, err = cli_error([*argv, "--config", str(config), *safety], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("ernie-cpt: error: "), err
    from_yaml = lines[0].removeprefix("ernie-cpt: error: ")
    assert registry or from_yaml.startswith(f"config key '{name}' ("), from_yaml
    messages.append(from_yaml)
    if command == "pretrain":
        with pytest.raises(ConfigError) as error:
            PretrainConfig.from_yaml(config)
        assert str(error.value) == from_yaml
    field_type = _base_type(option_fields(COMMANDS[command])[name][1])
    if (text := cli_value(value, field_type[1])) is not None:
        code, err = cli_error([*argv, f"{flag}={text}", *safety], capsys)
        assert code == 2 and (registry or flag in err), err
        if not (kind == "type" and field_type == (bool, False)):
            lines = err.strip().splitlines()  # (a switch takes no value: argparse refuses one, naming it)
            assert len(lines) == 1 and lines[0].startswith(f"ernie-cpt: error: {'' if registry else flag}"), err
            messages.append(lines[0].removeprefix("ernie-cpt: error: "))

    assert len({after_the_name(message) for message in messages}) == 1, messages
    if registry:  # the registry names the option in words, the same every way, with the names it knows
        assert from_python.startswith(f"unknown {name.replace('_', ' ')} 'no_such_choice'; available: "), from_python
    assert list(work.iterdir()) == []


@pytest.mark.parametrize(("options", "expected"), [
    ({"lr_schedule": "wholee"}, "lr_schedule must be one of whole, per-stage, got a string ('wholee')"),
    ({"report_to": "tensorbaord"}, "report_to must be one of tensorboard, none, got a string ('tensorbaord')"),
    ({"model_size": "huge"}, "model_size must be one of tiny, mini, small, medium, base, got a string ('huge')"),
    ({"tasks": ["knowlege_masking"]}, "unknown task 'knowlege_masking'; did you mean 'knowledge_masking'?"),
    ({"architecture": "mmo"}, "unknown architecture 'mmo'; did you mean 'mmoe'?"),
    ({"tasks": []}, "tasks is empty"),
    ({"tasks": ["capitalization", "capitalization"]}, "tasks lists capitalization twice"),
    ({"tasks": ["capitalization", "knowledge_masking"], "schedule": "continual", "max_steps": 1},
     "--max-steps 1 leaves stage 2 without a step"),
    ({"model_size": "tiny", "architecture": "mmoe", "expert_layers": 3}, "--expert-layers 3 is outside 1..2"),
    ({"tasks": ["sentence_distance"], "task_options": {"sentence_distance": {"distance_segment_tokens": 64}}},
     "--max-seq-length 128 is too short for sentence_distance"),
    ({"task_options": {"knowledge_masking": {"mask_rato": 0.2}}}, "did you mean 'mask_ratio'?"),
    ({"task_options": {"knowledge_masking": 0.2}}, "task_options['knowledge_masking'] must be a "
                                                   "KnowledgeMaskingOptions or a dict of its fields, got float"),
    ({"architecture": "mmoe", "architecture_options": {"mmoe": {"num_experts": 0}}},
     "architecture_options['mmoe'].num_experts must be between 1 and 64, got 0"),
    ({"architecture_options": {"cgc": {"shared_experts": 0, "task_experts": 0}}}, "a gate needs at least one expert"),
    ({"architecture_options": {"hard": {}}}, "architecture_options['hard']: architecture hard has no options of its "
                                             "own; remove the entry"),
    ({"schedule": "file"}, "--schedule file needs --schedule-file FILE"),
    ({"schedule_options": {"file": {"schedule_file": "s.yaml"}}}, "--schedule-file is read only by --schedule file"),
])
def test_the_issue_examples_and_the_checks_across_options(options, expected):
    with pytest.raises(ValueError) as error:
        PretrainConfig(**options)
    assert expected in str(error.value)


def test_the_api_refuses_a_wrong_option_before_anything_is_read_or_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"task_options\['knowledge_masking'\].mask_ratio must be above 0"):
        ernie_cpt.pretrain(output_dir="run", mask_ratio=2)  # a task's option by its flat name, as a flag
    with pytest.raises(ConfigError, match="unknown option 'learning_rat'; did you mean 'learning_rate'"):
        ernie_cpt.pretrain(output_dir="run", learning_rat=1e-3)
    with pytest.raises(ConfigError, match="not both"):
        ernie_cpt.pretrain(PretrainConfig(), output_dir="run")
    with pytest.raises(ConfigError, match="unknown option 'epoch'; did you mean 'epochs'"):
        ernie_cpt.finetune("MODEL", epoch=3)
    assert list(tmp_path.iterdir()) == []


def test_values_are_converted_as_flags_are_and_round_trip_through_a_flat_dict(tmp_path):
    config = PretrainConfig(corpus=[tmp_path], learning_rate=1, max_steps=50.0,
                            tasks="knowledge_masking,capitalization",
                            task_options={"knowledge_masking": {"mask_ratio": "0.2"}}, architecture="ple",
                            architecture_options={"ple": {"shared_experts": 3}}, loss_weighting="dwa",
                            weighting_options={"dwa": {"dwa_window": "5"}})
    assert config.corpus == [str(tmp_path)] and config.learning_rate == 1.0 and isinstance(config.max_steps, int)
    assert config.tasks == ["knowledge_masking", "capitalization"]
    assert config.task_options["knowledge_masking"].mask_ratio == 0.2
    assert config.task_options["capitalization"] == TASKS.get("capitalization").options_class()

    assert config.architecture_options["ple"].shared_experts == 3 and config.weighting_options["dwa"].dwa_window == 5

    flat = config.to_dict()
    assert flat["mask_ratio"] == 0.2 and "task_options" not in flat  # run_config.json's flat format
    assert flat["shared_experts"] == 3 and flat["dwa_window"] == 5 and flat["num_experts"] == 4
    assert set(flat) == set(option_fields(pretrain_option_classes()))
    assert PretrainConfig.from_dict(flat) == config
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(flat), encoding="utf-8")
    assert PretrainConfig.from_yaml(path) == config


def test_a_yaml_file_gets_the_config_file_checks(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("max_steps: 10\nlearning_rat: 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key 'learning_rat' in config file .*did you mean 'learning_rate'"):
        PretrainConfig.from_yaml(path)
    path.write_text("max_steps: 10\nmax_steps: 20\n", encoding="utf-8")
    with pytest.raises(UserError, match="max_steps"):
        PretrainConfig.from_yaml(path)


def test_the_command_line_builds_the_same_config():
    """``pretrain`` flags give the PretrainConfig that the same options give in Python."""
    from ernie_cpt.cli import build_parser
    from ernie_cpt.options import resolve_options

    args = build_parser().parse_args(["pretrain", "--output-dir", "run", "--tasks", "knowledge_masking",
                                      "capitalization", "--model-size", "tiny", "--max-steps", "50",
                                      "--mask-ratio", "0.2"])
    from_flags = PretrainConfig.from_groups(resolve_options(args, pretrain_option_classes()))
    assert from_flags == PretrainConfig(output_dir="run", tasks=["knowledge_masking", "capitalization"],
                                        model_size="tiny", max_steps=50,
                                        task_options={"knowledge_masking": {"mask_ratio": 0.2}})
    assert from_flags.to_dict() == PretrainConfig.from_dict(from_flags.to_dict()).to_dict()


def test_a_recorded_run_config_reads_back_as_its_config(tmp_path):
    """``run_config.json`` keeps its flat format, so a config is rebuilt from a recorded run's options."""
    config = PretrainConfig(output_dir=str(tmp_path / "run"), tasks=["capitalization"], seed=7)
    recorded = {**config.to_dict(), "stages": [{"capitalization": 1000}], "requested_max_steps": 1000}
    options = {key: value for key, value in recorded.items() if key in option_fields(pretrain_option_classes())}
    assert PretrainConfig.from_dict(options) == config
    assert Path(PretrainConfig.from_dict(options).output_dir) == tmp_path / "run"
