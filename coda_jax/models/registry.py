"""The model and classifier registries: ``model.name`` and ``classifier.kind`` names and the flax modules they
build.

A CTR model is a flax module factory ``(ModelConfig, num_users, num_items, num_genres) -> nn.Module``; the
module maps the feature dict of a batch of ``B`` samples (:data:`coda_jax.models.features.FEATURES`: ``user``
[B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` / ``hist_neg`` [B, L], int32 ids, 0 = padding for items and
genres) to ``(logit float [B], representation float [B, H])``. It must have ``num_users`` and ``num_items``
fields (a device's copy is ``module.clone(num_items=V - 1, num_users=Vu)``) and name its top-level parameters
by the convention of :mod:`coda_jax.models.features` (``item_*``, ``user_*``, ``genre_*`` tables; the rest are
dense), so the device's local-vocabulary copy gathers its tables.

A sample classifier is a factory ``ClassifierConfig -> nn.Module`` (reading the config's structure, e.g.
``hidden``, never its traced numbers); the module maps sample vectors float [..., D] to logits [...] (high =
local-like). Built in: ``logreg``, ``mlp`` (:class:`~coda_jax.models.classifier.SampleClassifier`).

Both register functions build the module once and run it through ``jax.eval_shape`` on a tiny input.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from coda_jax.config import ClassifierConfig, ModelConfig
from coda_jax.models.classifier import SampleClassifier
from coda_jax.models.deepfm import DeepFM
from coda_jax.models.din import DIN
from coda_jax.models.features import tiny_features, with_profiles
from coda_jax.models.lr import LR
from coda_jax.models.pnn import PNN
from coda_jax.models.wide_deep import WideDeep
from coda_jax.registry import Registry, RegistryError, check_callable, expect, expect_hashable, on_tiny_input

MODELS: Registry[Callable] = Registry("register_model", "model.name", "model")
CLASSIFIERS: Registry[Callable] = Registry("register_classifier", "classifier.kind", "classifier")


def check_model(where: str, factory: Callable) -> nn.Module:
    """Build ``factory``'s module for a tiny vocabulary and run it on 2 samples (abstractly): it must return
    ``(logit [2], representation [2, H])`` and survive a device's ``clone``; returns the module."""
    check_callable(where, "the model factory", factory, 4)
    sizes = {"num_users": 5, "num_items": 7, "num_genres": 3}
    module = on_tiny_input(where, "the model factory", lambda: factory(ModelConfig(), *sizes.values()))
    expect(where, isinstance(module, nn.Module), f"the model factory must return a flax module, got "
                                                 f"{type(module).__name__}")
    expect_hashable(where, "the model module", module)
    for field in ("num_users", "num_items"):
        expect(where, hasattr(module, field), f"the model must have a {field!r} field (a device copy clones it "
                                              "with its own vocabulary sizes)")
    feats = tiny_features(2, sizes["num_users"], sizes["num_items"], sizes["num_genres"])

    def run(m):
        params = m.init(jax.random.PRNGKey(0), feats)["params"]
        return m.apply({"params": params}, feats)

    for m in (module, on_tiny_input(where, "clone(num_items=, num_users=)",
                                    lambda: module.clone(num_items=sizes["num_items"], num_users=2))):
        out = on_tiny_input(where, "the model", lambda m=m: jax.eval_shape(lambda: run(m)))
        expect(where, isinstance(out, tuple) and len(out) == 2,
               f"the model must return (logit, representation), got {type(out).__name__}")
        logit, rep = out
        expect(where, tuple(logit.shape) == (2,) and jnp.issubdtype(logit.dtype, jnp.floating),
               f"the model's logit must be float [B] (2 here), got {logit.dtype} {tuple(logit.shape)}")
        expect(where, len(rep.shape) == 2 and rep.shape[0] == 2 and jnp.issubdtype(rep.dtype, jnp.floating),
               f"the model's representation must be float [B, H] (B = 2 here), got {rep.dtype} {tuple(rep.shape)}")
    return module


def register_model(name: str, factory: Callable, *, replace: bool = False) -> Callable:
    """Register a CTR model factory ``(ModelConfig, num_users, num_items, num_genres) -> nn.Module`` (see the
    module docstring) as ``model.name: <name>``; checked on a tiny input first. Returns the factory."""
    check_model(MODELS.where(name), factory)
    return MODELS.add(name, factory, replace)


def make_model(cfg: ModelConfig, num_users: int, num_items: int, num_genres: int, num_profiles: int = 0) -> nn.Module:
    """Build the CTR model named by ``cfg.name`` for the given vocabulary sizes (``num_profiles`` > 0: the rows
    carry a ``profile`` attribute, a feature of every model that has a ``num_profiles`` field:
    :func:`~coda_jax.models.features.with_profiles`)."""
    return with_profiles(MODELS.get(cfg.name)(cfg, num_users, num_items, num_genres), num_profiles)


def check_classifier(where: str, factory: Callable) -> nn.Module:
    """Build ``factory``'s classifier from the default config and run it on 5 vectors of width 4 (abstractly):
    it must return logits [5]; returns the module."""
    check_callable(where, "the classifier factory", factory, 1)
    module = on_tiny_input(where, "the classifier factory", lambda: factory(ClassifierConfig()))
    expect(where, isinstance(module, nn.Module), f"the classifier factory must return a flax module, got "
                                                 f"{type(module).__name__}")
    expect_hashable(where, "the classifier module", module)
    x = jnp.zeros((5, 4), jnp.float32)
    out = on_tiny_input(where, "the classifier", lambda: jax.eval_shape(
        lambda: module.apply(module.init(jax.random.PRNGKey(0), x), x)))
    expect(where, hasattr(out, "shape") and tuple(out.shape) == (5,) and jnp.issubdtype(out.dtype, jnp.floating),
           f"the classifier must map vectors [N, D] to float logits [N] (5 here), got "
           f"{getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}")
    return module


def register_classifier(name: str, factory: Callable, *, replace: bool = False) -> Callable:
    """Register a sample classifier factory ``ClassifierConfig -> nn.Module`` (vectors [..., D] -> logits
    [...]) as ``classifier.kind: <name>``; checked on a tiny input first. Returns the factory."""
    check_classifier(CLASSIFIERS.where(name), factory)
    return CLASSIFIERS.add(name, factory, replace)


def make_classifier(cfg: ClassifierConfig) -> nn.Module:
    """The sample classifier module named by ``cfg.kind``."""
    return CLASSIFIERS.get(cfg.kind)(cfg)


def _deep(cls):
    return lambda cfg, u, i, g: cls(num_users=u, num_items=i, num_genres=g, embed_dim=cfg.embed_dim,
                                    hidden=tuple(cfg.hidden))


for _name, _factory in {
    "din": lambda cfg, u, i, g: DIN(num_users=u, num_items=i, num_genres=g, embed_dim=cfg.embed_dim,
                                    hidden=tuple(cfg.hidden), attention_hidden=cfg.attention_hidden),
    "lr": lambda cfg, u, i, g: LR(num_users=u, num_items=i, num_genres=g),
    "deepfm": _deep(DeepFM), "wide_deep": _deep(WideDeep), "pnn": _deep(PNN),
}.items():
    MODELS.add(_name, _factory)          # built in: checked by tests/test_models.py, not at every import
for _kind in ("logreg", "mlp"):
    CLASSIFIERS.add(_kind, lambda cfg, kind=_kind: SampleClassifier(kind=kind, hidden=cfg.hidden))

__all__ = ["CLASSIFIERS", "MODELS", "RegistryError", "make_classifier", "make_model", "register_classifier",
           "register_model"]
