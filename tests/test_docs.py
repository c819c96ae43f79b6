"""docs/configuration.md documents every config field, no other, with its current default, and every retired key."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import yaml

from coda_jax.config import RETIRED, Config, to_dict

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]*)`\s*\|(.*)\|\s*$")


def config_keys(cls=Config, prefix: str = "") -> list[str]:
    """The dotted keys of every leaf field of the config dataclass tree."""
    keys = []
    hints = {f.name: f for f in dataclasses.fields(cls)}
    for name, f in hints.items():
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            keys += config_keys(type(default), f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def documented() -> dict[str, tuple[str, str]]:
    """Dotted key -> (default as written, meaning) of every table row of docs/configuration.md."""
    rows: dict[str, tuple[str, str]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            key, default, meaning = m.group(1), m.group(2), m.group(3).strip()
            assert key not in rows, f"docs/configuration.md documents {key} twice"
            rows[key] = (default, meaning)
    return rows


def _dotted(d: dict, key: str):
    for part in key.split("."):
        d = d[part]
    return d


def test_every_config_field_is_documented_and_nothing_else():
    docs, fields = set(documented()), set(config_keys())
    assert not fields - docs, f"config fields missing from docs/configuration.md: {sorted(fields - docs)}"
    assert not docs - fields, f"docs/configuration.md documents fields the config lacks: {sorted(docs - fields)}"


def test_documented_defaults_and_meanings():
    defaults = to_dict(Config())
    for key, (default, meaning) in documented().items():
        assert meaning, f"docs/configuration.md: {key} has no meaning"
        written = yaml.safe_load(default) if default else None
        actual = _dotted(defaults, key)
        assert written == actual, f"docs/configuration.md: {key} default {default!r}, the config says {actual!r}"


def test_every_retired_key_is_documented_as_retired():
    text = DOC.read_text(encoding="utf-8")
    assert "\n## Retired settings\n" in text, "docs/configuration.md has no 'Retired settings' section"
    section = text.split("\n## Retired settings\n", 1)[1]
    for key in RETIRED:
        assert f"| `{key}` |" in section, f"docs/configuration.md, 'Retired settings': {key} is missing"
