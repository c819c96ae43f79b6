"""Methods as data: what each method fine-tunes a device's model copy on.

A method is an entry of one registry (:data:`REGISTRY`). The device stage, the results and the overhead read
the entry; nothing outside this module compares method names. A fine-tuned method is a pure function of one
device's rows and its sample classifier's output, returning the augmented rows to fine-tune on beside the
local rows and their weights:

    augment(inputs: AugmentInputs) -> (rows: Rows [Nc], weights: float [Nc])

The rows must have the candidates' width ``Nc`` (the candidates, the random rows, or a mix of them through
``jnp.where``); weight 0 keeps a row out. Every fine-tuned method of a run is one *lane* of one vmapped
fine-tuning scan, so they share the draws of the local rows (common random numbers) and one compiled step.
What else differs between methods is data the entry carries (:class:`Method`): where its fine-tuning starts
(``start``, mpda's pass over its matched users), whether its chunks need the matched users' rows, its own
costs, whether its rows are the candidates the classifier keeps, whether it is the anchor of the paired
differences.

A researcher adds a method from their own code, with no edit inside the package::

    import coda_jax as cj
    def top_half(x: cj.AugmentInputs):
        keep = x.candidates.mask & (x.candidate_score >= 0.5)
        return x.candidates, keep * x.finetune.aug_weight
    cj.register_method("coda-half", top_half, description="candidates the classifier scores >= 0.5")
    cfg = dataclasses.replace(cj.Config(), methods=("global", "coda", "coda-half"))

:func:`register_method` checks ``augment`` on a tiny abstract device (``jax.eval_shape``) and names the method
in every error. The name is resolved to its entry when the stage's settings are built
(:meth:`~coda_jax.device.settings.StageSettings.from_config`); the compiled stage is keyed by the entries
(function identity), so registering a name again with ``replace=True`` runs the new function.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax.config import FinetuneConfig
from coda_jax.device.chunk import Rows
from coda_jax.device.costs import mpda_costs
from coda_jax.device.train import mpda_trials
from coda_jax.models.features import tiny_features
from coda_jax.registry import Registry, check_callable, expect, on_tiny_input

__all__ = ["REGISTRY", "AugmentInputs", "Method", "anchor", "get_method", "method_names", "register",
           "register_method", "run_methods"]


@dataclasses.dataclass(frozen=True)
class AugmentInputs:
    """What a method's ``augment`` sees of one device (no user axis).

    Attributes:
      local: [Nl] the device's own training rows; candidates: [Nc] the cloud's coarse candidates, best first;
        random: [Nc] random pool rows.
      kept: bool [Nc] candidates the sample classifier keeps; candidate_score: float [Nc] its probability
        that each candidate is local-like.
      finetune: the fine-tuning config, its numbers (``aug_weight``, ...) possibly traced.
      key: a PRNG key of the device for methods that draw (``coarse-subset``); None outside the device stage.
    """

    local: Rows
    candidates: Rows
    random: Rows
    kept: jnp.ndarray
    candidate_score: jnp.ndarray
    finetune: object
    key: jax.Array | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """One registry entry (hashable: the compiled stage is keyed by it).

    Attributes:
      name: the name ``methods:`` lists.
      augment: ``AugmentInputs -> (Rows [Nc], weights [Nc])``; None: no fine-tuning (the cloud model as is).
      start: optional ``(model, params, device, key, ft_cfg, settings) -> (params, accepted bool [M],
        aug_rows scalar)``: the parameters the lane's fine-tuning starts from (mpda's pass over its matched
        users), which matched users it accepted and how many rows it took from them.
      description: one line for the README / ``--help``.
      matched_rows: its chunks carry each matched user's latest ``mpda.rows_per_user`` rows (``device.matched``).
      overhead: optional ``CostInputs -> dict | None``: its own per-device costs, reported under its name in
        ``Results.overhead`` (:mod:`coda_jax.device.costs`).
      keeps_candidates: its augmented rows are the candidates the sample classifier keeps (the planted world
        then reports the own-group share of the kept rows).
      anchor: the paired differences of a run are this method minus each other one (the first such method
        the run lists).
      control: a built-in control every run with a ``keeps_candidates`` method adds (``coarse-subset``).
      reference: the lane reads the known answer (``Rows.own`` / ``Rows.fresh``): a reference row, not a
        method a device can run; ``"planted"`` (any planted world) or ``"shift"`` (a planted world with a
        shift); ``""`` for a method. A built-in reference lane is added to every run its world supports.
    """

    name: str
    augment: Callable | None
    start: Callable | None = None
    description: str = ""
    matched_rows: bool = False
    overhead: Callable | None = None
    keeps_candidates: bool = False
    anchor: bool = False
    control: bool = False
    reference: str = ""

    @property
    def finetunes(self) -> bool:
        return self.augment is not None


REGISTRY: Registry[Method] = Registry("register_method", "methods", "method")
"""Every method a config may list, built-ins first."""


def _tiny_rows(n: int) -> Rows:
    """Abstract rows of one device (no user axis): n rows of the models' features
    (:func:`~coda_jax.models.features.tiny_features`), vectors of width 4."""
    f = jax.ShapeDtypeStruct
    features = jax.tree_util.tree_map(lambda a: f(a.shape, a.dtype), tiny_features(n, 5, 7, 3))
    return Rows(features=features, label=f((n,), jnp.float32), mask=f((n,), jnp.bool_),
                vector=f((n, 4), jnp.float32), row=f((n,), jnp.int32), own=f((n,), jnp.bool_),
                fresh=f((n,), jnp.bool_))


def check_augment(where: str, augment: Callable) -> None:
    """``augment`` on a tiny abstract device (4 local rows, 6 candidates): it must return ``(Rows [6], weights
    [6] or scalar)``; :class:`~coda_jax.registry.RegistryError` naming ``where`` otherwise."""
    check_callable(where, "augment", augment, 1)
    n_cand = 6
    arrays = (_tiny_rows(4), _tiny_rows(n_cand), _tiny_rows(n_cand), jax.ShapeDtypeStruct((n_cand,), jnp.bool_),
              jax.ShapeDtypeStruct((n_cand,), jnp.float32))

    def call(a):
        return augment(AugmentInputs(*a, finetune=FinetuneConfig(), key=jax.random.PRNGKey(0)))

    out = on_tiny_input(where, "augment", lambda: jax.eval_shape(call, arrays))
    candidates = arrays[1]
    expect(where, isinstance(out, tuple) and len(out) == 2,
           f"augment must return (rows, weights), got {type(out).__name__}")
    rows, weights = out
    expect(where, isinstance(rows, Rows), f"augment's rows must be a Rows, got {type(rows).__name__}")
    expect(where, jax.tree_util.tree_structure(rows) == jax.tree_util.tree_structure(candidates)
           and all(a.shape == b.shape for a, b in zip(jax.tree_util.tree_leaves(rows),
                                                      jax.tree_util.tree_leaves(candidates))),
           f"augment's rows must have the candidates' width and fields ({n_cand} rows here), got mask "
           f"{tuple(rows.mask.shape)}")
    shape = tuple(np.shape(weights))
    expect(where, shape in ((n_cand,), ()), f"augment's weights must be [Nc] ({n_cand} here) or a scalar, got {shape}")


def register(method: Method, replace: bool = False) -> Method:
    """Add an entry built by hand (every :class:`Method` field); see :func:`register_method`."""
    where = REGISTRY.where(method.name)
    if method.augment is not None:
        check_augment(where, method.augment)
    if method.start is not None:
        check_callable(where, "start", method.start, 6)
    if method.overhead is not None:
        check_callable(where, "overhead", method.overhead, 1)
    return REGISTRY.add(method.name, method, replace)


def register_method(name: str, augment: Callable | None, *, start: Callable | None = None,
                    description: str = "", replace: bool = False) -> Method:
    """Add a method to the registry (see the module docstring): ``augment`` (None: no fine-tuning), an
    optional ``start``; returns its entry. Entries with costs or other data: :func:`register`."""
    return register(Method(name, augment, start, description), replace)


def get_method(name: str) -> Method:
    """The registry entry of ``name`` (a :class:`~coda_jax.config.ConfigError` naming the known methods
    otherwise)."""
    return REGISTRY.get(name)


def method_names() -> tuple[str, ...]:
    """Every registered method, built-ins first."""
    return REGISTRY.names()


def matched_rows_per_user(cfg, methods: tuple[Method, ...]) -> int:
    """Rows per matched user a run's chunks carry: ``mpda.rows_per_user`` when one of ``methods`` reads
    matched users' rows (:attr:`Method.matched_rows`), else 0."""
    return cfg.mpda.rows_per_user if any(m.matched_rows for m in methods) else 0


