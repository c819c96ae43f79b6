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

from coda_jax.cloud.matching import MatchInputs, _compact, candidates_from_users, random_users
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


def _groups(x: MatchInputs) -> np.ndarray:
    if x.groups is None:
        raise ConfigError("retrieval.matching: planted_purity needs a planted world with antithetic group pairs "
                          "(data.source: synthetic, synthetic.world: planted, synthetic.antithetic: true)")
    return np.asarray(x.groups)


def by_planted_purity(x: MatchInputs) -> tuple[np.ndarray, np.ndarray]:
    """``planted_purity``: each simulated user's matched users, ``round(purity * M)`` random own-group users and
    the rest of its partner group, interleaved in proportion (see the module docstring): ``(users int64 [S, M]
    (-1 pads), scores float32 [S, M] (0; -inf on padding))``.

    Raises:
      ConfigError: the world has no antithetic pairs (``x.groups`` is None).
    """
    cfg, group = x.cfg, _groups(x)
    n_own = int(np.floor(cfg.purity * x.count + 0.5))
    users = purity_users(x.sim_users, group, np.diff(x.pool[0]) > 0, {"own": n_own, "partner": x.count - n_own},
                         x.seed)
    slot = np.concatenate([(np.arange(users[k].shape[1]) + 0.5) / max(users[k].shape[1], 1) for k in KINDS])
    matched = np.concatenate([users[k] for k in KINDS], axis=1)[:, np.argsort(slot, kind="stable")]
    matched, _ = _compact(matched, np.zeros(matched.shape, np.float32), x.count)
    x.report.update(backend="planted", backend_reason=f"planted_purity: random own-group and partner-group users "
                                                      f"(purity {cfg.purity:g})")
    return matched, np.where(matched >= 0, 0.0, -np.inf).astype(np.float32)


def planted_purity_candidates(x: MatchInputs, matched: np.ndarray, scores: np.ndarray) -> Candidates:
    """The coarse candidates of ``planted_purity`` from its matched users [S, M] (:func:`by_planted_purity`):
    ``round(purity * cap)`` rows from the own-group users and the rest from the partner users (``cap =
    retrieval.max_candidates``), interleaved in proportion (scores 0)."""
    cfg, group = x.cfg, _groups(x)
    sim_group = group[np.asarray(x.sim_users)]
    kind_own = (matched >= 0) & (group[np.maximum(matched, 0)] == sim_group[:, None])
    own_rows = int(np.floor(cfg.purity * cfg.max_candidates + 0.5))
    limits = {"own": own_rows, "partner": cfg.max_candidates - own_rows}
    parts = []
    for k in KINDS:
        pick = kind_own if k == "own" else (matched >= 0) & ~kind_own
        users, _ = _compact(np.where(pick, matched, -1), np.where(pick, 0.0, -np.inf).astype(np.float32),
                            matched.shape[1])
        parts.append(candidates_from_users(users, np.where(users >= 0, 0.0, -np.inf), x.pool, limits[k]))
    return _interleave(parts, len(x.sim_users))


def planted_purity_match(cfg: RetrievalConfig, table, pool: tuple[np.ndarray, np.ndarray], sim_users: np.ndarray,
                         seed: int) -> tuple[np.ndarray, Candidates]:
    """Matched users and coarse candidates of ``planted_purity`` at once (what the cloud stage gets from the
    registry entry): ``(matched int64 [S, M] (-1 pads), candidates)``; ``pool``: every user's pool rows
    (:func:`coda_jax.cloud.matching.pool_by_user`), ``sim_users`` int [S]. ConfigError without antithetic pairs."""
    x = MatchInputs(cfg, {}, np.zeros((0, 0), np.float32), np.zeros(0, np.int64), 0, pool, np.asarray(sim_users),
                    cfg.matched_users, seed, groups=planted_groups(table))
    matched, scores = by_planted_purity(x)
    return matched, planted_purity_candidates(x, matched, scores)
