"""Shared building blocks of the CTR models: embedding tables and pooling.

Parameter naming convention (the device's local-vocabulary copy relies on it, see
:mod:`coda_jax.device.submodel`): a top-level parameter collection whose name starts with

* ``item_``  is a table indexed by item id, shape ``[num_items + 1, ...]``;
* ``user_``  is a table indexed by user index, shape ``[num_users, ...]``;
* ``genre_`` is a table indexed by genre id, shape ``[num_genres + 1, ...]``;

everything else is a dense layer.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

EMBED_INIT = nn.initializers.normal(stddev=0.05)


def param_group(name: str) -> str:
    """The parameter group (``item``, ``user``, ``genre`` or ``dense``) of a top-level parameter name."""
    for group in ("item", "user", "genre"):
        if name.startswith(group + "_"):
            return group
    return "dense"


def masked_mean(x: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean of ``x`` [..., K, d] over K where ``mask`` [..., K] is True; zeros where nothing is valid."""
    m = mask[..., None].astype(x.dtype)
    return (x * m).sum(-2) / jnp.maximum(m.sum(-2), 1.0)


class MLP(nn.Module):
    """ReLU MLP; returns the last hidden activation [..., hidden[-1]]."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
        return x