def anchor(methods: tuple[Method, ...], name: str | None = None) -> Method | None:
    """The method the paired differences of a run are taken against: the one the config names (``name``:
    ``eval.anchor``) when the run lists it; without ``name``, the first the registry marks as anchor (coda)."""
    if name is not None:
        return next((m for m in methods if m.name == name), None)
    return next((m for m in methods if m.anchor), None)


# ----------------------------------------------------------------------------- the built-in methods

def _local_only(x: AugmentInputs):
    return x.candidates, jnp.zeros(x.candidates.mask.shape, jnp.float32)


def _local_random(x: AugmentInputs):
    n_kept = jnp.sum(x.kept)                       # as many random rows as coda keeps
    chosen = x.random.mask & (jnp.cumsum(x.random.mask) <= n_kept)
    return x.random, chosen * x.finetune.aug_weight


def _local_coarse(x: AugmentInputs):
    return x.candidates, x.candidates.mask * x.finetune.aug_weight


def _coda(x: AugmentInputs):
    return x.candidates, x.kept * x.finetune.aug_weight


def _coarse_subset(x: AugmentInputs):
    """A uniformly random subset of the candidates, exactly as many as coda keeps (the filter's control)."""
    mask = x.candidates.mask
    u = jax.random.uniform(jax.random.fold_in(x.key, 7), mask.shape)
    order = jnp.argsort(jnp.where(mask, u, jnp.inf))
    rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.shape[0]))
    chosen = mask & (rank < jnp.sum(x.kept & mask))
    return x.candidates, chosen * x.finetune.aug_weight


