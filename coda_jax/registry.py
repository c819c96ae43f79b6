"""Registries: the names a config may use for methods, models, classifiers and matchings, and the values they
stand for.

A researcher registers a value under a name (``cj.register_method``, ``cj.register_model``,
``cj.register_classifier``, ``cj.register_matching``); a config names it; the name is turned into its value
once, when the stage's settings are built from the config (as jumanji's ``make()`` does), and from then on
only the value travels. The compiled device stage is keyed by those values (function identity, module
fields), so registering a name again (``replace=True``) can never run a stale function.

Each register function checks what it is given before accepting it (callable, number of arguments, one call
on a tiny abstract input through ``jax.eval_shape``) and names itself and the entry in every error
(:class:`RegistryError`). A config naming something unregistered fails validation with a
:class:`~coda_jax.config.ConfigError` naming the key and the known names.

This module sits on the ground floor (beside the config): the registries themselves live beside what uses
them (:mod:`coda_jax.device.methods`, :mod:`coda_jax.models.registry`, :mod:`coda_jax.cloud.matchings`).
"""

from __future__ import annotations

import inspect
from typing import Callable, Generic, TypeVar

from coda_jax.config_check import ConfigError, add_name

T = TypeVar("T")


class RegistryError(ValueError):
    """A registration problem; the message names the register function and the entry (``register_model('mine'):
    ...``)."""


class Registry(Generic[T]):
    """Name -> value, in registration order (built-ins first).

    Args:
      register: the public register function's name (``register_method``), for errors.
      key: the config key that names entries (``methods``, ``model.name``, ...); configs may name an entry
        once it is registered.
      what: what an entry is, for errors (``method``).
    """

    def __init__(self, register: str, key: str, what: str):
        self.register, self.key, self.what = register, key, what
        self.entries: dict[str, T] = {}

    def where(self, name) -> str:
        """How errors about entry ``name`` begin: ``register_method('coda')``."""
        return f"{self.register}({name!r})"

    def add(self, name: str, value: T, replace: bool = False) -> T:
        """Register ``value`` as ``name``; a name registered already needs ``replace=True``."""
        if not isinstance(name, str) or not name.strip():
            raise RegistryError(f"{self.register}: the name must be a non-empty string, got {name!r}")
        if name in self.entries and not replace:
            raise RegistryError(f"{self.where(name)}: registered already (pass replace=True to replace it)")
        self.entries[name] = value
        add_name(self.key, name)
        return value

    def get(self, name: str) -> T:
        """The value of ``name``; a :class:`ConfigError` naming the config key and the known names otherwise."""
        if name not in self.entries:
            raise ConfigError(f"{self.key}: unknown {self.what} {name!r}; known: "
                              f"{', '.join(self.entries)} (register one with coda_jax.{self.register})")
        return self.entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)


def check_callable(where: str, what: str, fn: Callable | None, n_args: int) -> None:
    """Raise :class:`RegistryError` (``"<where>: <what> ..."``) unless ``fn`` is callable with ``n_args``
    positional arguments."""
    if not callable(fn):
        raise RegistryError(f"{where}: {what} must be callable, got {type(fn).__name__} {fn!r}")
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):           # a builtin without a signature: the tiny call decides
        return
    try:
        sig.bind(*range(n_args))
    except TypeError:
        raise RegistryError(f"{where}: {what} must take {n_args} positional argument(s); "
                            f"{getattr(fn, '__name__', fn)!s}{sig} does not") from None


def on_tiny_input(where: str, what: str, call: Callable[[], T]) -> T:
    """``call()`` (one run of a registered value on a tiny input), its failure re-raised as a
    :class:`RegistryError` naming ``where`` and ``what``."""
    try:
        return call()
    except RegistryError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever the researcher's code raises, say whose it is
        raise RegistryError(f"{where}: {what} fails on a tiny input: {type(err).__name__}: {err}") from err


def expect(where: str, cond: bool, msg: str) -> None:
    """Raise :class:`RegistryError` ``"<where>: <msg>"`` unless ``cond``."""
    if not cond:
        raise RegistryError(f"{where}: {msg}")


def expect_hashable(where: str, what: str, module) -> None:
    """The compiled device stage is keyed by the module (a static argument), so it must hash: a flax module
    with a list field (``nn.Sequential([...])``) does not. Raise :class:`RegistryError` naming ``where``."""
    try:
        hash(module)
    except TypeError as err:
        raise RegistryError(f"{where}: {what} must be hashable (the compiled stage is keyed by it): give its "
                            f"fields tuples, not lists, e.g. nn.Sequential((...)) ({err})") from None
