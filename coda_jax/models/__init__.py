"""CTR models (flax). Every model maps a feature dict to ``(logit [B], representation [B, H])``."""

from __future__ import annotations

import flax.linen as nn

from coda_jax.config import ModelConfig
from coda_jax.models.deepfm import DeepFM
from coda_jax.models.din import DIN
from coda_jax.models.features import param_group
from coda_jax.models.lr import LR
from coda_jax.models.pnn import PNN
from coda_jax.models.wide_deep import WideDeep


def make_model(cfg: ModelConfig, num_users: int, num_items: int, num_genres: int, num_profiles: int = 0) -> nn.Module:
    """Build the CTR model named by ``cfg.name`` for the given vocabulary sizes (``num_profiles`` > 0: the rows
    carry a ``profile`` attribute, a feature of every model)."""
    if cfg.name == "din":
        return DIN(num_users=num_users, num_items=num_items, num_genres=num_genres, embed_dim=cfg.embed_dim,
                   hidden=tuple(cfg.hidden), attention_hidden=cfg.attention_hidden, num_profiles=num_profiles)
    if cfg.name == "lr":
        return LR(num_users=num_users, num_items=num_items, num_genres=num_genres, num_profiles=num_profiles)
    deep = {"deepfm": DeepFM, "wide_deep": WideDeep, "pnn": PNN}
    if cfg.name in deep:
        return deep[cfg.name](num_users=num_users, num_items=num_items, num_genres=num_genres,
                              embed_dim=cfg.embed_dim, hidden=tuple(cfg.hidden), num_profiles=num_profiles)
    raise ValueError(f"model.name: unknown model {cfg.name!r}")


__all__ = ["DIN", "LR", "PNN", "DeepFM", "WideDeep", "make_model", "param_group"]
