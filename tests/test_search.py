"""Tests for :mod:`coda_jax.cloud.search`: derived ScaNN settings and calibration against numpy brute force,
backend choice, blocked queries, the run's recall report (sample and user-level matching)."""

from __future__ import annotations

import numpy as np
import pytest

from coda_jax.cloud import search
from coda_jax.cloud.matching import MatchInputs, pool_by_user
from coda_jax.cloud.matchings import match_users
from coda_jax.cloud.search import (ExactSearcher, ScannSearcher, ScannSettings, choose_backend,
                                   derive_scann_settings, make_searcher, recall_at_k, report_line, search_report)
from coda_jax.config import RetrievalConfig
from sims.bench_retrieval import clustered_pool

needs_scann = pytest.mark.skipif(not search.scann_available(), reason="scann is not importable here")


def numpy_topk(q: np.ndarray, db: np.ndarray, k: int) -> np.ndarray:
    """int [Q, k] ids of the k largest dot products (float64 brute force)."""
    s = q.astype(np.float64) @ db.astype(np.float64).T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


@pytest.fixture(scope="module")
def pool_50k():
    return clustered_pool(50_000, 32, 300, seed=3)


@needs_scann
def test_derived_settings_reach_recall_on_a_clustered_pool(pool_50k):
    db, q = pool_50k
    want = numpy_topk(q, db, 30)
    s = derive_scann_settings(*db.shape, 30)
    assert s.num_leaves == round(np.sqrt(50_000)) and s.leaves_to_search == 32 and not s.quantize
    searcher = ScannSearcher(db, 30, target_recall=0.0)           # the derived settings alone, no calibration
    idx, scores = searcher.search(q, 30)
    assert recall_at_k(idx, want) >= 0.9
    # scores are exact float32 dot products of the returned rows (no quantisation at width 32)
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", q, db[idx]), atol=1e-5)


@needs_scann
def test_calibration_searches_more_leaves_until_the_target(pool_50k):
    db, q = pool_50k
    want = numpy_topk(q, db, 30)
    start = ScannSettings(num_leaves=224, leaves_to_search=1, quantize=False, dims_per_block=0, reorder=0)
    low = ScannSearcher(db, 30, target_recall=0.0, settings=start)
    assert recall_at_k(low.search(q, 30)[0], want) < 0.9          # one leaf of 224 misses neighbours
    cal = ScannSearcher(db, 30, target_recall=0.95, settings=start)
    steps = [c["leaves_to_search"] for c in cal.calibration]
    assert steps[0] == 1 and steps == sorted(steps) and len(steps) > 1 and steps[-1] == cal.settings.leaves_to_search
    assert cal.calibration[-1]["recall"] >= 0.95 > cal.calibration[-2]["recall"]
    assert recall_at_k(cal.search(q, 30)[0], want) >= 0.9            # held on queries it was not calibrated on


def test_derived_settings_by_pool_and_width():
    assert derive_scann_settings(1999, 32, 30).num_leaves == 0        # small pool: brute force
    wide = derive_scann_settings(1_000_000, 128, 30)
    assert (wide.num_leaves, wide.leaves_to_search, wide.quantize, wide.reorder) == (1000, 50, True, 300)
    assert derive_scann_settings(10_000, 32, 30).num_leaves == 100
    assert derive_scann_settings(4000, 32, 30).leaves_to_search == 32          # 63 leaves: at least 32


def test_choose_backend_by_pool_queries_and_platform():
    assert choose_backend(1000, 32, 10**6, "cpu", True)[0] == "exact"          # small pool
    assert choose_backend(50_000, 32, 100, "cpu", True)[0] == "exact"          # few queries
    assert choose_backend(80_000, 32, 80_000, "cpu", True)[0] == "scann"       # MovieLens 100K's matching
    assert choose_backend(80_000, 32, 80_000, "cpu", False)[0] == "exact"      # no scann: exact
    assert choose_backend(80_000, 32, 80_000, "gpu", True)[0] == "exact"       # accelerator: exact
    assert choose_backend(10**8, 64, 10**8, "gpu", True)[0] == "scann"         # ... up to a large pool
    _, why = choose_backend(80_000, 32, 80_000, "cpu", True)
    assert "flops" in why and "cpu" in why


