"""A synthetic interaction log with real heterogeneity, deterministic by seed.

Generative story (all sizes from :class:`coda_jax.config.SyntheticConfig`):

* every item belongs to one of ``C`` clusters; a cluster has a main genre, and an item adds one random
  genre; items have a popularity offset;
* every user belongs to one of ``R`` groups; a group has its own taste over clusters, and every user
  deviates from its group's taste by a personal offset and drifts over time, so one global model is not
  the best model for any single user, and the users of one group share data that helps each other;
* a user's exposure (which items it rates) follows its taste softly (users mostly see what their group
  likes), and each rating is a Bernoulli draw of ``sigmoid(base + taste(user, cluster, t) + popularity)``.
"""

from __future__ import annotations

import numpy as np

from coda_jax.config import SyntheticConfig
from coda_jax.data.schema import Interactions


def generate(cfg: SyntheticConfig, seed: int) -> Interactions:
    """Generate a synthetic interaction log.

    Args:
      cfg: sizes and scales.
      seed: the whole log is a deterministic function of ``(cfg, seed)``.

    Returns:
      :class:`Interactions` with ``num_users`` users, ``num_items`` items, ``num_genres`` genres and between
      ``min_rows_per_user`` and ``max_rows_per_user`` rows per user (each user rates an item at most once).
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, n_clusters = cfg.num_users, cfg.num_items, cfg.num_item_clusters
    # Items: cluster, main genre of the cluster plus one random genre, popularity.
    cluster = rng.integers(0, n_clusters, size=n_items)
    cluster_genre = rng.integers(1, cfg.num_genres + 1, size=n_clusters)
    genres = np.zeros((n_items + 1, 2), dtype=np.int32)
    genres[1:, 0] = cluster_genre[cluster]
    extra = rng.integers(1, cfg.num_genres + 1, size=n_items)
    genres[1:, 1] = np.where(extra == genres[1:, 0], 0, extra)
    popularity = rng.normal(0.0, cfg.item_scale, size=n_items)
    # Users: group taste + personal offset, and a drift direction.
    group = rng.integers(0, cfg.num_user_groups, size=n_users)
    group_taste = rng.normal(0.0, cfg.taste_scale, size=(cfg.num_user_groups, n_clusters))
    taste = group_taste[group] + rng.normal(0.0, cfg.personal_scale, size=(n_users, n_clusters))
    drift = rng.normal(0.0, cfg.drift, size=(n_users, n_clusters))
    # Exposure: each user rates n_u distinct items, drawn without replacement with weights
    # exp(0.5 * taste + popularity) (Gumbel top-k: one vectorized draw for all users).
    n_rows = rng.integers(cfg.min_rows_per_user, cfg.max_rows_per_user + 1, size=n_users)
    item_taste = taste[:, cluster]                                      # [U, I]
    keys = 0.5 * item_taste + popularity[None, :] + rng.gumbel(size=(n_users, n_items))
    top = np.argsort(-keys, axis=1)[:, : cfg.max_rows_per_user]         # [U, max_rows]
    take = np.arange(cfg.max_rows_per_user)[None, :] < n_rows[:, None]
    user = np.broadcast_to(np.arange(n_users)[:, None], top.shape)[take]
    item0 = top[take]                                                   # 0-based item index
    # Time: a random order of each user's rows over [0, 1).
    t = rng.random(size=item0.shape[0])
    logit = (cfg.base_logit + taste[user, cluster[item0]] + t * drift[user, cluster[item0]]
             + popularity[item0])
    label = (rng.random(size=item0.shape[0]) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return Interactions(
        user=user.astype(np.int32), item=(item0 + 1).astype(np.int32), label=label,
        time=(t * 1e9).astype(np.int64), item_genres=genres, user_ids=np.arange(n_users, dtype=np.int64),
        num_genres=cfg.num_genres, name=f"synthetic(seed={seed})")
