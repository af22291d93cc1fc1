"""Read a YAML recipe, apply ``section.key=value`` overrides, and check it against the schema.

Every problem (unknown key, wrong type, missing required value, bad choice, value out of range) is
collected with its dotted path and raised together in one :class:`RecipeError`, so a user fixes a
recipe in one pass before any work starts. Problems with the file itself (missing, not YAML, not a
mapping) are a :class:`UsageError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from wmtp_cli.config.schema import Recipe, RegisteredName
from wmtp_cli.errors import RecipeError, UsageError
from wmtp_cli.io import read_text_file


class _RecipeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that reads ``1e-4`` as a float and refuses duplicate keys.

    PyYAML follows YAML 1.1, where a float needs a dot (``1e-4`` would be the string '1e-4'), and it
    silently keeps the last of two equal keys; both are easy ways to lose a setting in a recipe.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        "while reading a mapping",
                        node.start_mark,
                        f"found the key '{key_node.value}' twice",
                        key_node.start_mark,
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"),
)


def _sections() -> dict[str, type]:
    """Section name -> its dataclass, read from :class:`Recipe`'s annotations."""
    hints = typing.get_type_hints(Recipe)
    return {f.name: _strip_optional(hints[f.name]) for f in dataclasses.fields(Recipe)}


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if _is_union(tp):
        (inner,) = [a for a in args if a is not type(None)]
        return inner
    return tp


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _choices(tp: Any) -> tuple[str, ...] | None:
    """The values a ``Literal`` or a registry's key (:func:`~wmtp_cli.config.schema.one_of`) allows, now."""
    if typing.get_origin(tp) is Literal:
        return typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, RegisteredName):
        return tuple(tp.registry)
    return None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _show(value: Any) -> str:
    """A value as a problem message quotes it: ``'hot' (str)``, ``null``."""
    if value is None:
        return "null"
    text = str(value).lower() if isinstance(value, bool) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _expected(tp: Any) -> str:
    """What a type accepts, in words, for problem messages."""
    if _is_union(tp):
        return f"{_expected(_strip_optional(tp))} or null"
    if _choices(tp) is not None:
        return "one of " + ", ".join(repr(a) for a in _choices(tp))
    if typing.get_origin(tp) is list:
        return "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}[tp]


_INVALID = object()
"""Returned by :func:`_convert` after it has recorded a problem."""


