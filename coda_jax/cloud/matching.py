"""User-level coarse matching: which other users each simulated user is matched with, and the rows they send.

``retrieval.matching`` picks the algorithm:

- ``sample``: sample-level nearest neighbours (:func:`coda_jax.cloud.retrieval.coarse_match`); the matched
  users are the owners of a user's candidates, ranked by how many candidates each contributed.
- ``user_embedding``: nearest users by user-vector similarity (the cloud model's user embedding, or the mean
  of a user's sample vectors for models without one), searched with the configured backend (ScaNN / exact).
- ``item_overlap``: nearest users by the cosine of their item sets (shared items over the geometric mean of
  set sizes), through sparse item sets in blocks of query users (:mod:`coda_jax.cloud.overlap`; exact within a
  work budget, above it the most popular items are left out).
- ``random_users``: users drawn at random.
- ``planted_purity`` (planted worlds with antithetic pairs): a set share of own-group users
  (:mod:`coda_jax.cloud.purity`).

With a user-level algorithm, a user's coarse candidates are its matched users' pool rows, best-matched user
first and each user's latest rows first, up to ``retrieval.max_candidates``. The matched users are also what
the ``mpda`` method goes through.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from coda_jax.cloud.overlap import (ITEM_OVERLAP_WORK_PER_USER, item_overlap_cap, item_overlap_users, item_sets,
                                    restrict_items)
from coda_jax.cloud.retrieval import Candidates, make_searcher
from coda_jax.cloud.search import search_report
from coda_jax.config import RetrievalConfig
from coda_jax.data.packing import offsets_from_counts
from coda_jax.data.split import user_offsets


def pool_by_user(row_user: np.ndarray, pool_rows: np.ndarray, num_users: int) -> tuple[np.ndarray, np.ndarray]:
    """Group pool rows by their user, keeping time order (the table is sorted by user, then time).

    Returns ``(offsets int64 [num_users + 1], rows int64 [P])``.
    """
    pool_rows = np.sort(np.asarray(pool_rows))
    counts = np.bincount(row_user[pool_rows], minlength=num_users)
    return offsets_from_counts(counts), pool_rows.astype(np.int64)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def user_vectors(params: dict, vectors: np.ndarray, pool: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """One unit vector per user: float32 [num_users, D].

    The cloud model's ``user_embed`` table when the model has one (DIN, DeepFM, Wide & Deep, PNN), centred
    over users; otherwise (LR) the mean of the user's pool sample vectors. Users without pool rows get zeros.
    """
    offsets, rows = pool
    num_users = offsets.shape[0] - 1
    if "user_embed" in params:
        table = np.asarray(params["user_embed"]["embedding"], dtype=np.float32)[:num_users]
        out = table - table.mean(axis=0, keepdims=True)
    else:
        owner = np.repeat(np.arange(num_users), np.diff(offsets))
        out = np.zeros((num_users, vectors.shape[1]), dtype=np.float32)
        np.add.at(out, owner, vectors[rows])
    out = _unit(out)
    out[np.diff(offsets) == 0] = 0.0
    return out


def top_users(searcher, database: np.ndarray, query_users: np.ndarray, count: int,
              valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query user's ``count`` most similar other users.

    Args:
      searcher: built over ``database`` float32 [num_users, D] (one row per user).
      query_users: int [S] global user index of each query.
      valid: bool [num_users], users that can be matched (those with pool rows).

    Returns:
      ``(users int64 [S, count], scores float32 [S, count])``, best first; ``-1`` / ``-inf`` pad short lists.
    """
    k = min(count + 1, database.shape[0])
    idx, scores = searcher.search(database[query_users], k)
    ok = (idx >= 0) & (idx < database.shape[0])
    idx = np.where(ok, idx, 0)
    ok &= valid[idx] & (idx != query_users[:, None])
    return _compact(np.where(ok, idx, -1), np.where(ok, scores, -np.inf), count)


