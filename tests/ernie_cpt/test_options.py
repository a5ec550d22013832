"""Options: field defaults < YAML config file < command-line flags, with one-line errors for bad configs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ernie_cpt.commands.pretrain import RunOptions
from ernie_cpt.data.corpus import CorpusOptions
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.encoder import ModelOptions
from ernie_cpt.options import add_options, check_type, resolve_options
from ernie_cpt.training.trainer import TrainingOptions
from schedules import ScheduleOptions

OPTION_CLASSES = [RunOptions, TrainingOptions, CorpusOptions, ModelOptions, ScheduleOptions]


def resolve(tmp_path, argv=(), config: str | None = None) -> dict[type, object]:
    """Parse ``argv`` (plus ``--config`` holding ``config`` when given) the way the CLI does."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_options(parser, OPTION_CLASSES)
    argv = list(argv)
    if config is not None:
        path = tmp_path / "config.yaml"
        path.write_text(config, encoding="utf-8")
        argv += ["--config", str(path)]
    return resolve_options(parser.parse_args(argv), OPTION_CLASSES)


def test_defaults_without_config_or_flags(tmp_path):
    options = resolve(tmp_path)

    assert options[TrainingOptions] == TrainingOptions()
    assert options[RunOptions] == RunOptions()
    assert options[TrainingOptions].max_steps == 1000
    assert options[RunOptions].tasks == ["knowledge_masking"]
    assert options[CorpusOptions].corpus == []


def test_config_sets_values_and_leaves_the_rest_at_their_defaults(tmp_path):
    options = resolve(tmp_path, config="""
max_steps: 50
learning_rate: 1e-3    # YAML reads this as a string; it must still become a float
amp: false
output_dir: runs/persuasion
tasks: [knowledge_masking]
model_size: tiny
""")

    training = options[TrainingOptions]
    assert training.max_steps == 50
    assert training.learning_rate == pytest.approx(0.001)
    assert isinstance(training.learning_rate, float)
    assert training.amp is False
    assert training.batch_size == 32  # default
    assert options[RunOptions].output_dir == "runs/persuasion"
    assert options[ModelOptions].model_size == "tiny"


def test_flags_override_the_config(tmp_path):
    config = "max_steps: 50\nbatch_size: 8\namp: true\ntasks: knowledge_masking\nschedule: sequential\n"

    options = resolve(tmp_path, ["--max-steps", "7", "--no-amp", "--tasks", "a", "b"], config=config)

    training = options[TrainingOptions]
    assert training.max_steps == 7  # flag beats config
    assert training.amp is False  # --no-amp beats amp: true
    assert training.batch_size == 8  # config, no flag
    assert training.learning_rate == pytest.approx(5e-4)  # neither: default
    assert options[RunOptions].tasks == ["a", "b"]
    assert options[ScheduleOptions].schedule == "sequential"


def test_hyphenated_keys_in_the_config_work_like_flags(tmp_path):
    options = resolve(tmp_path, config="max-steps: 12\noutput-dir: run\n")

    assert options[TrainingOptions].max_steps == 12
    assert options[RunOptions].output_dir == "run"


@pytest.mark.parametrize(("value", "expected"), [
    ("a.txt,b.jsonl", ["a.txt", "b.jsonl"]),
    ("a.txt, b.jsonl", ["a.txt", "b.jsonl"]),
    ("notes.txt", ["notes.txt"]),
    ("[a.txt, b.jsonl]", ["a.txt", "b.jsonl"]),
])
def test_list_options_accept_comma_strings_and_yaml_lists(tmp_path, value, expected):
    options = resolve(tmp_path, config=f"corpus: {value}\n")

    assert options[CorpusOptions].corpus == expected


def test_empty_config_means_defaults(tmp_path):
    assert resolve(tmp_path, config="# nothing set yet\n")[TrainingOptions] == TrainingOptions()


def test_null_is_accepted_for_options_that_may_be_unset(tmp_path):
    options = resolve(tmp_path, config="init_from: null\nnum_layers:\n")

    assert options[ModelOptions].init_from is None
    assert options[ModelOptions].num_layers is None


def test_unknown_key_names_the_key_and_the_closest_option(tmp_path):
    with pytest.raises(UserError) as error:
        resolve(tmp_path, config="max_steps: 10\nlearning_rat: 0.001\n")

    message = str(error.value)
    assert "unknown key 'learning_rat'" in message
    assert "did you mean 'learning_rate'?" in message
    assert "config.yaml" in message


def test_unknown_key_without_a_close_option_points_to_help(tmp_path):
    with pytest.raises(UserError, match=r"unknown key 'zzzzzz'.*--help"):
        resolve(tmp_path, config="zzzzzz: 1\n")


def test_invalid_yaml_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"is not valid YAML.*fix the syntax") as error:
        resolve(tmp_path, config="max_steps: [10\nbatch_size: 4\n")
    assert "\n" not in str(error.value)


def test_config_that_is_not_a_mapping_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="must be a mapping of option names to values, not list"):
        resolve(tmp_path, config="- max_steps: 10\n- batch_size: 4\n")


