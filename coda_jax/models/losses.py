"""Losses of the CTR models and the sample classifier (sigmoid cross-entropy on logits).

Every loss is a pure function of a flax module, its parameter dict and one batch; the cloud's pretraining
(:mod:`coda_jax.cloud.pretrain`) and the device's classifier and fine-tuning (:mod:`coda_jax.device.train`)
take them from here.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax


def bce_loss(model: nn.Module, params, features: dict, labels: jnp.ndarray,
             weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean (optionally weighted) sigmoid cross-entropy of ``model`` on a batch; labels [B], weights [B]."""
    logits, _ = model.apply({"params": params}, features)
    losses = optax.sigmoid_binary_cross_entropy(logits, labels)
    if weights is None:
        return losses.mean()
    return (losses * weights).sum() / jnp.maximum(weights.sum(), 1e-9)


def weighted_loss(model: nn.Module, params: dict, features: dict, labels: jnp.ndarray,
                  weights: jnp.ndarray) -> jnp.ndarray:
    """``sum(weights * cross-entropy)`` of ``model`` on a batch [B] (weights already normalised, see
    :mod:`coda_jax.device.sampler`)."""
    logits, _ = model.apply({"params": params}, features)
    return jnp.sum(weights * optax.sigmoid_binary_cross_entropy(logits, labels))


def classifier_loss(model: nn.Module, params, x: jnp.ndarray, y: jnp.ndarray, w: jnp.ndarray,
                    l2: float) -> jnp.ndarray:
    """Weighted cross-entropy of the sample classifier plus an L2 penalty: x [N, D], y [N], w [N] -> scalar."""
    logits = model.apply({"params": params}, x)
    penalty = sum(jnp.sum(t ** 2) for t in jax.tree_util.tree_leaves(params))
    return 0.5 * jnp.sum(w * optax.sigmoid_binary_cross_entropy(logits, y)) + l2 * penalty
