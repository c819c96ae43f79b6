"""The host steps that must not grow faster than users (issue 13), each against an independent reference: the
streamed coarse match against the one-search implementation it replaced, sparse item overlap against the
dense users x items version and a python loop, random users, user-level candidates, and the chunk vocabulary
against the sort-per-row one."""

from __future__ import annotations

import tracemalloc

import jax
import numpy as np
import pytest

from coda_jax.cloud import overlap
from coda_jax.cloud.matching import candidates_from_users, pool_by_user, random_users, top_users
from coda_jax.cloud.retrieval import ExactSearcher, Queries, coarse_match, group_top, make_searcher
from coda_jax.config import RetrievalConfig
from coda_jax.device import chunk as chunk_mod
from coda_jax.device.submodel import local_vocab


# ----------------------------------------------------------------------------- streamed coarse match
def one_search_coarse_match(searcher, vectors, pool_rows, row_user, query_rows, query_owner, num_owners, cfg):
    """The implementation before streaming (one search over every query), kept as the reference."""
    k = min(cfg.neighbors, len(pool_rows))
    idx, scores = searcher.search(vectors[query_rows], k)
    valid = (idx >= 0) & (idx < len(pool_rows))
    nbr = pool_rows[np.clip(idx, 0, len(pool_rows) - 1)]
    owner = np.broadcast_to(query_owner[:, None], idx.shape)
    own = row_user[nbr] == row_user[query_rows][:, None]
    keep = valid & ~own
    return group_top(owner[keep], nbr[keep], scores[keep], num_owners, cfg.max_candidates)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("block", [1, 7, 40, 10**6])
def test_streamed_coarse_match_equals_one_search(seed, block):
    rng = np.random.default_rng(block + 3 * seed)
    num_users, n = 15, 400
    row_user = np.sort(rng.integers(0, num_users, n))
    # small integer vectors: dot products are exact whatever the batch (the XLA matmul may round a float sum
    # differently with the batch size), and many are equal, so ties are exercised too
    vectors = rng.integers(-3, 4, size=(n, 6)).astype(np.float32)
    pool_rows = np.flatnonzero(rng.random(n) < 0.7)
    sim_users = rng.permutation(num_users)[:9]              # simulation order is not the user order
    sim_index = np.full(num_users, -1)
    sim_index[sim_users] = np.arange(len(sim_users))
    query_rows = np.flatnonzero((sim_index[row_user] >= 0) & (rng.random(n) < 0.5))
    query_owner = sim_index[row_user[query_rows]]
    cfg = RetrievalConfig(backend="exact", neighbors=8, max_candidates=13)
    searcher = make_searcher(vectors[pool_rows], cfg)
    args = (searcher, vectors, pool_rows, row_user, query_rows, query_owner, len(sim_users), cfg)
    got = coarse_match(searcher, vectors, pool_rows, row_user, Queries(query_rows, query_owner, len(sim_users), block),
                       cfg)
    want = one_search_coarse_match(*args)
    np.testing.assert_array_equal(got.offsets, want.offsets)
    np.testing.assert_array_equal(got.rows, want.rows)
    np.testing.assert_array_equal(got.scores, want.scores)
    assert got.counts().sum() > 0


class _CountingSearcher:
    def __init__(self, database):
        self.inner, self.sizes = ExactSearcher(database), []

    def search(self, queries, k):
        self.sizes.append(len(queries))
        return self.inner.search(queries, k)


def test_coarse_match_searches_at_most_a_block_of_queries_at_a_time():
    rng = np.random.default_rng(0)
    row_user = np.repeat(np.arange(30), 10)
    vectors = rng.integers(-3, 4, size=(300, 4)).astype(np.float32)
    pool_rows = np.arange(0, 300, 2)
    query_rows = np.arange(1, 300, 2)
    cfg = RetrievalConfig(backend="exact", neighbors=5, max_candidates=20)
    searcher = _CountingSearcher(vectors[pool_rows])
    got = coarse_match(searcher, vectors, pool_rows, row_user, Queries(query_rows, row_user[query_rows], 30, 32), cfg)
    assert max(searcher.sizes) == 32 and sum(searcher.sizes) == len(query_rows)
    want = one_search_coarse_match(ExactSearcher(vectors[pool_rows]), vectors, pool_rows, row_user, query_rows,
                                   row_user[query_rows], 30, cfg)
    np.testing.assert_array_equal(got.rows, want.rows)


# ----------------------------------------------------------------------------- sparse item overlap
def _population(seed, num_users=40, num_items=25):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 12, num_users)
    counts[[2, 7]] = 0                                       # users without pool rows
    row_user = np.repeat(np.arange(num_users), counts)
    popularity = 1.0 / np.arange(1, num_items + 1)           # heavy-tailed: a few items most users hold
    item = rng.choice(np.arange(1, num_items + 1), size=len(row_user), p=popularity / popularity.sum())
    pool = pool_by_user(row_user, np.arange(len(row_user)), num_users)
    return item, pool, num_users, num_items