def _convert(value: Any, tp: Any, key: str, problems: list[str], expected: str | None = None) -> Any:
    """``value`` checked against ``tp`` (an int is accepted as a float), or ``_INVALID``.

    ``expected`` replaces the type's own description in a problem (``X | None`` says "or null").
    """
    if _is_union(tp):
        if value is None:
            return None
        return _convert(value, _strip_optional(tp), key, problems, expected or _expected(tp))
    origin = typing.get_origin(tp)
    hint = ""
    choices = _choices(tp)
    if choices is not None:
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
        hint = f" (did you mean '{close[0]}'?)" if close else ""
    elif origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, str) and _choices(item_tp) is not None:  # a list of names takes one name alone
            item = _convert(value, item_tp, key, problems)
            return _INVALID if item is _INVALID else [item]
        if isinstance(value, list):
            items = [_convert(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
            return _INVALID if any(v is _INVALID for v in items) else items
    elif tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            number = math.inf
        if math.isfinite(number):
            return number
        problems.append(f"{key}: must be a finite number, got {_show(value)}")
        return _INVALID
    elif tp in (int, str, bool) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    elif tp is int and isinstance(value, float) and value.is_integer():  # 1e6 written for a million steps
        return int(value)
    elif tp not in (int, float, str, bool):
        raise TypeError(f"{key}: the schema uses an unsupported type {tp!r}")
    problems.append(f"{key}: expected {expected or _expected(tp)}, got {_show(value)}{hint}")
    return _INVALID


_BOUNDS = {
    "ge": (">=", lambda v, b: v >= b),
    "gt": (">", lambda v, b: v > b),
    "le": ("<=", lambda v, b: v <= b),
    "lt": ("<", lambda v, b: v < b),
    "zero_or_ge": ("0 or >=", lambda v, b: v == 0 or v >= b),
}


def _check_bounds(value: Any, f: dataclasses.Field, key: str, problems: list[str]) -> bool:
    """Check the field's numeric bounds on a converted value (each element of a list)."""
    if isinstance(value, list):
        results = [_check_bounds(v, f, f"{key}[{i}]", problems) for i, v in enumerate(value)]
        return all(results)
    if value is None:
        return True
    for name, (symbol, ok) in _BOUNDS.items():
        if name in f.metadata and not ok(value, f.metadata[name]):
            problems.append(f"{key}: must be {symbol} {f.metadata[name]}, got {value}")
            return False
    return True


def _owners(name: str, sections: dict[str, type]) -> list[str]:
    """Dotted keys of every section that has a key called ``name``."""
    return [f"{s}.{name}" for s, cls in sections.items() if name in {f.name for f in dataclasses.fields(cls)}]


def _unknown_key(section: str, name: str, sections: dict[str, type]) -> str:
    """The problem for a key the section does not have, suggesting the closest known one."""
    names = [f.name for f in dataclasses.fields(sections[section])]
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"unknown key '{section}.{name}' (did you mean '{section}.{close[0]}'?)"
    elsewhere = _owners(name, sections)
    if elsewhere:
        return f"unknown key '{section}.{name}' (it belongs in another section: {', '.join(elsewhere)})"
    return f"unknown key '{section}.{name}' (known keys: {', '.join(names)})"


def _unknown_section(name: str, sections: dict[str, type]) -> str:
    """The problem for a top-level key that is not a section."""
    close = difflib.get_close_matches(name, list(sections), n=1)
    if close:
        return f"unknown section '{name}' (did you mean '{close[0]}'?)"
    owners = _owners(name, sections)
    if owners:
        return f"unknown section '{name}' (keys go under a section, e.g. {', '.join(owners)})"
    return f"unknown section '{name}' (sections: {', '.join(sections)})"


def _apply_overrides(data: dict, overrides: Sequence[str], problems: list[str]) -> dict:
    """A copy of ``data`` with each ``section.key=value`` applied; bad overrides become problems.

    The value is read as YAML (``0.5``, ``true``, ``[1, 10]``, ``null``). For a key that takes a
    string, text that YAML would read as something else (``run.name=2024``) is kept as written.
    """
    sections = _sections()
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for item in overrides:
        key, sep, text = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot or not name:
            problems.append(f"override '{item}': expected section.key=value, e.g. wmtp.temperature=0.5")
            continue
        if section not in sections:
            problems.append(f"override '{item}': {_unknown_section(section, sections)}")
            continue
        fields = {f.name: f for f in dataclasses.fields(sections[section])}
        if name not in fields:
            problems.append(f"override '{item}': {_unknown_key(section, name, sections)}")
            continue
        tp = typing.get_type_hints(sections[section])[name]
        takes_str = _strip_optional(tp) is str
        try:
            value = yaml.load(text, Loader=_RecipeLoader)  # a SafeLoader subclass
        except yaml.YAMLError:
            if not takes_str:
                problems.append(f"override '{item}': cannot read '{text}' as a YAML value")
                continue
            value = text
        if takes_str and not isinstance(value, str) and not (value is None and _is_union(tp)):
            value = text
        if data.get(section) is None:
            data[section] = {}
        if isinstance(data[section], dict):  # otherwise the section itself is reported as a problem
            data[section][name] = value
    return data


def recipe_from_dict(
    data: dict, overrides: Sequence[str] = (), need: Sequence[str] = (), source: str = "recipe"
) -> Recipe:
    """Check a recipe already read into a dict; see :func:`load_recipe`."""
    sections = _sections()
    unknown_need = set(need) - set(sections)
    if unknown_need:
        raise ValueError(f"need names unknown sections {sorted(unknown_need)}; sections are {list(sections)}")
    problems: list[str] = []
    data = _apply_overrides(data, overrides, problems)
    for name in data:
        if name not in sections:
            problems.append(_unknown_section(str(name), sections))
    built: dict[str, Any] = {}
    for section, cls in sections.items():
        given = data.get(section)
        if given is not None and not isinstance(given, dict):
            problems.append(f"{section}: expected a mapping of keys, got {_show(given)}")
            continue
        given = given or {}
        wanted = section in data or section in need
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        for name in given:
            if name not in fields:
                problems.append(_unknown_key(section, str(name), sections))
        values: dict[str, Any] = {}
        ok = True
        for name, f in fields.items():
            key = f"{section}.{name}"
            if name in given:
                value = _convert(given[name], hints[name], key, problems)
                if value is _INVALID or not _check_bounds(value, f, key, problems):
                    ok = False
                values[name] = value
            elif not _required(f):
                values[name] = _default(f)
            elif wanted:
                problems.append(f"{key}: missing required value. {f.metadata['help']}")
                ok = False
        if any(_required(f) and name not in values for name, f in fields.items()):
            built[section] = None  # left out and not needed: see Recipe's docstring
        elif ok:
            built[section] = cls(**values)
            if hasattr(cls, "cross_check"):
                problems.extend(f"{section}.{key}: {msg}" for key, msg in built[section].cross_check())
    if problems:
        raise RecipeError(source, problems)
    return Recipe(**built)


def check_values(section: str, values: dict[str, Any], names: dict[str, str] | None = None) -> None:
    """Check values for some of a section's keys as a recipe's would be checked (type, finiteness, bounds).

    For settings that arrive another way, such as command-line flags: one :class:`UsageError` lists every
    problem, each named by ``names[key]`` (the flag) where given, else by its dotted key.
    """
    cls = _sections()[section]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    problems: list[str] = []
    for key, value in values.items():
        label = (names or {}).get(key, f"{section}.{key}")
        converted = _convert(value, hints[key], label, problems)
        if converted is not _INVALID:
            _check_bounds(converted, fields[key], label, problems)
    if problems:
        raise UsageError("; ".join(problems))


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), need: Sequence[str] = ()) -> Recipe:
    """Read the YAML recipe at ``path``, apply ``section.key=value`` overrides, and validate it.

    ``need`` names the sections the calling command uses: their required keys must be given even
    when the recipe leaves the section out. Raises :class:`UsageError` when the file is missing or is
    not a YAML mapping, and one :class:`RecipeError` listing every problem with its dotted key.
    """
    path = Path(path)
    text = read_text_file(path, "recipe", hint="give the path to a YAML recipe (examples are in recipes/)")
    try:
        data = yaml.load(text, Loader=_RecipeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UsageError(
            f"{path}: not valid YAML{where}: {exc.problem or exc.context}; fix it there "
            "(a recipe is 'section:' lines with indented 'key: value' lines below them)"
        ) from None
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: cannot read it as YAML ({exc}); a recipe is a UTF-8 YAML file") from None
    if data is None or data == {}:
        raise UsageError(f"{path}: the recipe is empty; give it sections (model:, data:, ...; see recipes/)")
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: the top level must be a mapping of sections (model:, data:, ..., run:), "
            f"got {type(data).__name__}; see recipes/ for examples"
        )
    return recipe_from_dict(data, overrides, need, source=str(path))


