"""Tests for :mod:`coda_jax.cloud.retrieval`: grouping, coarse matching, exact and ScaNN search, recall."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from coda_jax.cloud.retrieval import (Candidates, ExactSearcher, Queries, ScannSearcher, coarse_match, group_top,
                                      make_searcher, recall_at_k)
from coda_jax.config import RetrievalConfig


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def ref_group_top(owner, row, score, num_owners, limit):
    """Dict-based reference: the best (highest) score per (owner, row); per owner sorted by score desc, then
    row asc; capped. Returns per owner [(row, score)]."""
    best: dict[tuple[int, int], float] = {}
    for o, r, s in zip(*(np.asarray(a).tolist() for a in (owner, row, score))):
        if (o, r) not in best or s > best[(o, r)]:
            best[(o, r)] = s
    per = defaultdict(list)
    for (o, r), s in best.items():
        per[o].append((r, s))
    return [sorted(per[o], key=lambda rs: (-rs[1], rs[0]))[:limit] for o in range(num_owners)]


def assert_candidates_equal(c: Candidates, ref, num_owners):
    assert isinstance(c, Candidates)
    assert c.offsets.shape == (num_owners + 1,) and c.offsets[0] == 0
    assert c.counts().tolist() == [len(x) for x in ref]
    for o in range(num_owners):
        assert c.of(o).tolist() == [r for r, _ in ref[o]]
        np.testing.assert_allclose(c.scores[c.offsets[o]:c.offsets[o + 1]], [s for _, s in ref[o]],
                                   rtol=1e-5, atol=1e-5)
    assert c.rows.dtype == np.int64 and c.scores.dtype == np.float32


# ----------------------------------------------------------------------------- group_top


@pytest.mark.parametrize("seed, limit", [(0, 3), (1, 1), (2, 100), (3, 5)])
def test_group_top_matches_reference(seed, limit):
    rng = np.random.default_rng(seed)
    num_owners = 6
    p = 80
    owner = rng.integers(0, num_owners - 1, size=p)          # the last owner gets nothing
    row = rng.integers(0, 15, size=p)                          # many duplicate (owner, row) pairs
    score = rng.random(p).astype(np.float32)
    c = group_top(owner, row, score, num_owners, limit)
    ref = ref_group_top(owner, row, score, num_owners, limit)
    assert any(len(x) == limit for x in ref) or limit == 100
    assert_candidates_equal(c, ref, num_owners)
    assert c.counts()[-1] == 0


def test_group_top_hand_example():
    owner = np.array([1, 0, 1, 1, 0, 1, 0])
    row = np.array([7, 4, 7, 2, 4, 9, 5])
    score = np.array([0.1, 0.5, 0.9, 0.3, 0.2, 0.3, 0.6], np.float32)
    c = group_top(owner, row, score, 3, 2)
    # owner 0: row 4 best 0.5, row 5 0.6 -> [5, 4]; owner 1: row 7 best 0.9, rows 2 and 9 tie at 0.3
    # (row breaks the tie) -> [7, 2]; owner 2: nothing
    assert c.offsets.tolist() == [0, 2, 4, 4]
    assert c.rows.tolist() == [5, 4, 7, 2]
    np.testing.assert_allclose(c.scores, [0.6, 0.5, 0.9, 0.3])


def test_group_top_empty():
    c = group_top(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32), 3, 5)
    assert c.offsets.tolist() == [0, 0, 0, 0] and c.rows.size == 0 and c.scores.size == 0


# ----------------------------------------------------------------------------- coarse_match


def ref_coarse(vectors, pool_rows, row_user, query_rows, query_owner, num_owners, cfg):
    k = min(cfg.neighbors, len(pool_rows))
    db = vectors[pool_rows].astype(np.float64)
    owner, row, score = [], [], []
    for q, o in zip(query_rows.tolist(), query_owner.tolist()):
        s = db @ vectors[q].astype(np.float64)
        top = np.argsort(-s, kind="stable")[:k]
        for pos in top.tolist():
            r = int(pool_rows[pos])
            if row_user[r] == row_user[q]:
                continue
            owner.append(o)
            row.append(r)
            score.append(float(s[pos]))
    return ref_group_top(owner, row, score, num_owners, cfg.max_candidates)


@pytest.mark.parametrize("seed, neighbors, max_candidates", [(0, 5, 8), (1, 12, 100), (2, 3, 2), (3, 500, 40)])
def test_coarse_match_exact_matches_bruteforce(seed, neighbors, max_candidates):
    rng = np.random.default_rng(seed)
    n, d, num_users = 160, 8, 10
    vectors = unit(rng.normal(size=(n, d)))
    row_user = np.sort(rng.integers(0, num_users, size=n))
    pool_rows = np.sort(rng.choice(n, size=120, replace=False))          # e.g. the training rows
    sim_users = np.array([1, 4, 6, 9])                                     # simulated users -> owners 0..3
    query_rows = np.flatnonzero(np.isin(row_user, sim_users))
    query_rows = query_rows[np.isin(query_rows, pool_rows)][::2]           # some local training rows
    query_owner = np.searchsorted(sim_users, row_user[query_rows])
    num_owners = len(sim_users) + 1                                        # the last owner has no query
    cfg = RetrievalConfig(backend="exact", neighbors=neighbors, max_candidates=max_candidates)
    searcher = make_searcher(vectors[pool_rows], cfg)
    assert isinstance(searcher, ExactSearcher)
    c = coarse_match(searcher, vectors, pool_rows, row_user, Queries(query_rows, query_owner, num_owners), cfg)
    ref = ref_coarse(vectors, pool_rows, row_user, query_rows, query_owner, num_owners, cfg)
    assert_candidates_equal(c, ref, num_owners)
    # invariants: never the owner's own rows, only pool rows, at most max_candidates
    for o, u in enumerate(sim_users):
        rows = c.of(o)
        assert not np.any(row_user[rows] == u)
        assert np.all(np.isin(rows, pool_rows))
        assert len(rows) <= max_candidates and len(set(rows.tolist())) == len(rows)
    assert c.counts()[-1] == 0


def test_coarse_match_own_rows_only_pool_gives_nothing():
    rng = np.random.default_rng(7)
    vectors = unit(rng.normal(size=(20, 4)))
    row_user = np.array([0] * 10 + [1] * 10)
    pool_rows = np.arange(10)                     # only user 0's rows
    cfg = RetrievalConfig(backend="exact", neighbors=5, max_candidates=10)
    searcher = make_searcher(vectors[pool_rows], cfg)
    # user 0 queries: all neighbours are its own rows; user 1 queries get user 0's rows
    query_rows = np.array([0, 1, 12, 15])
    query_owner = np.array([0, 0, 1, 1])
    c = coarse_match(searcher, vectors, pool_rows, row_user, Queries(query_rows, query_owner, 2), cfg)
    assert c.counts()[0] == 0 and c.counts()[1] >= 5
    ref = ref_coarse(vectors, pool_rows, row_user, query_rows, query_owner, 2, cfg)
    assert_candidates_equal(c, ref, 2)


def test_coarse_match_scann_small_pool_matches_bruteforce():
    # ScaNN's brute-force path (pool < 2000 rows) returns unsigned ids; coarse_match must map them to rows.
    rng = np.random.default_rng(11)
    n, d = 700, 16
    vectors = unit(rng.normal(size=(n, d)))
    row_user = np.sort(rng.integers(0, 30, size=n))
    pool_rows = np.sort(rng.choice(n, size=500, replace=False))
    query_rows = pool_rows[np.isin(row_user[pool_rows], [2, 17])]
    query_owner = (row_user[query_rows] == 17).astype(np.int64)
    cfg = RetrievalConfig(backend="scann", neighbors=8, max_candidates=20)
    searcher = make_searcher(vectors[pool_rows], cfg)
    assert isinstance(searcher, ScannSearcher)
    c = coarse_match(searcher, vectors, pool_rows, row_user, Queries(query_rows, query_owner, 2), cfg)
    ref = ref_coarse(vectors, pool_rows, row_user, query_rows, query_owner, 2, cfg)
    assert_candidates_equal(c, ref, 2)


# ----------------------------------------------------------------------------- searchers and recall


def test_exact_searcher_matches_numpy():
    rng = np.random.default_rng(3)
    db = unit(rng.normal(size=(300, 16)))
    q = unit(rng.normal(size=(25, 16)))
    idx, scores = ExactSearcher(db).search(q, 7)
    s = q.astype(np.float64) @ db.astype(np.float64).T
    ref = np.argsort(-s, axis=1)[:, :7]
    np.testing.assert_array_equal(idx, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(s, ref, axis=1), rtol=1e-5, atol=1e-5)
    assert idx.dtype == np.int64


def clustered(rng, n, d, centers, spread):
    c = unit(rng.normal(size=(centers, d)))
    lab = rng.integers(0, centers, size=n)
    return unit(c[lab] + spread * rng.normal(size=(n, d)) / np.sqrt(d))


def test_scann_recall_large_pool():
    rng = np.random.default_rng(0)
    db = clustered(rng, 5000, 32, centers=40, spread=0.6)
    q = db[rng.choice(5000, size=300, replace=False)] + 0.05 * rng.normal(size=(300, 32)).astype(np.float32)
    q = unit(q)
    cfg = RetrievalConfig(backend="scann", neighbors=10, max_candidates=50)
    searcher = make_searcher(db, cfg)
    assert isinstance(searcher, ScannSearcher)
    a_idx, a_scores = searcher.search(q, 10)
    e_idx, _ = ExactSearcher(db).search(q, 10)
    assert a_idx.shape == (300, 10) and a_idx.dtype == np.int64
    rec = recall_at_k(a_idx, e_idx)
    assert rec >= 0.9, rec
    # returned scores are the (reordered, exact) dot products of the returned rows
    valid = a_idx >= 0
    true = np.einsum("qd,qkd->qk", q, db[np.clip(a_idx, 0, None)])
    np.testing.assert_allclose(a_scores[valid], true[valid], atol=2e-3)
    # the partitioned index is the same on every build, so runs with one seed retrieve the same rows
    b_idx, _ = make_searcher(db, cfg).search(q, 10)
    np.testing.assert_array_equal(a_idx, b_idx)


def test_scann_small_pool_is_exact():
    rng = np.random.default_rng(1)
    db = unit(rng.normal(size=(800, 32)))
    q = unit(rng.normal(size=(100, 32)))
    cfg = RetrievalConfig(backend="scann", neighbors=10)
    searcher = make_searcher(db, cfg)
    assert isinstance(searcher, ScannSearcher)
    a_idx, a_scores = searcher.search(q, 10)
    e_idx, e_scores = ExactSearcher(db).search(q, 10)
    assert recall_at_k(a_idx, e_idx) == 1.0
    np.testing.assert_allclose(a_scores, e_scores, atol=1e-4)


@pytest.mark.parametrize("approx, exact, want", [
    ([[1, 2, 3], [4, 5, 6]], [[3, 2, 1], [7, 8, 4]], (3 / 3 + 1 / 3) / 2),
    ([[1, 2]], [[1, 2]], 1.0),
    ([[1, 2]], [[3, 4]], 0.0),
    ([[9, 1], [2, 2]], [[1, 5], [2, 3]], (1 / 2 + 1 / 2) / 2),
    ([[0, 1, 2, 3]], [[3, 7, 8, 9]], 1 / 4),
])
def test_recall_at_k_hand(approx, exact, want):
    assert recall_at_k(np.array(approx), np.array(exact)) == pytest.approx(want)
