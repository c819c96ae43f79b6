"""``retrieval.matching: planted_purity``: coarse candidates with a set own-group share, on a planted world whose
groups come in antithetic pairs (``synthetic.antithetic``).

Each simulated user is matched with ``round(purity * M)`` random users of its own group and ``M`` minus that of
its antithetic partner group (``M = retrieval.matched_users``, as the other matchings use). Its candidates are
those users' latest pool rows, ``round(purity * cap)`` from the own-group users and the rest from the partner
users (``cap = retrieval.max_candidates``), interleaved in proportion: the own-group share of the candidates is
``purity`` whatever the cap cuts (short only where a user's matched users hold too few rows). Half of the
candidates (at purity 0.5) then teach the opposite taste: a known amount for the sample classifier to remove.
"""

from __future__ import annotations

import numpy as np

from coda_jax.cloud.matching import _compact, candidates_from_users, random_users
from coda_jax.cloud.retrieval import Candidates
from coda_jax.config import ConfigError, RetrievalConfig
from coda_jax.data.packing import offsets_from_counts
from coda_jax.data.split import user_offsets

KINDS = ("own", "partner")


def planted_groups(table) -> np.ndarray | None:
    """Each user's planted group (int [num_users], by dense user index) where the table's world has antithetic
    pairs; else None."""
    world = table.planted
    if world is None or not world.antithetic:
        return None
    return world.group[table.user_ids]


def purity_users(sim_users: np.ndarray, group: np.ndarray, valid: np.ndarray, counts: dict,
                 seed: int) -> dict:
    """Distinct random users per simulated user: ``counts["own"]`` of its own group (never itself) and
    ``counts["partner"]`` of its partner group (``group ^ 1``), among ``valid`` users (those with pool rows).

    Args:
      sim_users: int [S] global user index of each simulated user.
      group: int [num_users] each user's planted group (pairs ``2k``, ``2k + 1``).
      valid: bool [num_users].
      counts: ``{"own": n_own, "partner": n_partner}``.

    Returns:
      ``{kind: int64 [S, counts[kind]]}`` in random order, ``-1`` padding where a group has too few users.
    """
    sim_users = np.asarray(sim_users, np.int64)
    out = {k: np.full((len(sim_users), counts[k]), -1, np.int64) for k in KINDS}
    sim_group = group[sim_users]
    for h in np.unique(group):
        members = valid & (group == h)
        for j, kind in enumerate(KINDS):
            who = np.flatnonzero(sim_group == (h if kind == "own" else h ^ 1))
            if counts[kind] and len(who):
                out[kind][who], _ = random_users(sim_users[who], members, counts[kind], [seed, int(h), j])
    return out


def _interleave(parts: list[Candidates], num_users: int) -> Candidates:
    """Merge per-user candidate lists, each list's ``k``-th of ``n`` rows at position ``(k + 0.5) / n``."""
    owner = np.concatenate([np.repeat(np.arange(num_users), p.counts()) for p in parts])
    frac = np.concatenate([(user_offsets(np.repeat(np.arange(num_users), p.counts()))[0] + 0.5)
                           / np.repeat(np.maximum(p.counts(), 1), p.counts()) for p in parts])
    rows = np.concatenate([p.rows for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    order = np.lexsort((frac, owner))
    return Candidates(offsets=offsets_from_counts(np.bincount(owner, minlength=num_users)), rows=rows[order],
                      scores=scores[order])


def planted_purity_match(cfg: RetrievalConfig, table, pool: tuple[np.ndarray, np.ndarray], sim_users: np.ndarray,
                         seed: int) -> tuple[np.ndarray, Candidates]:
    """Matched users and coarse candidates of ``planted_purity`` (see the module docstring).

    Args:
      table: the sample table (its planted world gives the groups).
      pool: the pool rows by user (``(offsets [num_users + 1], rows)``, :func:`coda_jax.cloud.matching.pool_by_user`).
      sim_users: int [S] global user index of each simulated user.

    Returns:
      ``(matched int64 [S, M], candidates)``: matched users interleaved in proportion (``-1`` pads), and the
      candidates (scores 0).

    Raises:
      ConfigError: the table's world has no antithetic pairs.
    """
    group = planted_groups(table)
    if group is None:
        raise ConfigError("retrieval.matching: planted_purity needs a planted world with antithetic group pairs "
                          "(data.source: synthetic, synthetic.world: planted, synthetic.antithetic: true)")
    n_own = int(np.floor(cfg.purity * cfg.matched_users + 0.5))
    users = purity_users(sim_users, group, np.diff(pool[0]) > 0, {"own": n_own, "partner": cfg.matched_users - n_own},
                         seed)
    own_rows = int(np.floor(cfg.purity * cfg.max_candidates + 0.5))
    limits = {"own": own_rows, "partner": cfg.max_candidates - own_rows}
    parts = [candidates_from_users(users[k], np.where(users[k] >= 0, 0.0, -np.inf), pool, limits[k]) for k in KINDS]
    slot = np.concatenate([(np.arange(users[k].shape[1]) + 0.5) / max(users[k].shape[1], 1) for k in KINDS])
    matched = np.concatenate([users[k] for k in KINDS], axis=1)[:, np.argsort(slot, kind="stable")]
    matched, _ = _compact(matched, np.zeros(matched.shape, np.float32), cfg.matched_users)
    return matched, _interleave(parts, len(sim_users))
