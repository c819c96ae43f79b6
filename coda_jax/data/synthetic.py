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
from coda_jax.data.profile import draw_profile
from coda_jax.data.schema import Interactions
from coda_jax.data.split import user_offsets


TIME_SCALE = 10 ** 9
"""Row times are ``floor(t * TIME_SCALE)`` for ``t`` in [0, 1)."""


@dataclasses.dataclass(frozen=True)
class PlantedWorld:
    """The parameters of a planted world (indexed by the generator's user index = dataset user id, and by
    0-based item index = item id - 1).

    Click logit of user ``u`` on item ``i`` at time ``t``: ``base + popularity[i] + taste[group[u], cluster[i]]
    + personal[u, cluster[i]] + shift[group[u], cluster[i]] * (t >= shift_time)``, plus :func:`user_offset`
    (``group_offset[group[u]] + profile_effect[profile[u]]``) in a world with antithetic pairs or a profile.
    """

    group: np.ndarray          # int [U]
    cluster: np.ndarray        # int [I]
    popularity: np.ndarray     # float [I]
    taste: np.ndarray          # float [G, C]
    personal: np.ndarray       # float [U, C]
    shift: np.ndarray          # float [G, C]
    base: float
    shift_time: int            # in row-time units (t * TIME_SCALE)
    group_offset: np.ndarray | None = None    # float [G] (antithetic: equalises the groups' click rates)
    profile: np.ndarray | None = None         # int [U] each user's profile attribute, 0-based (a group index)
    profile_effect: np.ndarray | None = None  # float [G] the attribute's own logit effect

    @property
    def num_groups(self) -> int:
        return int(self.taste.shape[0])

    @property
    def antithetic(self) -> bool:
        """Whether the groups come in antithetic pairs (``synthetic.antithetic``; group ``h``'s partner is
        ``h ^ 1``)."""
        return self.group_offset is not None


def user_offset(world: PlantedWorld, user_id: np.ndarray) -> np.ndarray:
    """The per-user constant of the logit: ``group_offset[group] + profile_effect[profile]`` (0 when the world
    has neither): float [n]. A constant per user never changes a per-user AUC."""
    out = np.zeros(np.shape(user_id))
    if world.group_offset is not None:
        out = out + world.group_offset[world.group[user_id]]
    if world.profile is not None:
        out = out + world.profile_effect[world.profile[user_id]]
    return out


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
    own = user_offset(world, user_id)
    group_logit = world.base + own + b + world.taste[g, c] + world.shift[g, c] * on
    sizes = np.bincount(world.group, minlength=world.num_groups) / len(world.group)
    every = world.base + b[:, None] + world.taste[:, c].T + world.shift[:, c].T * on[:, None]     # [n, G]
    if world.group_offset is not None:                                    # a group's offset goes with its taste
        every = every + world.group_offset[None, :]
    if world.profile is not None:                                         # the attribute is the user's own
        every = every + world.profile_effect[world.profile[user_id]][:, None]
    p = (sizes[None, :] / (1.0 + np.exp(-every))).sum(axis=1)
    return {"oracle": group_logit + world.personal[user_id, c], "group-oracle": group_logit,
            "stale-oracle": world.base + own + b + world.taste[g, c],
            "mixture": np.log(p) - np.log1p(-p), "popularity": b}


def rows_per_user(cfg: SyntheticConfig, rng: np.random.Generator) -> np.ndarray:
    """How many rows each generated user gets: int64 [num_users].

    ``rows_per_user: uniform``: uniform on ``[min_rows_per_user, max_rows_per_user]``. ``lognormal``: heavy-tailed
    like real logs (MovieLens 20M: median 68, mean 144 ratings per user, a long tail of heavy raters): a
    lognormal with median ``median_rows_per_user`` and mean ``mean_rows_per_user`` (before clipping to
    ``[min_rows_per_user, max_rows_per_user]``).
    """
    if cfg.rows_per_user == "uniform":
        return rng.integers(cfg.min_rows_per_user, cfg.max_rows_per_user + 1, size=cfg.num_users)
    mu = np.log(cfg.median_rows_per_user)
    sigma = np.sqrt(2.0 * max(np.log(cfg.mean_rows_per_user / cfg.median_rows_per_user), 0.0))
    n = np.round(rng.lognormal(mu, sigma, size=cfg.num_users)).astype(np.int64)
    return np.clip(n, cfg.min_rows_per_user, cfg.max_rows_per_user)


