"""Logistic regression CTR model, and the five-field feature embedding every non-DIN model shares.

The feature set (same for every model): five fields

====  =========  ==================================================================
 #    field      value
====  =========  ==================================================================
 0    user       the user's row
 1    item       the target item's row
 2    genre      masked mean over the target's genres (id 0 = padding)
 3    liked      masked mean over the liked history (``hist_pos``, id 0 = padding)
 4    disliked   masked mean over the disliked history (``hist_neg``, id 0 = padding)
====  =========  ==================================================================

Where the data has a profile attribute (``num_profiles > 0`` and a ``profile`` feature, the row owner's
attribute ``1..num_profiles``, 0 = unknown), it is a sixth field, ``profile``, with its own table
(``profile_{suffix}``, a dense parameter: every device copies it whole).

Tables are created at the top level of the calling module with names following the convention of
:mod:`coda_jax.models.features` (``item_*``, ``user_*``, ``genre_*``), so the device's local-vocabulary copy
(:func:`coda_jax.device.submodel.localize_params`) gathers every one of them.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from coda_jax.models.features import masked_mean, profile_field

FIELDS = ("user", "item", "genre", "liked", "disliked")
"""Names of the five feature fields, in the order of the field axis of :func:`embed_fields` (then ``profile``
where the data has one)."""


def embed_fields(f: dict, sizes, features: int, suffix: str, init=nn.initializers.zeros,
                 separate_history: bool = False) -> jnp.ndarray:
    """Embed the five feature fields; call only inside a compact method (tables become its top-level params).

    Args:
      f: feature dict, ``user`` [B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` [B, L], ``hist_neg`` [B, L].
      sizes: the vocabulary sizes, its ``num_users``, ``num_items`` and ``num_genres`` (the calling module;
        tables have ``num_users``, ``num_items + 1`` and ``num_genres + 1`` rows), and ``num_profiles`` where
        it has one (profile attributes, ``f["profile"]`` [B], ``1..num_profiles``; 0 or absent: no profile field).
      features: width of every table row.
      suffix: table names are ``user_{suffix}``, ``item_{suffix}``, ``genre_{suffix}`` (and
        ``item_pos_{suffix}``, ``item_neg_{suffix}`` with ``separate_history``).
      init: initialiser of every table.
      separate_history: give the liked and disliked history their own item tables (as a linear model over
        bag-of-items features needs: one weight per item *per field*); otherwise they share the target's.

    Returns:
      float [B, F, features], fields in the order of :data:`FIELDS` (F = 5), then the profile (F = 6).
    """
    num_users, num_items, num_genres = sizes.num_users, sizes.num_items, sizes.num_genres
    num_profiles = getattr(sizes, "num_profiles", 0)
    users = nn.Embed(num_users, features, embedding_init=init, name=f"user_{suffix}")
    items = nn.Embed(num_items + 1, features, embedding_init=init, name=f"item_{suffix}")
    genres = nn.Embed(num_genres + 1, features, embedding_init=init, name=f"genre_{suffix}")
    if separate_history:
        liked_items = nn.Embed(num_items + 1, features, embedding_init=init, name=f"item_pos_{suffix}")
        disliked_items = nn.Embed(num_items + 1, features, embedding_init=init, name=f"item_neg_{suffix}")
    else:
        liked_items = disliked_items = items
    fields = [
        users(f["user"]),
        items(f["item"]),
        masked_mean(genres(f["genres"]), f["genres"] > 0),
        masked_mean(liked_items(f["hist_pos"]), f["hist_pos"] > 0),
        masked_mean(disliked_items(f["hist_neg"]), f["hist_neg"] > 0),
    ]
    if num_profiles:
        fields.append(profile_field(f, num_profiles, features, suffix, init))
    return jnp.stack(fields, axis=-2)


def first_order(f: dict, sizes) -> jnp.ndarray:
    """Per-field first-order (linear) terms: float [B, F], fields in the order of :data:`FIELDS` (F = 5; 6 with
    a profile).

    Width-1 zero-initialised tables ``user_bias``, ``item_bias``, ``genre_bias``, ``item_pos_bias``,
    ``item_neg_bias`` (the histories get their own weights per item), and ``profile_bias`` with a profile.
    Call only inside a compact method.
    """
    return embed_fields(f, sizes, 1, "bias", separate_history=True)[..., 0]


class LR(nn.Module):
    """Logistic regression over the five fields (user, target item, target genres, liked / disliked bags).

    Call with a feature dict (``user`` [B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` [B, L],
    ``hist_neg`` [B, L]; ``profile`` [B] where ``num_profiles > 0``); returns ``(logit [B], representation
    [B, F])``: the logit is the global ``bias`` plus the sum of the per-field first-order terms, and the
    representation is those F terms (5, or 6 with the profile's; the only features a linear model has; used by
    the cloud as the sample vector for matching).
    """

    num_users: int
    num_items: int
    num_genres: int
    num_profiles: int = 0

    @nn.compact
    def __call__(self, f: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        terms = first_order(f, self)                                               # [B, F]
        bias = self.param("bias", nn.initializers.zeros, ())
        return terms.sum(-1) + bias, terms


class FieldModel(nn.Module):
    """Configuration shared by the models over the five field embeddings (DeepFM, Wide & Deep, PNN)."""

    num_users: int
    num_items: int
    num_genres: int
    embed_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)
    num_profiles: int = 0          # > 0: a profile attribute field (``f["profile"]``), see embed_fields
