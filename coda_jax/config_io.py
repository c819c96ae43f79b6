"""Reading configs: YAML (a syntax error or a key given twice names the file and line), typed coercion of
YAML values to the dataclass fields (:func:`build`), ``--set KEY=VALUE`` items read by the field's type
(:func:`parse_value`, :func:`apply_overrides`), key-by-key merging of config files (:func:`merge`) and
:func:`to_dict`. Keys of settings that were tried and retired (:data:`RETIRED`) are refused with what they
showed.

Every function here works on any dataclass tree; :mod:`coda_jax.config` applies them to
:class:`~coda_jax.config.Config` (and re-exports the public names).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from coda_jax.config_check import ConfigError


RETIRED: dict[str, tuple[Any, str]] = {
    "finetune.select": ("none", "device-side early stopping on the latest local rows (select: holdout) lifted "
                        "local more than coda: with SGD 0.3 over four seeds coda - local fell from +0.0042 to "
                        "+0.0011 (coda level with the cloud model); the last step is kept"),
    "finetune.holdout_fraction": (0.2, "it set the held-out share of finetune.select: holdout, retired with it"),
    "finetune.check_every": (10, "it set the checks of finetune.select: holdout, retired with it"),
    "finetune.weight_by_score": (False, "also weighting coda's kept rows by their classifier score lowered coda "
                                 "(coda - local -0.0037 against +0.0048 without, on validation)"),
    "classifier.features": ("vector", "showing the classifier a row's label (vector+label) or its residual "
                            "against the cloud model (vector+residual) made coda worse on validation (mean "
                            "0.6478 / 0.6457 against 0.6503 with the sample vector alone, which it now sees)"),
    "retrieval.candidate_order": ("score", "keeping each local sample's nearest candidates first (rank) "
                                  "lifted coda by 0.002 on validation, within run-to-run noise and short of "
                                  "the cloud model and of random rows; candidates are the most similar"),
    "retrieval.exclude_seen_items": (False, "dropping candidates about items the user's local rows hold lifted "
                                     "coda by 0.002 on validation, within run-to-run noise and short of the "
                                     "cloud model and of random rows"),
    "finetune.interpolate": (1.0, "keeping a quarter or half of the fine-tuning move (weight-space interpolation) "
                             "lifted local to coda's level, not coda (coda - local -0.0014 / +0.0010 on "
                             "validation); the fine-tuned weights are kept"),
}
"""Dotted config keys that were retired, each with the value whose behaviour the code kept (the old default)
and what the setting showed when it was tried. A config or ``--set`` naming one stops with
:func:`retired_message`; docs/configuration.md ("Retired settings") says more and where the code was."""


def retired_message(key: str) -> str:
    """Why the retired ``key`` is refused (see :data:`RETIRED`)."""
    return (f"{key} was retired: {RETIRED[key][1]} (docs/configuration.md, 'Retired settings'; "
            "figures in docs/results.md)")


def drop_retired(data: Any, prefix: str = "") -> Any:
    """A config dict (e.g. a ``results.json``'s, which spells out every field of its day) without the retired
    keys that hold the value whose behaviour the code kept, so an older run at those values still reads; a
    retired key at any other value stays, and is refused when the dict is built. ``data`` is not changed."""
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if path in RETIRED and value == RETIRED[path][0]:
            continue
        out[key] = drop_retired(value, path)
    return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the dataclass field type ``tp`` or raise naming ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (elem,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple(_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value)
        except OverflowError:
            out = math.inf
        if not math.isfinite(out):                  # no field means infinity (or NaN)
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            hint = f" (in YAML, quote it: '{value}')" if isinstance(value, (int, float)) else ""
            raise ConfigError(f"{where}: expected a string, got {value!r}{hint}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")  # pragma: no cover - programming error


def build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key in getattr(cls, "MOVED", {}):
            raise ConfigError(f"{path}: moved to {cls.MOVED[key]}")
        if key not in names and path in RETIRED:
            raise ConfigError(retired_message(path))
        if key not in names:
            raise ConfigError(f"{path}: unknown key; known keys here: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads exponent floats without a dot (``1e-3``, ``2E5``) as numbers, as YAML 1.2
    does (YAML 1.1 reads them as strings, so ``learning_rate: 1e-3`` was rejected as "expected a number")."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def _check_duplicate_keys(node: yaml.Node, where: str, seen_nodes: set[int]) -> None:
    """Raise :class:`_DuplicateKey` for a mapping key given twice anywhere under ``node`` (YAML keeps the last)."""
    if id(node) in seen_nodes:                     # an alias of a node already checked (or a cycle)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            path = f"{where}.{name}" if where else name
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if ident in first:
                    raise _DuplicateKey(path, line, first[ident])
                first[ident] = line
            _check_duplicate_keys(value_node, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{where}[{i}]", seen_nodes)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}not valid YAML: {problem}"


def parse_yaml(text: str, source: str, prefix: str = "") -> Any:
    """Parse YAML ``text`` (safe types only); a syntax error or a mapping key given twice (which YAML would
    silently resolve to the last value) raises :class:`ConfigError` naming ``source``, the line and the
    dotted key (``prefix`` + the keys above it)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(node, prefix, set())
        return loader.construct_document(node)
    except _DuplicateKey as dup:
        raise ConfigError(f"{source}: line {dup.line}: {dup.key} is given twice (first on line {dup.first}); "
                          "YAML would keep only the last") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: {_yaml_problem(err)}") from None
    except RecursionError:                         # PyYAML composes nested collections recursively
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml_file(path: str | Path) -> Any:
    """The parsed YAML of a config file (see :func:`parse_yaml`); a missing or unreadable file raises
    :class:`ConfigError` naming it."""
    path = Path(path)
    if path.is_dir():
        yamls = sorted(p.name for p in path.glob("*.yaml"))[:3]
        raise ConfigError(f"{path}: is a directory, not a config file; give a YAML file"
                          + (f" in it, e.g. {path / yamls[0]}" if yamls else ""))
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file: {err}") from None
    return parse_yaml(text, str(path))


def merge(base: dict, over: dict) -> dict:
    """``over`` laid over ``base`` key by key: a mapping in both is merged the same way, anything else (a
    value, a list) in ``over`` replaces ``base``'s. Neither input is changed."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def to_dict(cfg: Any) -> dict:
    """A config (dataclass) as a plain nested dict (lists for tuples), as written to ``results.json``."""

    def conv(x: Any) -> Any:
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x

    return conv(dataclasses.asdict(cfg))


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _split_list(raw: str, where: str) -> list[str]:
    """``[a, b]`` or ``a,b`` -> ``["a", "b"]``; whitespace around items dropped, one pair of '...' or "..."
    quotes around an item removed (a quoted item may hold commas); ``[]`` or nothing -> ``[]``."""
    text = raw.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ConfigError(f"{where}: a list starting with '[' must end with ']', got {raw!r}")
        text = text[1:-1].strip()
    if not text:
        return []
    items, cur, quote = [], "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"" and not cur.strip():
            quote = ch
        elif ch == ",":
            items.append(cur)
            cur = ""
            continue
        cur += ch
    if quote:
        raise ConfigError(f"{where}: unclosed {quote} in {raw!r}")
    items.append(cur)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            raise ConfigError(f"{where}: empty list item in {raw!r}")
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1]
        out.append(item)
    return out


def parse_value(raw: str, tp: Any, where: str) -> Any:
    """A command-line value as the field type ``tp`` (not YAML: paths such as ``runs/x #1`` or ``2024`` stay
    strings). str: the text as given; int: ``int()``; float: ``float()`` (``1e-3``, ``.5``; finiteness is
    checked when the config is built); bool: true/false, yes/no or 1/0 (any case); tuple: ``[a, b]`` or
    ``a,b`` (``[]`` or nothing: empty), items read by the element type; optional (``X | None``): nothing
    means None; a section: a YAML flow mapping (``{epochs: 5}``), as in a config file.
    Raises :class:`ConfigError` naming ``where``."""
    if dataclasses.is_dataclass(tp):
        return parse_yaml(raw, where, prefix=where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if raw.strip() == "":
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return parse_value(raw, inner, where)
    if origin is tuple:
        (elem,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple(parse_value(v, elem, f"{where}[{i}]") for i, v in enumerate(_split_list(raw, where)))
    if tp is str:
        return raw
    if tp is bool:
        low = raw.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(f"{where}: expected true or false (or yes/no, 1/0), got {raw!r}")
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    raise ConfigError(f"{where}: unsupported field type {tp}")  # pragma: no cover - programming error


def _field_type(root: type, key: str, item: str, source: str) -> Any:
    """The declared type of the dotted ``key`` of the dataclass ``root`` (a section's dataclass for a section)."""
    tp: Any = root
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{source} {item!r}: unknown key {key}: {'.'.join(parts[:i])} is a value, "
                              "not a section")
        names = sorted(f.name for f in dataclasses.fields(tp))
        if part in getattr(tp, "MOVED", {}):
            raise ConfigError(f"{source} {item!r}: {'.'.join(parts[:i + 1])} moved to {tp.MOVED[part]}")
        if part not in names and ".".join(parts[:i + 1]) in RETIRED:
            raise ConfigError(f"{source} {item!r}: {retired_message('.'.join(parts[:i + 1]))}")
        if part not in names:
            raise ConfigError(f"{source} {item!r}: unknown key {'.'.join(parts[:i + 1])}; "
                              f"known keys here: {', '.join(names)}")
        tp = typing.get_type_hints(tp)[part]
    return tp


def apply_overrides(root: type, data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Apply ``key.sub=value`` overrides to ``data`` (the plain dict of a ``root`` dataclass, see
    :func:`to_dict`) in place, in order (later items win); returns ``data``. Not validated here.

    Each value is read by its field's declared type with :func:`parse_value`, not as YAML; a malformed value
    raises :class:`ConfigError` naming ``source``, the item and the dotted key."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. cloud.epochs=5")
        key, raw = item.split("=", 1)
        key = key.strip()
        tp = _field_type(root, key, item, source)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        try:
            value = parse_value(raw, tp, key)
            _coerce(value, tp, key)                # check the value alone now, so that the error names this item
        except ConfigError as err:
            raise ConfigError(f"{source} {item!r}: {err}") from None
        if dataclasses.is_dataclass(tp):          # a section: its keys given here replace those keys only
            node[parts[-1]] = {**node[parts[-1]], **value}
        else:
            node[parts[-1]] = value
    return data


def apply_values(root: type, data: dict, values: Mapping[str, Any], source: str) -> dict:
    """Set dotted keys of ``data`` (the plain dict of a ``root`` dataclass) to Python ``values`` in place, in
    order; returns ``data``. Each value is checked against its field's declared type as a config file's would be
    (a list for a tuple field, a number for a float; a mapping for a section replaces the keys it names); a
    wrong key or type raises :class:`ConfigError` naming ``source`` and the key. Ranges are not checked here."""
    for key, value in values.items():
        if not isinstance(key, str):
            raise ConfigError(f"{source}: keys are dotted config keys such as 'finetune.steps', got {key!r}")
        tp = _field_type(root, key, key, source)
        if isinstance(value, tuple):
            value = list(value)
        try:
            _coerce(value, tp, key)                  # checked alone, so the error names this key
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = {**node[parts[-1]], **value} if dataclasses.is_dataclass(tp) else value
    return data