def _distinct_draws(rng: np.random.Generator, n_rows: np.ndarray, cluster_p: np.ndarray,
                    catalog: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Each user's ``n_rows[u]`` distinct items, drawn without replacement with probabilities ``cluster_p[u, c] *
    w_i / W_c`` for item ``i`` of cluster ``c`` (``w_i`` its weight, ``W_c`` its cluster's total).

    Draws with replacement (cluster by inverse CDF, then item within the cluster by inverse CDF) and keeps each
    user's first ``n`` distinct items: sequential sampling without replacement, the same law as Gumbel top-k,
    in O(rows) time and memory. Users short of ``n`` after a round draw again (their rows stay in draw order);
    a user whose exposure leaves fewer than ``n`` items reachable keeps what 16 rounds found.

    Args:
      n_rows: int [B] rows wanted per user of the block.
      cluster_p: float [B, C] each user's cluster probabilities (rows sum to 1).
      catalog: ``(cluster_start, cluster_cum, item_cum, item_order)``: int [C] first position of each cluster
        in ``item_order``; float [C + 1] ``item_cum`` at the cluster boundaries; float [I] cumulative weights
        of the items in ``item_order`` (clusters contiguous); int [I] item indices sorted by cluster.

    Returns:
      ``(owner int64 [R], item int64 [R])``: each draw's user (0..B-1, ascending; user ``b`` has ``n_rows[b]``
      rows, fewer only as said above) and 0-based item index, each user's items in draw order.
    """
    cluster_start, cluster_cum, item_cum, item_order = catalog
    n_items = item_order.shape[0]
    cluster_last = np.append(cluster_start[1:], n_items) - 1            # last position of each cluster
    n_clusters = cluster_p.shape[1]
    cdf = np.cumsum(cluster_p, axis=1)
    cdf[:, -1] = 1.0
    flat_cdf = (cdf + np.arange(n_rows.shape[0])[:, None]).ravel()      # user b's CDF shifted to [b, b + 1]
    owner = np.zeros(0, np.int64)
    item = np.zeros(0, np.int64)
    for round_ in range(16):
        have = np.bincount(owner, minlength=n_rows.shape[0])
        need = n_rows - have
        if not (need > 0).any():
            break
        draws = np.where(need > 0, need * 2 + 8, 0) << min(round_, 4)
        who = np.repeat(np.arange(n_rows.shape[0]), draws)
        c = np.searchsorted(flat_cdf, who + rng.random(who.shape[0]), side="right") - who * n_clusters
        c = np.minimum(c, n_clusters - 1)
        lo, hi = cluster_cum[c], cluster_cum[c + 1]
        pos = np.searchsorted(item_cum, lo + rng.random(who.shape[0]) * (hi - lo), side="right")
        pos = np.clip(pos, cluster_start[c], cluster_last[c])
        owner = np.concatenate([owner, who])
        item = np.concatenate([item, item_order[pos]])
        _, first = np.unique(owner * n_items + item, return_index=True)     # first draw of each (user, item)
        first.sort()                                                          # draw order = owner-major, then time
        owner, item = owner[first], item[first]
        order = np.argsort(owner, kind="stable")
        owner, item = owner[order], item[order]
        rank, _ = user_offsets(owner)                                         # position within the user's draws
        keep = rank < n_rows[owner]
        owner, item = owner[keep], item[keep]
    return owner, item


def generate_planted(cfg: SyntheticConfig, seed: int, block_users: int = 8192) -> Interactions:
    """Generate a planted world's log (see :class:`PlantedWorld`), in O(rows) time and memory.

    Users fall into ``num_user_groups`` equal groups; items into ``num_item_clusters`` clusters, cluster ``c``
    having genre ``c % num_genres + 1``. Each user rates :func:`rows_per_user` distinct items, drawn without
    replacement with weights ``exp(exposure * (taste + personal) + popularity)`` (its pre-shift taste: users of
    one group see overlapping items), at times uniform on [0, 1). Labels are Bernoulli draws of the sigmoid of
    the true logit, which the log stores (``logit``). Users are drawn ``block_users`` at a time.
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
    group_offset = None
    if cfg.antithetic:                                                    # group 2k+1 = minus group 2k
        taste[1::2], shift[1::2] = -taste[0::2], -shift[0::2]
        group_offset = balancing_offsets(cfg, taste, cluster, popularity)
    n_rows = rows_per_user(cfg, rng)
    profile, effect = draw_profile(cfg, group, rng) if cfg.profile else (None, None)
    item_order = np.argsort(cluster, kind="stable")
    weight = np.exp(popularity[item_order] - popularity.max())
    item_cum = np.cumsum(weight)
    cluster_start = np.searchsorted(cluster[item_order], np.arange(n_clusters))
    cluster_cum = np.concatenate([[0.0], item_cum])[np.append(cluster_start, n_items)]
    cluster_mass = np.diff(cluster_cum)                                   # W_c (0 for an empty cluster)
    users, items = [], []
    for start in range(0, n_users, block_users):
        sl = slice(start, min(start + block_users, n_users))
        logit = cfg.exposure * (taste[group[sl]] + personal[sl])
        p = np.exp(logit - logit.max(axis=1, keepdims=True)) * cluster_mass[None, :]
        owner, item = _distinct_draws(rng, n_rows[sl], p / p.sum(axis=1, keepdims=True),
                                      (cluster_start, cluster_cum, item_cum, item_order))
        users.append(owner + start)
        items.append(item)
    user = np.concatenate(users)
    item0 = np.concatenate(items)
    time = np.floor(rng.random(size=item0.shape[0]) * TIME_SCALE).astype(np.int64)
    world = PlantedWorld(group=group, cluster=cluster, popularity=popularity, taste=taste, personal=personal,
                         shift=shift, base=float(cfg.base_logit), shift_time=int(round(cfg.shift_time * TIME_SCALE)),
                         group_offset=group_offset, profile=profile, profile_effect=effect)
    g, c = group[user], cluster[item0]
    logit = (world.base + popularity[item0] + taste[g, c] + personal[user, c]
             + shift[g, c] * (time >= world.shift_time))                  # = reference_logits(...)["oracle"]
    if group_offset is not None or profile is not None:
        logit = logit + user_offset(world, user)
    label = (rng.random(size=item0.shape[0]) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return Interactions(
        user=user.astype(np.int32), item=(item0 + 1).astype(np.int32), label=label, time=time, item_genres=genres,
        user_ids=np.arange(n_users, dtype=np.int64), num_genres=cfg.num_genres, name=f"planted(seed={seed})",
        logit=logit, planted=world, user_profile=None if profile is None else (profile + 1).astype(np.int32),
        num_profiles=n_groups if cfg.profile else 0)


def balancing_offsets(cfg: SyntheticConfig, taste: np.ndarray, cluster: np.ndarray,
                      popularity: np.ndarray) -> np.ndarray:
    """Per-group logit offsets that give every group the click rate of a taste-free user: float [G].

    Group ``g``'s expected click rate under its exposure law (item ``i`` drawn with weight
    ``exp(exposure * taste[g, c_i] + b_i)``; personal offsets, which are not group-related, left out) is
    ``sum_i w_gi sigmoid(base + o_g + b_i + taste[g, c_i]) / sum_i w_gi``; ``o_g`` solves it equal to the rate
    with ``taste = 0`` (bisection), before any shift. Without it a pair's rates differ by chance (the mean of
    ``sigmoid(b + t)`` over clusters is not that of ``sigmoid(b - t)``), and every user's bias term would reveal
    its group.
    """
    item_taste = taste[:, cluster]                                        # [G, I]
    w = np.exp(cfg.exposure * item_taste + popularity[None, :] - popularity.max())
    w = w / w.sum(axis=1, keepdims=True)
    p0 = np.exp(popularity - popularity.max())
    target = float((p0 / p0.sum() / (1.0 + np.exp(-(cfg.base_logit + popularity)))).sum())
    lo, hi = np.full(taste.shape[0], -20.0), np.full(taste.shape[0], 20.0)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        rate = (w / (1.0 + np.exp(-(cfg.base_logit + mid[:, None] + popularity[None, :] + item_taste)))).sum(axis=1)
        lo, hi = np.where(rate < target, mid, lo), np.where(rate < target, hi, mid)
    return 0.5 * (lo + hi)


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