def recipe_to_dict(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """The recipe as plain data in schema order; a section that is ``None`` is left out."""
    return {
        f.name: dataclasses.asdict(getattr(recipe, f.name))
        for f in dataclasses.fields(recipe)
        if getattr(recipe, f.name) is not None
    }


class _RecipeDumper(yaml.SafeDumper):
    """Sections and keys one per line, lists inline (``k: [1, 10]``), as a person writes a recipe."""


_RecipeDumper.add_representer(
    list, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)
)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe as YAML text that :func:`load_recipe` reads back to an equal recipe."""
    return yaml.dump(recipe_to_dict(recipe), Dumper=_RecipeDumper, sort_keys=False)


def _format_type(tp: Any) -> str:
    if _is_union(tp):
        return f"{_format_type(_strip_optional(tp))} | null"
    if _choices(tp) is not None:
        return " | ".join(_choices(tp))
    if typing.get_origin(tp) is list:
        return f"list[{_format_type(typing.get_args(tp)[0])}]"
    return tp.__name__


def _format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(_format_value(v) for v in value) + "]"
    return str(value)


def describe_keys(section: str | None = None) -> list[tuple[str, str, str, str]]:
    """(dotted key, type, default, help) for every key, or for one section's, for display.

    Bounds are shown with the type (``float, > 0``); a required key's default reads ``required``.
    """
    sections = _sections()
    if section is not None and section not in sections:
        raise UsageError(_unknown_section(section, sections))
    rows = []
    for name, cls in sections.items():
        if section is not None and name != section:
            continue
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            bounds = [f"{_BOUNDS[b][0]} {f.metadata[b]}" for b in _BOUNDS if b in f.metadata]
            type_text = ", ".join([_format_type(hints[f.name]), *bounds])
            default = "required" if _required(f) else _format_value(_default(f))
            rows.append((f"{name}.{f.name}", type_text, default, f.metadata["help"]))
    return rows
