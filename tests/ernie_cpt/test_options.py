"""Options: field defaults < YAML config file < command-line flags, with one-line errors for bad configs."""

from __future__ import annotations

import argparse

import pytest

from ernie_cpt.commands.pretrain import RunOptions
from ernie_cpt.data.corpus import CorpusOptions
from ernie_cpt.errors import UserError
from ernie_cpt.modeling.encoder import ModelOptions
from ernie_cpt.options import add_options, resolve_options
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
    ('max_steps: "many"\n', "config key 'max_steps' must be of type int, got 'many'"),
    ("learning_rate: fast\n", "config key 'learning_rate' must be of type float"),
    ("amp: maybe\n", "config key 'amp' must be true or false"),
    ("model_size: gigantic\n", "config key 'model_size' must be one of tiny, mini"),
    ("tasks: {knowledge_masking: 1}\n", "config key 'tasks' must be a list"),
    ("max_steps:\n", "config key 'max_steps'"),  # an empty value is not a number of steps
    ("corpus: null\n", "config key 'corpus'"),
])
def test_wrong_type_values_are_user_errors(tmp_path, config, expected):
    with pytest.raises(UserError) as error:
        resolve(tmp_path, config=config)

    assert expected in str(error.value)


def test_a_utf16_config_file_is_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("max_steps: 50\ntasks: knowledge_masking, capitalization\n", encoding="utf-16")
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    add_options(parser, OPTION_CLASSES)

    options = resolve_options(parser.parse_args(["--config", str(path)]), OPTION_CLASSES)

    assert options[TrainingOptions].max_steps == 50
    assert options[RunOptions].tasks == ["knowledge_masking", "capitalization"]
