"""Command-line options built from dataclasses, with YAML config files underneath.

Every option is a dataclass field with a ``help`` text, so ``--help``, the config file and
the code share one source of truth. Values are resolved as: field default < YAML config
file (``--config``) < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ernie_cpt.errors import UserError

T = TypeVar("T")


def option(default: Any = None, help: str = "", choices: tuple[str, ...] | None = None, **kw: Any) -> Any:
    """A dataclass field carrying its command-line help (and optional choices)."""
    metadata = {"help": help, "choices": choices}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=metadata, **kw)
    return dataclasses.field(default=default, metadata=metadata, **kw)


def _base_type(annotation: Any) -> tuple[type, bool]:
    """(scalar type, is_list) of a field annotation such as ``int``, ``str | None`` or ``list[str]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0])
    if origin is list:
        return typing.get_args(annotation)[0], True
    return annotation, False


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_options(parser: argparse.ArgumentParser, option_classes: list[type]) -> None:
    """Add one argument group per options dataclass. Defaults are suppressed so that only the
    flags a user typed reach :func:`resolve_options`."""
    for cls in option_classes:
        group = parser.add_argument_group(cls.__doc__.strip().splitlines()[0] if cls.__doc__ else cls.__name__)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind, is_list = _base_type(hints[f.name])
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            help_text = f"{f.metadata.get('help', '')} (default: {default})"
            kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": help_text}
            if kind is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["type"] = kind
                kwargs["metavar"] = f.name.upper()
                if f.metadata.get("choices"):
                    kwargs["choices"] = f.metadata["choices"]
                    kwargs.pop("metavar")
                if is_list:
                    kwargs["nargs"] = "+"
            group.add_argument(_flag(f.name), **kwargs)


def _read_config(path: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror}; check the path given to --config") from e
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        first_line = str(e).splitlines()[0]
        raise UserError(f"config file {path} is not valid YAML ({first_line}); fix the syntax") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must be a mapping of option names to values, not {type(data).__name__}")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _coerce(name: str, value: Any, annotation: Any, choices: tuple[str, ...] | None) -> Any:
    kind, is_list = _base_type(annotation)
    if value is None:
        if type(None) in typing.get_args(annotation):  # `X | None`: null means unset
            return None
        raise UserError(f"config key '{name}' has no value; give it one or delete the line")
    if is_list:
        items = [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise UserError(f"config key '{name}' must be a list, got {value!r}")
        return [_coerce(name, item, kind, choices) for item in items]
    if kind is bool and not isinstance(value, bool):
        raise UserError(f"config key '{name}' must be true or false, got {value!r}")
    try:
        coerced = kind(value)
    except (TypeError, ValueError) as e:
        raise UserError(f"config key '{name}' must be of type {kind.__name__}, got {value!r}") from e
    if choices and coerced not in choices:
        raise UserError(f"config key '{name}' must be one of {', '.join(choices)}, got {value!r}")
    return coerced


def resolve_options(args: argparse.Namespace, option_classes: list[type]) -> dict[type, Any]:
    """Instances of ``option_classes`` from defaults, the ``--config`` file, then the CLI flags."""
    fields_by_name = {}
    for cls in option_classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            fields_by_name[f.name] = (cls, f, hints[f.name])
    config_path = getattr(args, "config", None)
    values = _read_config(config_path) if config_path else {}
    for key in values:
        if key not in fields_by_name:
            close = difflib.get_close_matches(key, list(fields_by_name), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else "; see --help for the options"
            raise UserError(f"unknown key '{key}' in config file {config_path}{hint}")
    values = {k: _coerce(k, v, fields_by_name[k][2], fields_by_name[k][1].metadata.get("choices"))
              for k, v in values.items()}
    values.update({k: v for k, v in vars(args).items() if k in fields_by_name})
    resolved = {}
    for cls in option_classes:
        names = {f.name for f in dataclasses.fields(cls)}
        resolved[cls] = cls(**{k: v for k, v in values.items() if k in names})
    return resolved


def to_dict(*instances: Any) -> dict[str, Any]:
    """All fields of the given option instances as one flat, JSON-friendly dict."""
    merged: dict[str, Any] = {}
    for instance in instances:
        merged.update(dataclasses.asdict(instance))
    return merged
