"""Inner-product PNN (IPNN) CTR model: an MLP over field embeddings and their pairwise inner products."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from coda_jax.models.features import EMBED_INIT, MLP
from coda_jax.models.lr import FieldModel, embed_fields


def pairwise_inner(v: jnp.ndarray) -> jnp.ndarray:
    """Inner products of every pair of fields ``i < j`` of ``v`` [..., F, d]: returns [..., F (F - 1) / 2]."""
    gram = jnp.einsum("...fd,...gd->...fg", v, v)
    i, j = np.triu_indices(v.shape[-2], k=1)
    return gram[..., i, j]


class PNN(FieldModel):
    """IPNN over the five fields of :mod:`coda_jax.models.lr` (user, target item, target genres, liked /
    disliked history).

    The product layer is the concatenation of the linear signal (the field embeddings ``user_embed``,
    ``item_embed``, ``genre_embed``; the histories use ``item_embed``; [B, 5 d]) and the quadratic signal (the
    10 pairwise inner products [B, 10]); its first dense layer is PNN's ``l_z + l_p + b``; an MLP and a
    final ``out`` layer follow.

    Call with a feature dict (``user`` [B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` [B, L],
    ``hist_neg`` [B, L]); returns ``(logit [B], representation [B, hidden[-1]])``, the representation being
    the last hidden layer.
    """

    @nn.compact
    def __call__(self, f: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        v = embed_fields(f, self, self.embed_dim, "embed",
                         init=EMBED_INIT)                                                          # [B, F, d]
        x = jnp.concatenate([v.reshape(*v.shape[:-2], -1), pairwise_inner(v)], axis=-1)           # [B, F d + F(F-1)/2]
        rep = MLP(self.hidden, name="mlp")(x)                                                      # [B, H]
        logit = nn.Dense(1, name="out")(rep)[..., 0]
        return logit, rep
