"""DeepFM CTR model: a factorisation machine and an MLP over shared field embeddings."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from coda_jax.models.features import EMBED_INIT, MLP
from coda_jax.models.lr import FieldModel, embed_fields, first_order


def fm_interaction(v: jnp.ndarray) -> jnp.ndarray:
    """FM second-order term ``sum_{i<j} <v_i, v_j>`` of field embeddings ``v`` [..., F, d]: returns [...]."""
    square_of_sum = jnp.square(v.sum(-2))
    sum_of_squares = jnp.square(v).sum(-2)
    return 0.5 * (square_of_sum - sum_of_squares).sum(-1)


class DeepFM(FieldModel):
    """DeepFM over the five fields of :mod:`coda_jax.models.lr` (user, target item, target genres, liked /
    disliked history).

    ``logit = bias + first-order terms + FM(pairwise inner products of the field embeddings)
    + out(MLP(concatenated field embeddings))``; the FM and deep parts share the embeddings
    (``user_embed``, ``item_embed``, ``genre_embed``; the histories use ``item_embed``).

    Call with a feature dict (``user`` [B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` [B, L],
    ``hist_neg`` [B, L]); returns ``(logit [B], representation [B, hidden[-1]])``, the representation being
    the deep part's last hidden layer.
    """

    @nn.compact
    def __call__(self, f: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        linear = first_order(f, self).sum(-1)             # [B]
        v = embed_fields(f, self, self.embed_dim, "embed",
                         init=EMBED_INIT)                                                            # [B, F, d]
        fm = fm_interaction(v)                                                                       # [B]
        rep = MLP(self.hidden, name="mlp")(v.reshape(*v.shape[:-2], -1))                             # [B, H]
        deep = nn.Dense(1, name="out")(rep)[..., 0]
        bias = self.param("bias", nn.initializers.zeros, ())
        return bias + linear + fm + deep, rep
