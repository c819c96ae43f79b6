"""The device's personalized sample classifier: local sample vs outside sample, on sample vectors."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


class SampleClassifier(nn.Module):
    """Logistic regression (``kind='logreg'``) or a one-hidden-layer MLP (``kind='mlp'``) on vectors.

    Call with vectors [..., D]; returns logits [...] (high = local-like).
    """

    kind: str = "logreg"
    hidden: int = 32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        if self.kind == "mlp":
            x = nn.relu(nn.Dense(self.hidden, name="hidden")(x))
        return nn.Dense(1, name="out")(x)[..., 0]
