"""Wide & Deep CTR model: a linear model over raw and cross-product features plus an MLP over embeddings."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from coda_jax.models.features import EMBED_INIT, MLP
from coda_jax.models.lr import FieldModel, embed_fields, first_order


def cross_with_genres(weights: jnp.ndarray, genres: jnp.ndarray, mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean cross-product weight of rows x target genres.

    Args:
      weights: [B, K, num_genres + 1] each of K rows' weight for every genre id (e.g. one user, L history items).
      genres: int [B, G] target genre ids, 0 = padding.
      mask: bool [B, K] valid rows (None = all valid).

    Returns:
      [B], the mean of ``weights[b, k, genres[b, g]]`` over valid rows k and non-padding slots g; 0 where
      there is none. Computed against the genre-count vector (no gather, so no scatter in the gradient).
    """
    counts = (jax.nn.one_hot(genres, weights.shape[-1], dtype=weights.dtype) * (genres > 0)[..., None]).sum(-2)
    per_row = jnp.einsum("bkg,bg->bk", weights, counts)                                  # [B, K] sums over slots
    rows = jnp.ones(weights.shape[:2], weights.dtype) if mask is None else mask.astype(weights.dtype)
    return (per_row * rows).sum(-1) / jnp.maximum(rows.sum(-1) * counts.sum(-1), 1.0)


class WideDeep(FieldModel):
    """Wide & Deep over the five fields of :mod:`coda_jax.models.lr` (user, target item, target genres, liked /
    disliked history).

    Wide part (a linear model, zero-initialised): the per-field first-order terms plus three cross-product
    features with the target's genres -- user x genre (``user_genre_cross`` [num_users, num_genres + 1]),
    liked item x genre (``item_pos_genre_cross`` [num_items + 1, num_genres + 1]) and disliked item x genre
    (``item_neg_genre_cross``), each the mean weight over the (row, genre) pairs present.
    Deep part: an MLP over the concatenated field embeddings (``user_embed``, ``item_embed``,
    ``genre_embed``; the histories use ``item_embed``) and a final ``out`` layer.

    Call with a feature dict (``user`` [B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` [B, L],
    ``hist_neg`` [B, L]); returns ``(logit [B], representation [B, hidden[-1]])``, the representation being
    the deep part's last hidden layer.
    """

    @nn.compact
    def __call__(self, f: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        zeros = nn.initializers.zeros
        width = self.num_genres + 1
        user_x = nn.Embed(self.num_users, width, embedding_init=zeros, name="user_genre_cross")
        pos_x = nn.Embed(self.num_items + 1, width, embedding_init=zeros, name="item_pos_genre_cross")
        neg_x = nn.Embed(self.num_items + 1, width, embedding_init=zeros, name="item_neg_genre_cross")
        genres = f["genres"]
        wide = (first_order(f, self).sum(-1)
                + cross_with_genres(user_x(f["user"])[:, None, :], genres)
                + cross_with_genres(pos_x(f["hist_pos"]), genres, f["hist_pos"] > 0)
                + cross_with_genres(neg_x(f["hist_neg"]), genres, f["hist_neg"] > 0))             # [B]
        v = embed_fields(f, self, self.embed_dim, "embed",
                         init=EMBED_INIT)                                                          # [B, F, d]
        rep = MLP(self.hidden, name="mlp")(v.reshape(*v.shape[:-2], -1))                           # [B, H]
        deep = nn.Dense(1, name="out")(rep)[..., 0]
        bias = self.param("bias", nn.initializers.zeros, ())
        return bias + wide + deep, rep
