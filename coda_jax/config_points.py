"""The configs of one run checked before any work, as the CLI checks its own: each validated (a
``dataclasses.replace`` skips validation) and, for the points of :func:`coda_jax.simulate.simulate_points`,
one dataset, one cloud stage and one device-stage structure between them (they differ in traced numbers only)."""

from __future__ import annotations

from coda_jax.cloud.stage import cloud_key
from coda_jax.config import Config, ConfigError, to_dict, validate
from coda_jax.device.settings import TRACED_FIELDS, structure


def check_configs(cfgs: list[Config], where: str = "simulate") -> list[Config]:
    """Validate every config (:func:`coda_jax.config.validate`: a ``dataclasses.replace`` skips it) and check
    that they may share one run: the same dataset and cloud stage, and a device stage that differs only in
    traced numbers. Called before any work; raises :class:`ConfigError` naming the key."""
    if not cfgs:
        raise ConfigError(f"{where}: needs at least one config")
    for i, c in enumerate(cfgs):
        if not isinstance(c, Config):
            raise ConfigError(f"{where}: config {i} is a {type(c).__name__}, not a coda_jax.Config")
        validate(c, where if len(cfgs) == 1 else f"{where}: config {i}")
    base, base_cloud = to_dict(structure(cfgs[0])), cloud_key(cfgs[0])
    for i, c in enumerate(cfgs[1:], start=1):
        if cloud_key(c) != base_cloud or to_dict(structure(c)) != base:
            key = _first_difference(base, to_dict(structure(c)))
            raise ConfigError(f"{where}: config {i} differs from config 0 in {key}, beyond the traced numbers "
                              f"({', '.join(TRACED_FIELDS)}); run it on its own")
    return list(cfgs)


def _first_difference(a: dict, b: dict, prefix: str = "") -> str:
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                return _first_difference(a[k], b[k], f"{prefix}{k}.")
            return f"{prefix}{k}"
    return prefix.rstrip(".") or "?"
