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


def profile_field(f: dict, num_profiles: int, features: int, suffix: str, init=nn.initializers.zeros) -> jnp.ndarray:
    """The row owner's profile attribute embedded: ``profile_{suffix}`` [num_profiles + 1, features] at
    ``f["profile"]`` [B] (0 = unknown, embedded as zeros): float [B, features]."""
    table = nn.Embed(num_profiles + 1, features, embedding_init=init, name=f"profile_{suffix}")
    return table(f["profile"]) * (f["profile"] > 0)[..., None]


class MLP(nn.Module):
    """ReLU MLP; returns the last hidden activation [..., hidden[-1]]."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"dense_{i}")(x))
        return x


FEATURES = ("user", "item", "genres", "hist_pos", "hist_neg")
"""The feature dict every CTR model reads (int32 ids): ``user`` [B], ``item`` [B], ``genres`` [B, G] (0 pads),
``hist_pos`` / ``hist_neg`` [B, L] liked / disliked history items (0 pads). Where the data has a profile
attribute, also ``profile`` [B] (the row owner's, ``1..num_profiles``, 0 = unknown): a model with a
``num_profiles`` field reads it (:func:`profile_field`), one without ignores it."""


def tiny_features(batch: int, num_users: int, num_items: int, num_genres: int) -> dict:
    """A small valid feature dict of ``batch`` samples (2 genres, history 3), for checking a model's shapes."""
    ids = jnp.arange(batch, dtype=jnp.int32)
    return {"user": ids % num_users, "item": ids % num_items + 1,
            "genres": jnp.stack([ids % num_genres + 1, jnp.zeros_like(ids)], axis=1),
            "hist_pos": jnp.stack([(ids + k) % num_items + 1 for k in range(3)], axis=1),
            "hist_neg": jnp.zeros((batch, 3), jnp.int32)}


def with_profiles(module: nn.Module, num_profiles: int) -> nn.Module:
    """``module`` reading the ``profile`` feature of ``num_profiles`` attribute values (a model with a
    ``num_profiles`` field: every built-in one); unchanged where ``num_profiles`` is 0 or it has no such field."""
    if num_profiles and hasattr(module, "num_profiles"):
        return module.clone(num_profiles=num_profiles)
    return module
