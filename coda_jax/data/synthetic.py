"""Synthetic interaction logs, deterministic by seed: the planted world (a known answer) and the older groups world.

Planted world (``synthetic.world: planted``, :func:`generate_planted`): the structure CoDA assumes, with every
row's true click logit stored, so a run can add reference rows (``oracle``, ``group-oracle``, ``stale-oracle``,
``mixture``, ``popularity``; :func:`reference_logits`) computed on the same test rows as the methods.

Groups world (``synthetic.world: groups``, the generator before the planted world). Generative story (all
sizes from :class:`coda_jax.config.SyntheticConfig`):

* every item belongs to one of ``C`` clusters; a cluster has a main genre, and an item adds one random
  genre; items have a popularity offset;
* every user belongs to one of ``R`` groups; a group has its own taste over clusters, and every user
  deviates from its group's taste by a personal offset and drifts over time, so one global model is not
  the best model for any single user, and the users of one group share data that helps each other;
* a user's exposure (which items it rates) follows its taste softly (users mostly see what their group
  likes), and each rating is a Bernoulli draw of ``sigmoid(base + taste(user, cluster, t) + popularity)``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from coda_jax.config import SyntheticConfig
from coda_jax.data.schema import Interactions


TIME_SCALE = 10 ** 9
"""Row times are ``floor(t * TIME_SCALE)`` for ``t`` in [0, 1)."""


@dataclasses.dataclass(frozen=True)
class PlantedWorld:
    """The parameters of a planted world (indexed by the generator's user index = dataset user id, and by
    0-based item index = item id - 1).

    Click logit of user ``u`` on item ``i`` at time ``t``: ``base + popularity[i] + taste[group[u], cluster[i]]
    + personal[u, cluster[i]] + shift[group[u], cluster[i]] * (t >= shift_time)``.
    """

    group: np.ndarray          # int [U]
    cluster: np.ndarray        # int [I]
    popularity: np.ndarray     # float [I]
    taste: np.ndarray          # float [G, C]
    personal: np.ndarray       # float [U, C]
    shift: np.ndarray          # float [G, C]
    base: float
    shift_time: int            # in row-time units (t * TIME_SCALE)

    @property
    def num_groups(self) -> int:
        return int(self.taste.shape[0])


REFERENCES = ("oracle", "group-oracle", "stale-oracle", "mixture", "popularity")
"""Reference scorers of a planted world, best-informed first."""


def reference_logits(world: PlantedWorld, user_id: np.ndarray, item: np.ndarray, time: np.ndarray) -> dict:
    """Each reference's score of rows ``(user_id, item id, time)``: ``{name: float [n]}``.

    ``oracle``: the true logit. ``group-oracle``: without the personal offset (the best a group-level model can
    know). ``stale-oracle``: the group model before the shift (the best a cloud model trained before
    ``shift_time`` can know). ``mixture``: the logit of the group-size-weighted mean click probability over
    groups (a model that cannot tell groups apart). ``popularity``: the item's popularity.
    """
    g = world.group[user_id]
    c = world.cluster[item - 1]
    b = world.popularity[item - 1]
    on = (time >= world.shift_time).astype(np.float64)
    group_logit = world.base + b + world.taste[g, c] + world.shift[g, c] * on
    sizes = np.bincount(world.group, minlength=world.num_groups) / len(world.group)
    every = world.base + b[:, None] + world.taste[:, c].T + world.shift[:, c].T * on[:, None]     # [n, G]
    p = (sizes[None, :] / (1.0 + np.exp(-every))).sum(axis=1)
    return {"oracle": group_logit + world.personal[user_id, c], "group-oracle": group_logit,
            "stale-oracle": world.base + b + world.taste[g, c],
            "mixture": np.log(p) - np.log1p(-p), "popularity": b}


def generate_planted(cfg: SyntheticConfig, seed: int) -> Interactions:
    """Generate a planted world's log (see :class:`PlantedWorld`).

    Users fall into ``num_user_groups`` equal groups; items into ``num_item_clusters`` clusters, cluster ``c``
    having genre ``c % num_genres + 1``. Each user rates between ``min_rows_per_user`` and
    ``max_rows_per_user`` distinct items, drawn without replacement with weights ``exp(exposure * taste +
    popularity)`` (its pre-shift taste: users of one group see overlapping items), at times uniform on [0, 1).
    Labels are Bernoulli draws of the sigmoid of the true logit, which the log stores (``logit``).
    """
    rng = np.random.default_rng(seed)
    n_users, n_items, n_clusters, n_groups = cfg.num_users, cfg.num_items, cfg.num_item_clusters, cfg.num_user_groups
    cluster = rng.integers(0, n_clusters, size=n_items)
    genres = np.zeros((n_items + 1, 1), dtype=np.int32)
    genres[1:, 0] = cluster % cfg.num_genres + 1
    popularity = rng.normal(0.0, cfg.item_scale, size=n_items)
    group = rng.permutation(np.arange(n_users) % n_groups)
    taste = rng.normal(0.0, cfg.taste_scale, size=(n_groups, n_clusters))
    personal = rng.normal(0.0, cfg.personal_scale, size=(n_users, n_clusters))
    shift = rng.normal(0.0, cfg.shift_scale, size=(n_groups, n_clusters))
    n_rows = rng.integers(cfg.min_rows_per_user, cfg.max_rows_per_user + 1, size=n_users)
    top = np.empty((n_users, cfg.max_rows_per_user), dtype=np.int64)
    for start in range(0, n_users, 1024):          # bounded memory: [1024, I] keys at a time
        sl = slice(start, start + 1024)
        k = (cfg.exposure * (taste[group[sl]] + personal[sl])[:, cluster] + popularity[None, :]
             + rng.gumbel(size=(len(group[sl]), n_items)))
        top[sl] = np.argsort(-k, axis=1)[:, : cfg.max_rows_per_user]
    take = np.arange(cfg.max_rows_per_user)[None, :] < n_rows[:, None]
    user = np.broadcast_to(np.arange(n_users)[:, None], top.shape)[take]
    item0 = top[take]
    time = np.floor(rng.random(size=item0.shape[0]) * TIME_SCALE).astype(np.int64)
    world = PlantedWorld(group=group, cluster=cluster, popularity=popularity, taste=taste, personal=personal,
                         shift=shift, base=float(cfg.base_logit), shift_time=int(round(cfg.shift_time * TIME_SCALE)))
    logit = reference_logits(world, user, item0 + 1, time)["oracle"]
    label = (rng.random(size=item0.shape[0]) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return Interactions(
        user=user.astype(np.int32), item=(item0 + 1).astype(np.int32), label=label, time=time, item_genres=genres,
        user_ids=np.arange(n_users, dtype=np.int64), num_genres=cfg.num_genres, name=f"planted(seed={seed})",
        logit=logit, planted=world)


def generate(cfg: SyntheticConfig, seed: int) -> Interactions:
    """Generate the synthetic log of ``cfg.world`` (:func:`generate_planted` or :func:`generate_groups`)."""
    return generate_planted(cfg, seed) if cfg.world == "planted" else generate_groups(cfg, seed)


def generate_groups(cfg: SyntheticConfig, seed: int) -> Interactions:
    """Generate a groups-world interaction log.

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