def _compact(users: np.ndarray, scores: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Move valid entries (users >= 0) to the front of each row, keeping their order; width ``count``."""
    order = np.argsort(users < 0, axis=1, kind="stable")
    users = np.take_along_axis(users, order, axis=1)[:, :count]
    scores = np.take_along_axis(scores, order, axis=1)[:, :count].astype(np.float32)
    pad = count - users.shape[1]
    if pad > 0:
        users = np.pad(users, ((0, 0), (0, pad)), constant_values=-1)
        scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
    return users.astype(np.int64), scores


def users_from_candidates(cands: Candidates, row_user: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Matched users of sample-level matching: the owners of each user's candidates, ranked by how many
    candidates they contributed (ties: the better best similarity). Returns ``(users, scores)`` [S, count],
    scores = the share of the user's candidates from that owner; ``-1`` / ``-inf`` pad."""
    num = cands.counts()
    owner_sim = np.repeat(np.arange(num.shape[0]), num)
    src = row_user[cands.rows]
    pair = np.stack([owner_sim, src], axis=1)
    uniq, inverse, counts = np.unique(pair, axis=0, return_inverse=True, return_counts=True)
    best = np.full(len(uniq), -np.inf, dtype=np.float32)
    np.maximum.at(best, inverse.ravel(), cands.scores)
    share = counts / np.maximum(num[uniq[:, 0]], 1)
    order = np.lexsort((-best, -share, uniq[:, 0]))
    uniq, share = uniq[order], share[order]
    rank, _ = user_offsets(uniq[:, 0])                       # position within each simulated user's owners
    keep = rank < count
    users = np.full((num.shape[0], count), -1, dtype=np.int64)
    scores = np.full((num.shape[0], count), -np.inf, dtype=np.float32)
    users[uniq[keep, 0], rank[keep]] = uniq[keep, 1]
    scores[uniq[keep, 0], rank[keep]] = share[keep]
    return users, scores


def random_users(sim_users: np.ndarray, valid: np.ndarray, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct random other users per simulated user (from users with pool rows), in random order.

    Time and memory ``O(S * count)``: each user draws with replacement from the ``C`` valid others and keeps the
    first occurrence of each (a uniformly random ordered sample without replacement); the few users left
    short redraw with twice as many draws. With ``C <= count`` a user gets all of them.

    Returns ``(users int64 [S, count], scores float32 [S, count])`` (scores 0; ``-1`` / ``-inf`` pad)."""
    rng = np.random.default_rng(seed)
    choices = np.flatnonzero(valid)
    sim_users = np.asarray(sim_users, np.int64)
    self_pos = np.searchsorted(choices, sim_users)
    is_valid = (self_pos < len(choices)) & (choices[np.minimum(self_pos, len(choices) - 1)] == sim_users) \
        if len(choices) else np.zeros(len(sim_users), bool)
    others = len(choices) - is_valid                                                  # [S] valid others
    take = np.minimum(others, count)
    users = np.full((len(sim_users), count), -1, np.int64)
    todo = np.flatnonzero(take > 0)
    draws = 2 * count
    while len(todo):
        d = rng.integers(0, others[todo][:, None], size=(len(todo), draws))          # among the others
        d = d + (is_valid[todo][:, None] & (d >= self_pos[todo][:, None]))           # skip the user itself
        first = _first_occurrences(d)
        pos = np.cumsum(first, axis=1) - 1                                            # slot of each first occurrence
        done = pos[:, -1] + 1 >= take[todo]
        r, c = np.nonzero(first & (pos < take[todo][:, None]) & done[:, None])
        users[todo[r], pos[r, c]] = choices[d[r, c]]
        todo, draws = todo[~done], draws * 2
    ok = users >= 0
    return users, np.where(ok, 0.0, -np.inf).astype(np.float32)


def _first_occurrences(d: np.ndarray) -> np.ndarray:
    """bool [S, n]: whether ``d[s, j]`` is the first occurrence of its value in row ``s``."""
    order = np.argsort(d, axis=1, kind="stable")
    sd = np.take_along_axis(d, order, axis=1)
    new = np.ones(d.shape, bool)
    new[:, 1:] = sd[:, 1:] != sd[:, :-1]
    first = np.empty(d.shape, bool)
    np.put_along_axis(first, order, new, axis=1)
    return first


def candidates_from_users(matched: np.ndarray, scores: np.ndarray, pool: tuple[np.ndarray, np.ndarray],
                          limit: int) -> Candidates:
    """Coarse candidates of user-level matching: the matched users' pool rows, best-matched user first and
    each user's latest rows first, at most ``limit`` per simulated user. matched, scores: [S, M]."""
    offsets, rows = pool
    s_idx, m_idx = np.nonzero(matched >= 0)                  # row-major: by simulated user, then match rank
    src = matched[s_idx, m_idx]
    n = offsets[src + 1] - offsets[src]
    cum = np.cumsum(n) - n
    before = cum - cum[np.searchsorted(s_idx, s_idx)]         # rows of the user's better-matched users
    take = np.clip(limit - before, 0, n)                      # only what fits under the cap: O(S * limit)
    pair = np.repeat(np.arange(len(src)), take)
    pos, _ = user_offsets(pair)                               # position within each matched user's rows
    cand_rows = rows[offsets[src][pair] + n[pair] - 1 - pos]  # latest first
    counts = np.bincount(s_idx[pair], minlength=matched.shape[0])
    return Candidates(offsets=offsets_from_counts(counts), rows=cand_rows.astype(np.int64),
                      scores=scores[s_idx, m_idx][pair].astype(np.float32))


@dataclasses.dataclass(frozen=True)
class MatchInputs:
    """What a user-level matching sees of the cloud (host numpy arrays).

    Attributes:
      cfg: the retrieval config (``matching``, ``backend``, ``recall_queries``, ...).
      params: the cloud model's parameter dict; vectors: float32 [N, D] every table row's sample vector.
      item: int [N] every table row's item id (1..num_items); num_items: the item vocabulary size.
      pool: ``(offsets int64 [num_users + 1], rows)`` every user's pool rows in time order.
      sim_users: int [S] global user index of each simulated user (the queries).
      count: matched users per simulated user.
      seed: the run's matching seed.
      report: updated with the searcher's backend, reason and recall check
        (:func:`coda_jax.cloud.search.search_report`); lands in ``results.json``'s ``retrieval``.
      groups: int [num_users] each user's planted group where the world has antithetic group pairs (what
        ``planted_purity`` matches by); None elsewhere.
    """

    cfg: RetrievalConfig
    params: dict
    vectors: np.ndarray
    item: np.ndarray
    num_items: int
    pool: tuple[np.ndarray, np.ndarray]
    sim_users: np.ndarray
    count: int
    seed: int
    report: dict = dataclasses.field(default_factory=dict)
    groups: np.ndarray | None = None


def by_user_embedding(x: MatchInputs) -> tuple[np.ndarray, np.ndarray]:
    """``user_embedding``: nearest users by user vector (:func:`user_vectors`), with the configured backend."""
    sim_users = np.asarray(x.sim_users)
    database = user_vectors(x.params, x.vectors, x.pool)
    searcher = make_searcher(database, x.cfg, x.seed, queries=len(sim_users))
    x.report.update(search_report(searcher, database, min(x.count + 1, len(database)), x.cfg.recall_queries,
                                  x.seed, sim_users))
    return top_users(searcher, database, sim_users, x.count, np.diff(x.pool[0]) > 0)


def by_item_overlap(x: MatchInputs) -> tuple[np.ndarray, np.ndarray]:
    """``item_overlap``: nearest users by the cosine of their item sets (:mod:`coda_jax.cloud.overlap`)."""
    sim_users = np.asarray(x.sim_users)
    sets = item_sets(x.item, x.pool, x.num_items)
    cap = item_overlap_cap(sets, sim_users, ITEM_OVERLAP_WORK_PER_USER)
    x.report.update(backend="exact", recall_at_k=None, recall_queries=0,
                    backend_reason="item_overlap: exact cosine of sparse item sets"
                    + ("" if cap is None else f" (items held by more than {cap} users left out)"))
    return item_overlap_users(restrict_items(sets, cap), sim_users, x.count)


def by_random_users(x: MatchInputs) -> tuple[np.ndarray, np.ndarray]:
    """``random_users``: users drawn at random (:func:`random_users`)."""
    return random_users(np.asarray(x.sim_users), np.diff(x.pool[0]) > 0, x.count, x.seed)