def test_missing_config_file_is_a_user_error(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_options(parser, OPTION_CLASSES)
    missing = tmp_path / "nowhere.yaml"

    with pytest.raises(UserError, match=r"cannot read config file .*nowhere\.yaml.*--config"):
        resolve_options(parser.parse_args(["--config", str(missing)]), OPTION_CLASSES)


@pytest.mark.parametrize(("config", "expected"), [
    ('max_steps: "many"\n', "must be a whole number (int), got a string ('many')"),
    ("learning_rate: fast\n", "must be a number (float), got a string ('fast')"),
    ("amp: maybe\n", "must be true or false (bool), got a string ('maybe')"),
    ("amp: 1\n", "must be true or false (bool), got a number (1)"),
    ("max_steps: 2.5\n", "must be a whole number (int), got a number (2.5)"),
    ("max_steps: true\n", "must be a whole number (int), got a boolean (true)"),
    ("max_steps: [2]\n", "must be a whole number (int), got a list holding a number ([2]); give one value, not a list"),
    ("model_size: gigantic\n", "must be one of tiny, mini"),
    ("tasks: {knowledge_masking: 1}\n", "must be a list of strings (str), got an object (dict)"),
    ("max_steps:\n", "has no value"),  # an empty value is not a number of steps
    ("corpus: null\n", "has no value"),
    # the examples of issue 23: no option is ever set with str() of a list, a dict or a boolean
    ("output_dir: [runs/x]\n", "must be a string (str), got a list of strings (['runs/x']); give one value, not a "
                               "list"),
    ("output_dir: {name: x}\n", "must be a string (str), got an object (dict) ({'name': 'x'}); give one value"),
    ("output_dir: off\n", "must be a string (str), got a boolean (false); YAML reads an unquoted yes, no, on, off, "
                          "true or false as a boolean: quote it, e.g. 'no'"),
    ("output_dir: 007\n", "must be a string (str), got a number (7); YAML reads an unquoted number as a number"),
])
def test_wrong_type_values_name_the_key_its_line_the_type_given_and_the_type_expected(tmp_path, config, expected):
    with pytest.raises(UserError) as error:
        resolve(tmp_path, config=config)

    key = config.split(":")[0]
    assert str(error.value).startswith(f"config key '{key}' (line 1 of {tmp_path / 'config.yaml'}) ")
    assert expected in str(error.value)


def test_a_yaml_boolean_in_a_list_of_strings_names_the_item_and_the_quote(tmp_path):
    with pytest.raises(UserError) as error:
        resolve(tmp_path, config="max_steps: 10\ntasks: [knowledge_masking, no]\n")

    assert str(error.value) == (f"config key 'tasks' (line 2 of {tmp_path / 'config.yaml'}) item 2 must be a string "
                                f"(str), got a boolean (false); YAML reads an unquoted yes, no, on, off, true or false "
                                f"as a boolean: quote it, e.g. 'no'")
    quoted = resolve(tmp_path, config="tasks: [knowledge_masking, 'no']\n")
    assert quoted[RunOptions].tasks == ["knowledge_masking", "no"]


@pytest.mark.parametrize(("config", "lines"), [
    ("max_steps: 2\nbatch_size: 4\nmax_steps: 30\n", "lines 1 and 3"),
    ("max-steps: 2\nmax_steps: 30\n", "lines 1 and 2"),  # one option, spelled two ways
])
def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path, config, lines):
    with pytest.raises(UserError) as error:
        resolve(tmp_path, config=config)

    assert str(error.value) == (f"config file {tmp_path / 'config.yaml'} gives the key 'max_steps' twice, on {lines} "
                                f"(YAML would keep the last without a word); keep one")


def test_values_that_stand_for_a_number_are_read_as_it(tmp_path):
    options = resolve(tmp_path, config='max_steps: "30"\nbatch_size: 8.0\nmax_grad_norm: 2\nwarmup_ratio: 1e-1\n')

    training = options[TrainingOptions]
    assert (training.max_steps, training.batch_size) == (30, 8)
    assert isinstance(training.batch_size, int)
    assert training.max_grad_norm == 2.0 and isinstance(training.max_grad_norm, float)
    assert training.warmup_ratio == pytest.approx(0.1)


@pytest.mark.parametrize(("value", "annotation", "expected"), [
    (Path("runs/x"), str, "runs/x"),  # a path object from Python is its path
    ((1, 2), list[int], [1, 2]),
    ("a, b", list[str], ["a", "b"]),
    (None, str | None, None),
    (3, float, 3.0),
    ("1e3", int, 1000),  # YAML 1.1 reads `max_steps: 1e3` as a string: a whole number all the same
    ("1e-4", float, 1e-4),
])
def test_check_type_for_python_callers(value, annotation, expected):
    assert check_type(value, annotation, where="PretrainConfig.x") == expected


@pytest.mark.parametrize(("value", "annotation", "message"), [
    (["runs/x"], str, "PretrainConfig.x must be a string (str), got a list of strings (['runs/x'])"),
    (False, str, "PretrainConfig.x must be a string (str), got a boolean (false)"),
    ([1, 2.5], list[int], "PretrainConfig.x item 2 must be a whole number (int), got a number (2.5)"),
    ("3", bool, "PretrainConfig.x must be true or false (bool), got a string ('3')"),
    ("fast", str, "PretrainConfig.x must be one of slow, full, got a string ('fast')"),
    ("1.5e0", int, "PretrainConfig.x must be a whole number (int), got a string ('1.5e0')"),
    ("1e400", int, "PretrainConfig.x must be a whole number (int), got a string ('1e400')"),  # inf, not a number
])
def test_check_type_refuses_what_it_would_have_to_convert(value, annotation, message):
    choices = ("slow", "full") if value == "fast" else None
    with pytest.raises(UserError) as error:
        check_type(value, annotation, choices, where="PretrainConfig.x")
    assert str(error.value).startswith(message)