def _oracle_filter(x: AugmentInputs):
    return x.candidates, (x.candidates.mask & x.candidates.own) * x.finetune.aug_weight


def _oracle_filter_fresh(x: AugmentInputs):
    c = x.candidates
    return c, (c.mask & c.own & c.fresh) * x.finetune.aug_weight


def _mpda_start(model, params, device, key, ft_cfg, settings):
    return mpda_trials(model, params, device, key, ft_cfg, settings.mpda)


BUILT_IN = (
    Method("global", None, description="the cloud model as is"),
    Method("local", _local_only, description="its local rows"),
    Method("local+random", _local_random, description="local rows + as many random pool rows as coda keeps"),
    Method("local+coarse", _local_coarse, description="local rows + every coarse candidate"),
    Method("coda", _coda, description="local rows + the candidates its sample classifier keeps",
           keeps_candidates=True, anchor=True),
    Method("mpda", _local_only, start=_mpda_start, matched_rows=True, overhead=mpda_costs,
           description="MPDA (KDD 2022): matched users' rows kept if the local AUC improves, then local rows"),
    Method("coarse-subset", _coarse_subset, control=True,
           description="local rows + a random subset of the candidates as large as coda keeps (no selection)"),
    Method("oracle-filter", _oracle_filter, reference="planted",
           description="reference: local rows + exactly the candidates of the user's own planted group"),
    Method("oracle-filter-fresh", _oracle_filter_fresh, reference="shift",
           description="reference: local rows + the own-group candidates at or after the planted shift"),
)
for _m in BUILT_IN:                      # checked as register() would in tests/test_registry.py, not at import
    REGISTRY.add(_m.name, _m)


def run_methods(methods: tuple[str, ...], planted: bool, shift: bool) -> tuple[str, ...]:
    """The lanes a run has: ``methods``, then the built-in controls (:attr:`Method.control`, when a listed
    method keeps candidates) and the built-in reference lanes the world supports (:attr:`Method.reference`:
    ``oracle-filter`` on a planted world, ``oracle-filter-fresh`` where it has a shift), each once.

    Raises:
      ValueError: a listed reference lane the world cannot support (it would read an answer nobody knows).
    """
    supported = {"": True, "planted": planted, "shift": shift}
    for name in methods:
        need = get_method(name).reference
        if not supported.get(need, False):
            raise ValueError(f"methods: {name!r} needs a planted world{' with a shift' if need == 'shift' else ''} "
                             "(it fine-tunes on the rows the planted answer marks)")
    keeps = any(get_method(name).keeps_candidates for name in methods)
    extra = [m.name for m in BUILT_IN if (m.control and keeps) or (m.reference and supported.get(m.reference))]
    return tuple(methods) + tuple(m for m in extra if m not in methods)
