"""User-level matching (embedding, item overlap, random users, owners of sample candidates) and the MPDA
baseline, each against a plain python / numpy reference."""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from coda_jax.cloud.matchings import match_users
from coda_jax.cloud.matching import (MatchInputs, candidates_from_users, pool_by_user,
                                     random_users, top_users, user_vectors, users_from_candidates)
from coda_jax.cloud.overlap import item_sets
from coda_jax.cloud.retrieval import Candidates, ExactSearcher
from coda_jax.config import ConfigError, FinetuneConfig, MpdaConfig, RetrievalConfig, from_dict
from coda_jax.device.chunk import matched_index
from coda_jax.device.submodel import local_model, localize_params
from coda_jax.device.train import finetune, local_criterion, mpda_finetune

from conftest import tiny_config


def _toy_pool(seed=0, num_users=12, num_items=15):
    """A table-like (row_user, item) sorted by user, with a pool of some of its rows."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 9, size=num_users)
    counts[3] = 0                                   # a user without any row
    row_user = np.repeat(np.arange(num_users), counts)
    item = rng.integers(1, num_items + 1, size=row_user.shape[0])
    pool = np.flatnonzero(rng.random(row_user.shape[0]) < 0.8)
    return row_user, item, rng.permutation(pool), num_users, num_items


def test_pool_by_user_groups_rows_in_time_order():
    row_user, _, pool, num_users, _ = _toy_pool()
    offsets, rows = pool_by_user(row_user, pool, num_users)
    for u in range(num_users):
        np.testing.assert_array_equal(rows[offsets[u]:offsets[u + 1]], sorted(r for r in pool if row_user[r] == u))


def test_item_sets_hold_each_users_distinct_pool_items():
    row_user, item, pool, num_users, num_items = _toy_pool(1)
    got = item_sets(item, pool_by_user(row_user, pool, num_users), num_items)
    assert got.shape == (num_users, num_items + 1)
    for u in range(num_users):
        want = sorted(set(item[r] for r in pool if row_user[r] == u))
        np.testing.assert_array_equal(got[u].indices, want)
        assert (got[u].data == 1).all()


def test_top_users_matches_brute_force_and_skips_self_and_empty_users():
    rng = np.random.default_rng(2)
    db = rng.normal(size=(30, 6)).astype(np.float32)
    valid = rng.random(30) < 0.8
    queries = np.array([0, 4, 7, 29])
    users, scores = top_users(ExactSearcher(db), db, queries, 5, valid)
    for i, q in enumerate(queries):
        sims = db @ db[q]
        order = [u for u in np.argsort(-sims, kind="stable") if u != q and valid[u]]
        want = [u for u in order if u in set(np.argsort(-sims)[:6])][:5]
        np.testing.assert_array_equal(users[i][users[i] >= 0], want)
        np.testing.assert_allclose(scores[i][users[i] >= 0], sims[want], rtol=1e-5)
        assert q not in users[i]


def test_users_from_candidates_ranks_owners_by_candidate_count():
    row_user = np.array([0, 0, 1, 1, 1, 2, 2, 3, 4])
    # simulated user 0: rows of users 1 (x3), 2 (x1), 4 (x1); simulated user 1: rows of user 0 (x2), 3 (x1)
    cands = Candidates(offsets=np.array([0, 5, 8]), rows=np.array([2, 3, 4, 5, 8, 0, 1, 7]),
                       scores=np.array([.9, .8, .7, .95, .5, .6, .4, .99], np.float32))
    users, scores = users_from_candidates(cands, row_user, 3)
    np.testing.assert_array_equal(users, [[1, 2, 4], [0, 3, -1]])   # 2 before 4: same count, better score
    np.testing.assert_allclose(scores[0], [3 / 5, 1 / 5, 1 / 5])


def test_random_users_are_distinct_valid_others_and_seeded():
    valid = np.ones(20, bool)
    valid[[2, 5]] = False
    sim = np.array([0, 1, 2, 19])
    users, _ = random_users(sim, valid, 6, seed=3)
    for s, row in zip(sim, users):
        assert len(set(row)) == 6 and s not in row and valid[row].all()
    np.testing.assert_array_equal(users, random_users(sim, valid, 6, seed=3)[0])
    assert not np.array_equal(users, random_users(sim, valid, 6, seed=4)[0])
    few, _ = random_users(np.array([0]), np.eye(20, dtype=bool)[1] | np.eye(20, dtype=bool)[0], 3, seed=0)
    np.testing.assert_array_equal(few, [[1, -1, -1]])


def test_candidates_from_users_concatenate_latest_rows_first_up_to_the_cap():
    row_user, _, pool, num_users, _ = _toy_pool(4)
    lists = pool_by_user(row_user, pool, num_users)
    matched = np.array([[5, 1, 3, -1], [0, 2, 4, 6], [-1, -1, -1, -1]])
    sims = np.arange(12, dtype=np.float32).reshape(3, 4)
    cands = candidates_from_users(matched, sims, lists, limit=10)
    off, rows = lists
    for s in range(3):
        want = [r for u in matched[s] if u >= 0 for r in rows[off[u]:off[u + 1]][::-1]][:10]
        np.testing.assert_array_equal(cands.of(s), want)
    assert cands.counts()[2] == 0


def test_user_vectors_use_the_user_embedding_or_mean_sample_vectors():
    row_user, _, pool, num_users, _ = _toy_pool(5)
    lists = pool_by_user(row_user, pool, num_users)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(row_user.shape[0], 4)).astype(np.float32)
    emb = rng.normal(size=(num_users, 3)).astype(np.float32)
    got = user_vectors({"user_embed": {"embedding": emb}}, vectors, lists)
    centred = emb - emb.mean(0)
    has = np.diff(lists[0]) > 0
    np.testing.assert_allclose(got[has], (centred / np.linalg.norm(centred, axis=1, keepdims=True))[has], rtol=1e-5)
    assert (got[~has] == 0).all()
    got = user_vectors({}, vectors, lists)
    for u in np.flatnonzero(has):
        m = vectors[[r for r in pool if row_user[r] == u]].mean(0)
        np.testing.assert_allclose(got[u], m / np.linalg.norm(m), rtol=1e-4, atol=1e-6)


def test_match_users_by_item_overlap_finds_the_user_sharing_most_items():
    row_user = np.repeat(np.arange(4), 4)
    item = np.array([1, 2, 3, 4,  1, 2, 3, 9,  7, 8, 9, 10,  1, 2, 11, 12])
    lists = pool_by_user(row_user, np.arange(16), 4)
    cfg = RetrievalConfig(matching="item_overlap", backend="exact")
    users, _ = match_users(MatchInputs(cfg, {}, np.zeros((16, 2), np.float32), item, 12, lists, np.array([0, 2]), 2, 0))
    np.testing.assert_array_equal(users, [[1, 3], [1, -1]])      # user 2 shares items with user 1 only


def test_matched_index_takes_each_matched_users_latest_rows():
    from coda_jax.cloud.output import UserRows

    row_user, _, pool, num_users, _ = _toy_pool(6)
    lists = pool_by_user(row_user, pool, num_users)
    matched = np.array([[1, 3, -1], [4, 0, 2]])
    empty = (np.zeros(3, np.int64), np.zeros(0, np.int64))
    rows = UserRows(local=empty, candidates=empty, random=empty, test=empty, matched_users=matched, pool=lists)
    index, mask = matched_index(rows, np.array([1, -1, 0]), per_user=3)
    assert index.shape == (3, 9) and not mask[1].any()
    off, flat = lists
    for slot, s in ((0, 1), (2, 0)):
        for j, u in enumerate(matched[s]):
            want = [] if u < 0 else list(flat[off[u]:off[u + 1]][-3:])
            np.testing.assert_array_equal(index[slot, 3 * j:3 * j + 3][mask[slot, 3 * j:3 * j + 3]], want)


@pytest.mark.parametrize("text, key", [
    ("retrieval:\n  matching: users\n", "retrieval.matching"),
    ("retrieval:\n  matched_users: 0\n", "retrieval.matched_users"),
    ("mpda:\n  steps: 0\n", "mpda.steps"),
    ("mpda:\n  rows_per_user: 0\n", "mpda.rows_per_user"),
])
def test_matching_and_mpda_config_errors_name_the_key(text, key):
    import yaml

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        from_dict(yaml.safe_load(text))


# ----------------------------------------------------------------------------- MPDA


def _mpda_setup(tiny_cloud, user=3, m=3, r=8):
    from coda_jax.device.chunk import ChunkSpec, make_chunk

    cfg, data, model, params, vectors, rows = tiny_cloud
    rows = dataclasses.replace(rows, matched_users=rows.matched_users[:, :m])
    chunk = make_chunk(data.table, vectors, rows, np.array([user]), data.users, ChunkSpec.from_config(cfg, r))
    c = jax.tree_util.tree_map(lambda x: x[0], chunk)
    lm = local_model(model, c.vocab.shape[0], c.user_vocab.shape[0])
    return c, lm, localize_params(params, c.vocab, c.user_vocab)


def test_mpda_scan_equals_a_python_loop_over_matched_users(tiny_cloud):
    """The vectorized MPDA (lax.scan, jnp.where acceptance) against the rule written as a python loop."""
    m, r = 3, 8
    c, lm, p0 = _mpda_setup(tiny_cloud, m=m, r=r)
    ft = FinetuneConfig(steps=6, batch_size=8, learning_rate=5e-2)
    mp = MpdaConfig(rows_per_user=r, steps=5)
    key = jax.random.PRNGKey(11)
    got, accepted = jax.jit(mpda_finetune, static_argnums=(0, 4, 5))(lm, p0, c, key, ft, mp)

    tune = jax.jit(finetune, static_argnums=(0, 5))
    criterion = jax.jit(local_criterion, static_argnums=0)
    params, best, want = p0, float(criterion(lm, p0, c.local)), []
    keys = jax.random.split(jax.random.fold_in(key, 1), m)
    for j in range(m):
        rows = jax.tree_util.tree_map(lambda x: x[j * r:(j + 1) * r], c.matched)
        trial = tune(lm, params, (rows, rows.mask.astype(jnp.float32)), None, keys[j],
                     dataclasses.replace(ft, steps=mp.steps))
        value = float(criterion(lm, trial, c.local))
        ok = value > best + 1e-7 and bool(rows.mask.any())
        want.append(ok)
        if ok:
            params, best = trial, value
    params = tune(lm, params, (c.local, c.local.mask.astype(jnp.float32)), None, key, ft)
    np.testing.assert_array_equal(np.asarray(accepted), want)
    chex.assert_trees_all_close(got, params, rtol=1e-4, atol=1e-5)


def test_mpda_without_matched_rows_is_local_finetuning(tiny_cloud):
    m, r = 2, 8
    c, lm, p0 = _mpda_setup(tiny_cloud, m=m, r=r)
    empty = c.matched.replace(mask=jnp.zeros_like(c.matched.mask))
    ft = FinetuneConfig(steps=6, batch_size=8, learning_rate=5e-2)
    key = jax.random.PRNGKey(2)
    got, accepted = mpda_finetune(lm, p0, c.replace(matched=empty), key, ft, MpdaConfig(rows_per_user=r, steps=3))
    assert len(accepted) == m and not np.asarray(accepted).any()
    chex.assert_trees_all_close(got, finetune(lm, p0, (c.local, c.local.mask.astype(jnp.float32)), None,
                                              key, ft), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("matching", ["user_embedding", "random_users"])
def test_match_users_dispatch(matching):
    row_user, item, pool, num_users, num_items = _toy_pool(7)
    lists = pool_by_user(row_user, pool, num_users)
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(num_users, 4)).astype(np.float32)
    cfg = RetrievalConfig(matching=matching, backend="exact")
    sim = np.array([0, 5, 9])
    users, _ = match_users(MatchInputs(cfg, {"user_embed": {"embedding": emb}},
                                       np.zeros((len(row_user), 2), np.float32), item, num_items, lists, sim, 4, 0))
    valid = np.diff(lists[0]) > 0
    for s, row in zip(sim, users):
        got = row[row >= 0]
        assert s not in got and valid[got].all() and len(set(got)) == len(got) == 4
    if matching == "user_embedding":
        want, _ = top_users(ExactSearcher(user_vectors({"user_embed": {"embedding": emb}}, None, lists)),
                            user_vectors({"user_embed": {"embedding": emb}}, None, lists), sim, 4, valid)
        np.testing.assert_array_equal(users, want)


@pytest.mark.slow
@pytest.mark.parametrize("matching", ["user_embedding"])
def test_simulate_with_user_level_matching_and_mpda(matching):
    from coda_jax.simulate import simulate

    methods = ("global", "local", "coda", "mpda")
    cfg = tiny_config(methods=methods)
    cfg = dataclasses.replace(
        cfg, retrieval=dataclasses.replace(cfg.retrieval, matching=matching, matched_users=3, backend="exact",
                                           recall_queries=0),
        mpda=MpdaConfig(rows_per_user=8, steps=3), synthetic=dataclasses.replace(cfg.synthetic, num_users=16))
    res = simulate(cfg, show_progress=False)
    assert set(res.methods) == set(methods) | {"coarse-subset"}                    # the filter's control, added
    assert res.retrieval["matching"] == matching and res.retrieval["mean_matched_users"] == 3
    assert 0 < res.retrieval["mean_candidates"] <= cfg.retrieval.max_candidates
    assert 0 <= res.augmentation["mpda"] <= 3 * 8
    for m in methods:
        assert 0.0 <= res.methods[m]["auc"] <= 1.0
    assert "mpda" in res.comparisons
    ovh = res.overhead["mpda"]
    assert res.augmentation["mpda"] <= ovh["matched_rows"] <= 3 * 8
    assert ovh["bytes_down"] > res.overhead["model_copy_bytes"]
