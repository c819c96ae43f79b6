"""Methods as data: what each method fine-tunes a device's model copy on.

A method is an entry of one registry. The device stage, the results and the overhead read it; nothing
else matches method names. A fine-tuned method is a pure function of one device's rows and its sample
classifier's output, returning the augmented rows to fine-tune on beside the local rows and their weights:

    augment(inputs: AugmentInputs) -> (rows: Rows [Nc], weights: float [Nc])

The rows must have the candidates' width ``Nc`` (the candidates, the random rows, or a mix of them through
``jnp.where``); weight 0 keeps a row out. Every fine-tuned method of a run is one *lane* of one vmapped
fine-tuning scan, so they share the draws of the local rows (common random numbers) and one compiled step.

A researcher adds a method from their own code, with no edit inside the package::

    import coda_jax as cj
    def top_half(x: cj.methods.AugmentInputs):
        keep = x.candidates.mask & (x.candidate_score >= 0.5)
        return x.candidates, keep * x.finetune.aug_weight
    cj.register_method("coda-half", top_half, description="candidates the classifier scores >= 0.5")
    cfg = dataclasses.replace(cj.Config(), methods=("global", "coda", "coda-half"))

Register before the first run that uses the name: the compiled stage is cached by method name.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from coda_jax.config_check import add_method_name
from coda_jax.device.chunk import Rows


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
    """One registry entry.

    Attributes:
      name: the name ``methods:`` lists.
      augment: ``AugmentInputs -> (Rows [Nc], weights [Nc])``; None: no fine-tuning (the cloud model as is).
      start: optional ``(model, params, device, key, ft_cfg, settings) -> (params, accepted bool [M],
        aug_rows scalar)``: the parameters the lane's fine-tuning starts from (mpda's pass over its matched
        users), which matched users it accepted and how many rows it took from them.
      description: one line for the README / ``--help``.
      reference: the lane reads the known answer (``Rows.own`` / ``Rows.fresh``): a reference row, not a
        method a device can run; ``"planted"`` (any planted world) or ``"shift"`` (a planted world with a
        shift); ``""`` for a method.
    """

    name: str
    augment: Callable | None
    start: Callable | None = None
    description: str = ""
    reference: str = ""

    @property
    def finetunes(self) -> bool:
        return self.augment is not None


_REGISTRY: dict[str, Method] = {}


def register_method(name: str, augment: Callable | None, *, start: Callable | None = None,
                    description: str = "", replace: bool = False, reference: str = "") -> Method:
    """Add a method to the registry (see the module docstring); returns its entry."""
    if not name or not isinstance(name, str):
        raise ValueError(f"register_method: a method needs a non-empty name, got {name!r}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"register_method: {name!r} is registered already (pass replace=True)")
    _REGISTRY[name] = Method(name, augment, start, description, reference)
    add_method_name(name)                          # configs may list it from now on
    return _REGISTRY[name]


def get_method(name: str) -> Method:
    """The registry entry of ``name`` (KeyError naming the known methods otherwise)."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def method_names() -> tuple[str, ...]:
    """Every registered method, built-ins first."""
    return tuple(_REGISTRY)


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
    from coda_jax.device.train import mpda_trials   # noqa: PLC0415 - train imports this module's callers

    return mpda_trials(model, params, device.local, device.matched, settings.matched_users, key, ft_cfg,
                       settings.mpda)


register_method("global", None, description="the cloud model as is")
register_method("local", _local_only, description="its local rows")
register_method("local+random", _local_random, description="local rows + as many random pool rows as coda keeps")
register_method("local+coarse", _local_coarse, description="local rows + every coarse candidate")
register_method("coda", _coda, description="local rows + the candidates its sample classifier keeps")
register_method("mpda", _local_only, start=_mpda_start,
                description="MPDA (KDD 2022): matched users' rows kept if the local AUC improves, then local rows")
register_method("coarse-subset", _coarse_subset,
                description="local rows + a random subset of the candidates as large as coda keeps (no selection)")
register_method("oracle-filter", _oracle_filter, reference="planted",
                description="reference: local rows + exactly the candidates of the user's own planted group")
register_method("oracle-filter-fresh", _oracle_filter_fresh, reference="shift",
                description="reference: local rows + the own-group candidates at or after the planted shift")

CONTROLS = ("coarse-subset",)
"""Controls every run with coda adds (after the listed methods)."""


def run_methods(methods: tuple[str, ...], planted: bool, shift: bool) -> tuple[str, ...]:
    """The lanes a run has: ``methods``, then the controls (when coda runs) and the reference lanes the world
    supports (``oracle-filter`` on a planted world, ``oracle-filter-fresh`` where it has a shift), each once.

    Raises:
      ValueError: a listed reference lane the world cannot support (it would read an answer nobody knows).
    """
    for name in methods:
        need = get_method(name).reference
        if (need == "planted" and not planted) or (need == "shift" and not shift):
            raise ValueError(f"methods: {name!r} needs a planted world{' with a shift' if need == 'shift' else ''} "
                             "(it fine-tunes on the rows the planted answer marks)")
    extra = list(CONTROLS) if "coda" in methods else []
    extra += [m for m, need in (("oracle-filter", planted), ("oracle-filter-fresh", shift)) if need]
    return tuple(methods) + tuple(m for m in extra if m not in methods)
