"""DIN (Deep Interest Network) CTR model: attention pooling of the liked / disliked history against the target."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from coda_jax.models.features import EMBED_INIT, MLP, masked_mean, profile_field


class _Kernel(nn.Module):
    """A bias-free dense layer's kernel, [in_features, features] (named like ``nn.Dense``'s, same init)."""

    features: int

    @nn.compact
    def __call__(self, in_features: int) -> jnp.ndarray:
        return self.param("kernel", nn.linear.default_kernel_init, (in_features, self.features))


class AttentionPool(nn.Module):
    """DIN activation unit: weights each history item by an MLP of (history, target) and pools.

    DIN's unit applies a dense layer to ``[h, t, h - t, h * t]``; that layer is linear, so it equals
    ``h @ A + t @ B + (h * t) @ C``, which is what this computes (same function class, about half the
    FLOPs: the target term is computed once per sample, not once per history slot). The two per-slot terms
    run as one product, ``[h, h * t] @ [A; C]``.

    Args (call): history [..., K, L, d] (K histories pooled against the same target, in one batch of
    matrix products), target [..., d], mask [..., K, L] (True = real item).
    Returns: pooled [..., K, d] (zeros where a history is empty).
    """

    hidden: int

    @nn.compact
    def __call__(self, history: jnp.ndarray, target: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
        d = history.shape[-1]
        t = target[..., None, None, :]
        kernel = jnp.concatenate([_Kernel(self.hidden, name="att_history")(d),
                                  _Kernel(self.hidden, name="att_product")(d)], axis=0)       # [2d, hidden]
        per_slot = jnp.concatenate([history, history * t], axis=-1) @ kernel
        z = per_slot + nn.Dense(self.hidden, name="att_target")(t)
        # no bias: a constant added to every slot's logit cancels in the softmax (it could never change the output)
        logits = nn.Dense(1, use_bias=False, name="att_out")(nn.relu(z))[..., 0]
        logits = jnp.where(mask, logits, -1e9)
        weights = nn.softmax(logits, axis=-1) * mask
        return (weights[..., None] * history).sum(-2)


class DIN(nn.Module):
    """DIN over user, target item, its genres, and liked / disliked history.

    Call with a feature dict (``user`` [B], ``item`` [B], ``genres`` [B, G], ``hist_pos`` [B, L],
    ``hist_neg`` [B, L]; ``profile`` [B] where ``num_profiles > 0``: its embedding ``profile_embed`` joins the
    MLP's input); returns ``(logit [B], representation [B, hidden[-1]])``. The representation is the
    last hidden layer, used by the cloud as the sample vector for matching.
    """

    num_users: int
    num_items: int
    num_genres: int
    embed_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)
    attention_hidden: int = 32
    num_profiles: int = 0

    @nn.compact
    def __call__(self, f: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        items = nn.Embed(self.num_items + 1, self.embed_dim, embedding_init=EMBED_INIT, name="item_embed")
        users = nn.Embed(self.num_users, self.embed_dim, embedding_init=EMBED_INIT, name="user_embed")
        target = items(f["item"])
        genres = nn.Embed(self.num_genres + 1, self.embed_dim, embedding_init=EMBED_INIT, name="genre_embed")
        genre = masked_mean(genres(f["genres"]), f["genres"] > 0)
        history = jnp.stack([f["hist_pos"], f["hist_neg"]], axis=-2)                  # [B, 2, L]
        pooled = AttentionPool(self.attention_hidden, name="attention")(items(history), target, history > 0)
        parts = [users(f["user"]), target, genre, pooled[..., 0, :], pooled[..., 1, :]]
        if self.num_profiles:
            parts.append(profile_field(f, self.num_profiles, self.embed_dim, "embed", EMBED_INIT))
        x = jnp.concatenate(parts, axis=-1)
        rep = MLP(self.hidden, name="mlp")(x)
        logit = nn.Dense(1, name="out")(rep)[..., 0]
        return logit, rep