def test_auto_picks_exact_for_a_small_pool():
    rng = np.random.default_rng(0)
    db = rng.normal(size=(500, 8)).astype(np.float32)
    s = make_searcher(db, RetrievalConfig(backend="auto", neighbors=5))
    assert isinstance(s, ExactSearcher) and s.backend == "exact" and "500" in s.reason
    np.testing.assert_array_equal(s.search(db[:20], 5)[0], numpy_topk(db[:20], db, 5))


def test_scann_requested_where_it_does_not_import_falls_back_to_exact(monkeypatch):
    monkeypatch.setattr(search, "scann_available", lambda: False)
    db = np.random.default_rng(1).normal(size=(3000, 8)).astype(np.float32)
    for backend in ("scann", "auto"):
        s = make_searcher(db, RetrievalConfig(backend=backend), queries=10**6)
        assert isinstance(s, ExactSearcher) and "not importable" in s.reason


def test_queries_in_blocks_equal_queries_at_once(monkeypatch):
    db, q = clustered_pool(5000, 16, 700, seed=5)
    exact = ExactSearcher(db)
    s_all, i_all = exact.index.search(q, 10, query_block=700)
    s_blk, i_blk = exact.index.search(q, 10, query_block=64)
    np.testing.assert_array_equal(np.asarray(i_all), np.asarray(i_blk))
    np.testing.assert_array_equal(np.asarray(s_all), np.asarray(s_blk))
    if search.scann_available():
        scann = ScannSearcher(db, 10)
        whole = scann.search(q, 10)
        monkeypatch.setattr(search, "QUERY_BLOCK", 97)
        blocks = scann.search(q, 10)
        np.testing.assert_array_equal(whole[0], blocks[0])
        np.testing.assert_allclose(whole[1], blocks[1], rtol=0, atol=1e-6)   # ScaNN's SIMD path varies by batch


@needs_scann
def test_search_report_measures_recall_of_the_approximate_searcher_only():
    db, _ = clustered_pool(6000, 16, 0, seed=2)
    rows = np.arange(0, 6000, 7)
    scann = make_searcher(db, RetrievalConfig(backend="scann", neighbors=10, target_recall=0.0))
    rep = search_report(scann, db, 10, 200, seed=4, rows=rows)
    drawn = db[np.random.default_rng(4).choice(rows, size=200, replace=False)]
    assert rep["backend"] == "scann" and rep["recall_queries"] == 200 and rep["k"] == 10
    assert rep["recall_at_k"] == pytest.approx(recall_at_k(scann.search(drawn, 10)[0], numpy_topk(drawn, db, 10)))
    assert "recall@10" in report_line(rep)
    ex = search_report(ExactSearcher(db, "because"), db, 10, 200, seed=4, rows=rows)
    assert ex["recall_at_k"] is None and ex["recall_queries"] == 0 and ex["backend_reason"] == "because"
    assert report_line(ex) == "retrieval: exact (because)" and report_line({"backend": None}) is None


@needs_scann
def test_user_level_matching_reports_its_recall_when_approximate():
    n = 3000                                                    # users, one pool row each: ScaNN partitions
    emb, _ = clustered_pool(n, 8, 0, seed=6)
    lists = pool_by_user(np.arange(n), np.arange(n), n)
    sim = np.arange(0, n, 10)
    rep: dict = {}
    cfg = RetrievalConfig(matching="user_embedding", backend="scann", recall_queries=100)
    users, _ = match_users(MatchInputs(cfg, {"user_embed": {"embedding": emb}}, np.zeros((n, 2), np.float32),
                                       np.zeros(n, np.int64), 1, lists, sim, 5, 0, rep))
    assert rep["backend"] == "scann" and rep["recall_queries"] == 100 and rep["k"] == 6
    assert 0.9 <= rep["recall_at_k"] <= 1.0
    assert users.shape == (len(sim), 5)
