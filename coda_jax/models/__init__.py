"""CTR models (flax). Every model maps a feature dict to ``(logit [B], representation [B, H])``; the registry
of model and classifier names is :mod:`coda_jax.models.registry`."""

from __future__ import annotations

from coda_jax.models.deepfm import DeepFM
from coda_jax.models.din import DIN
from coda_jax.models.features import param_group
from coda_jax.models.lr import LR
from coda_jax.models.pnn import PNN
from coda_jax.models.registry import make_classifier, make_model, register_classifier, register_model
from coda_jax.models.wide_deep import WideDeep

__all__ = ["DIN", "LR", "PNN", "DeepFM", "WideDeep", "make_classifier", "make_model", "param_group",
           "register_classifier", "register_model"]