def loop_item_overlap(item, pool, num_users, query_users, count, max_item_users=None):
    """Python loop: sets, float64 cosine, best first, ties to the lower user, only users sharing an item."""
    offsets, rows = pool
    sets = [set(item[rows[offsets[u]:offsets[u + 1]]].tolist()) for u in range(num_users)]
    if max_item_users is not None:
        holders = {i: sum(i in s for s in sets) for i in set().union(*sets)}
        sets = [{i for i in s if holders[i] <= max_item_users} for s in sets]
    users = np.full((len(query_users), count), -1)
    scores = np.full((len(query_users), count), -np.inf, np.float32)
    for j, q in enumerate(query_users):
        cand = [(-(len(sets[q] & sets[u]) / np.sqrt(len(sets[q]) * len(sets[u]))), u)
                for u in range(num_users) if u != q and sets[q] & sets[u]]
        for r, (neg, u) in enumerate(sorted(cand)[:count]):
            users[j, r], scores[j, r] = u, -neg
    return users, scores


def dense_item_overlap(item, pool, num_users, num_items, query_users, count):
    """The dense implementation before this change (users x items unit multi-hot, exact search), as reference."""
    offsets, rows = pool
    owner = np.repeat(np.arange(num_users), np.diff(offsets))
    dense = np.zeros((num_users, num_items + 1), np.float32)
    dense[owner, item[rows]] = 1.0
    dense /= np.maximum(np.linalg.norm(dense, axis=1, keepdims=True), 1e-12)
    return top_users(ExactSearcher(dense), dense, query_users, count, np.diff(offsets) > 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("block_cells", [1, 100, 1 << 22])        # one query per block ... all in one
def test_sparse_item_overlap_equals_a_python_loop(seed, block_cells):
    item, pool, num_users, num_items = _population(seed)
    query = np.array([0, 2, 5, 9, 17, 39, 3])
    sets = overlap.item_sets(item, pool, num_items)
    got = overlap.item_overlap_users(sets, query, 6, block_cells=block_cells)
    want = loop_item_overlap(item, pool, num_users, query, 6)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    assert (got[0][1] == -1).all()                                      # user 2 holds nothing: no match


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sparse_item_overlap_equals_the_dense_version(seed):
    item, pool, num_users, num_items = _population(seed)
    query = np.arange(num_users)
    sets = overlap.item_sets(item, pool, num_items)
    users, scores = overlap.item_overlap_users(sets, query, 5)
    d_users, d_scores = dense_item_overlap(item, pool, num_users, num_items, query, 5)
    shared = d_scores > 1e-6                 # the dense version also fills with users sharing nothing (score 0)
    np.testing.assert_allclose(scores[shared], d_scores[shared], rtol=1e-5)
    assert (users[~shared] == -1).all()
    # Equal cosines come out of the float32 dense search in rounding order, here in user order: the same users
    # at the same scores, apart from which of the users tied at a row's last kept score made the cut.
    for row, d_row, ds in zip(users, d_users, np.where(shared, d_scores, -np.inf)):
        last = ds[np.isfinite(ds)].min(initial=np.inf)
        above = ds > last + 1e-6
        assert set(row[above]) == set(d_row[above]) and set(d_row[~above & np.isfinite(ds)]) <= set(
            u for u in range(len(users)) if u not in row[above])
    assert (users[shared] == d_users[shared]).mean() > 0.9


def test_item_overlap_cap_keeps_the_work_within_the_budget():
    item, pool, num_users, num_items = _population(4, num_users=60)
    sets = overlap.item_sets(item, pool, num_items)
    query = np.arange(0, 60, 2)
    dense = sets.toarray().astype(np.int64)
    holders, queried = dense.sum(axis=0), dense[query].sum(axis=0)
    full = int((holders * queried).sum())
    assert overlap.item_overlap_cap(sets, query, full / len(query)) is None           # fits: exact
    for frac in (0.9, 0.5, 0.2):
        budget = frac * full
        cap = overlap.item_overlap_cap(sets, query, budget / len(query))
        fits = [p for p in set(holders.tolist()) if (holders * queried)[holders <= p].sum() <= budget]
        assert cap == max(fits)
        restricted = overlap.restrict_items(sets, cap)
        np.testing.assert_array_equal(restricted.toarray(), dense * (holders <= cap))
        got = overlap.item_overlap_users(restricted, query, 4)
        want = loop_item_overlap(item, pool, num_users, query, 4, max_item_users=cap)
        np.testing.assert_array_equal(got[0], want[0])


# ----------------------------------------------------------------------------- random users
def test_random_users_draw_distinct_other_valid_users_uniformly():
    valid = np.ones(50, bool)
    valid[[3, 10, 11]] = False
    sim = np.repeat(np.arange(50), 200)                      # every user, 200 times, including invalid ones
    users, scores = random_users(sim, valid, 8, seed=5)
    assert users.shape == (len(sim), 8) and (users >= 0).all() and (scores == 0).all()
    assert valid[users].all() and not (users == sim[:, None]).any()
    assert (np.sort(users, axis=1)[:, 1:] != np.sort(users, axis=1)[:, :-1]).all()
    # each valid other user equally likely: about 8 / 46 (or 8 / 47 for invalid simulated users)
    freq = np.bincount(users.ravel(), minlength=50)[valid] / len(sim)
    np.testing.assert_allclose(freq, 8 / 46.9, rtol=0.1)
    first = np.bincount(users[:, 0], minlength=50)[valid] / len(sim)                  # order is random too
    np.testing.assert_allclose(first, 1 / 46.9, rtol=0.3)


def test_random_users_with_few_others_take_them_all():
    valid = np.zeros(10, bool)
    valid[[1, 4, 6]] = True
    users, scores = random_users(np.array([4, 0]), valid, 5, seed=0)
    assert sorted(users[0][:2]) == [1, 6] and (users[0][2:] == -1).all() and np.isinf(scores[0][2:]).all()
    assert sorted(users[1][:3]) == [1, 4, 6] and (users[1][3:] == -1).all()
    empty, _ = random_users(np.array([0, 1]), np.zeros(10, bool), 3, seed=0)
    assert (empty == -1).all()


def test_random_users_memory_is_linear_in_draws_not_in_users():
    valid = np.ones(2_000_000, bool)
    tracemalloc.start()
    users, _ = random_users(np.arange(500), valid, 10, seed=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000 * 8 + 1_000_000          # the valid list itself; never [S, num_users] (8 GB here)
    assert (users >= 0).all() and not (users == np.arange(500)[:, None]).any()


# ----------------------------------------------------------------------------- user-level candidates
@pytest.mark.parametrize("limit", [1, 5, 40, 1000])
def test_candidates_from_users_match_a_loop(limit):
    rng = np.random.default_rng(limit)
    counts = rng.integers(0, 30, 25)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    rows = rng.permutation(offsets[-1])
    matched = np.where(rng.random((8, 6)) < 0.8, rng.integers(0, 25, (8, 6)), -1)
    sims = rng.random((8, 6)).astype(np.float32)
    got = candidates_from_users(matched, sims, (offsets, rows), limit)
    for s in range(8):
        want = [(r, sims[s, m]) for m, u in enumerate(matched[s]) if u >= 0
                for r in rows[offsets[u]:offsets[u + 1]][::-1]][:limit]
        np.testing.assert_array_equal(got.of(s), [r for r, _ in want])
        np.testing.assert_array_equal(got.scores[got.offsets[s]:got.offsets[s + 1]], [x for _, x in want])


# ----------------------------------------------------------------------------- chunk vocabulary
@pytest.mark.parametrize("num_ids", [7, 300])
def test_chunk_vocab_equals_the_sort_per_row(num_ids, monkeypatch):
    rng = np.random.default_rng(num_ids)
    ids = np.where(rng.random((9, 40)) < 0.3, 0, rng.integers(0, num_ids, (9, 40))).astype(np.int32)
    want_vocab, want_remapped, want_size = local_vocab(ids)
    for cells in (1 << 24, 0):                                   # the presence table, then the fallback
        monkeypatch.setattr(chunk_mod, "DENSE_VOCAB_MAX_CELLS", cells)
        vocab, remapped, size = chunk_mod.chunk_vocab(ids, num_ids)
        np.testing.assert_array_equal(size, want_size)
        np.testing.assert_array_equal(remapped, want_remapped)
        np.testing.assert_array_equal(vocab, want_vocab[:, :vocab.shape[1]])
        assert vocab.shape[1] == size.max() and (want_vocab[:, vocab.shape[1]:] == 0).all()


@pytest.mark.parametrize("row_users", ["own", "original"])
def test_make_chunk_is_unchanged_by_the_presence_table(tiny_cloud, row_users, monkeypatch):
    cfg, data, _, _, vectors, rows = tiny_cloud
    owners = np.concatenate([np.arange(min(6, len(data.users))), [-1, -1]])
    args = (data.table, vectors, rows, owners, data.users,
            chunk_mod.ChunkSpec(cfg.retrieval.max_candidates, 8, row_users, 0))
    got = chunk_mod.make_chunk(*args)
    monkeypatch.setattr(chunk_mod, "chunk_vocab", lambda ids, n: local_vocab(ids))     # the sort per row
    want = chunk_mod.make_chunk(*args)
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
