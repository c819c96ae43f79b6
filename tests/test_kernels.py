"""Tests for kernels.masked_auc and kernels.exact_topk against independent references."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import jax.numpy as jnp

from kernels import auc as auc_mod
from kernels import exact_topk, masked_auc
from kernels.auc import auc_1d

GARBAGE = np.array([np.nan, np.inf, -np.inf, 1e30, -1e30, 7.0], dtype=np.float32)


def _random_auc_batch(rng, u, t, n_levels):
    """Rows of varying valid length, discrete (heavily tied) scores, garbage padding."""
    scores = rng.integers(0, n_levels, size=(u, t)).astype(np.float32) / n_levels
    labels = rng.integers(0, 2, size=(u, t)).astype(np.float32)
    lengths = rng.integers(2, t + 1, size=u)
    mask = np.arange(t)[None, :] < lengths[:, None]
    # Shuffle padding positions within each row so padding is not only a suffix.
    for r in range(u):
        mask[r] = rng.permutation(mask[r])
    pad = ~mask
    scores[pad] = rng.choice(GARBAGE, size=pad.sum())
    labels[pad] = rng.choice(np.array([0.0, 1.0, np.nan], np.float32), size=pad.sum())
    return scores, labels, mask


def _sk_ref(scores, labels, mask):
    ref = np.full(scores.shape[0], np.nan)
    ok = np.zeros(scores.shape[0], bool)
    for r in range(scores.shape[0]):
        y = labels[r, mask[r]]
        s = scores[r, mask[r]]
        if y.size and 0 < y.sum() < y.size:
            ref[r] = roc_auc_score(y, s)
            ok[r] = True
    return ref, ok


@pytest.mark.parametrize("n_levels", [3, 10, 1000])
def test_masked_auc_matches_sklearn(n_levels):
    rng = np.random.default_rng(n_levels)
    scores, labels, mask = _random_auc_batch(rng, u=64, t=97, n_levels=n_levels)
    auc, valid = masked_auc(scores, labels, mask)
    auc, valid = np.asarray(auc), np.asarray(valid)
    assert auc.shape == (64,) and auc.dtype == np.float32
    assert valid.shape == (64,) and valid.dtype == np.bool_
    ref, ok = _sk_ref(scores, labels, mask)
    np.testing.assert_array_equal(valid, ok)
    assert ok.sum() > 50
    np.testing.assert_allclose(auc[ok], ref[ok], rtol=0, atol=1e-6)
    assert np.all(np.isnan(auc[~ok]))


def test_masked_auc_int_labels_and_all_ties():
    scores = np.array([[0.5, 0.5, 0.5, 0.5, np.nan]], np.float32)
    labels = np.array([[1, 0, 1, 0, 1]], np.int32)
    mask = np.array([[True, True, True, True, False]])
    auc, valid = masked_auc(scores, labels, mask)
    assert bool(valid[0])
    assert float(auc[0]) == pytest.approx(0.5)
    # Perfect and inverted orderings.
    s = np.array([[0.1, 0.2, 0.9, 0.8], [0.9, 0.8, 0.1, 0.2]], np.float32)
    y = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.int32)
    auc, _ = masked_auc(s, y, np.ones_like(s, bool))
    np.testing.assert_allclose(np.asarray(auc), [1.0, 0.0])


def test_masked_auc_degenerate_rows():
    t = 8
    scores = np.linspace(0, 1, 4 * t, dtype=np.float32).reshape(4, t)
    labels = np.zeros((4, t), np.float32)
    mask = np.ones((4, t), bool)
    labels[0] = 1.0                      # only positives
    labels[1] = 0.0                      # only negatives
    mask[2] = False                      # all padding
    scores[2] = np.nan
    labels[3, :4] = 1.0                  # positives only among valid entries
    mask[3, 4:] = False
    scores[3, 4:] = np.inf
    auc, valid = masked_auc(scores, labels, mask)
    assert not np.asarray(valid).any()
    assert np.isnan(np.asarray(auc)).all()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_masked_auc_non_finite_scores_make_the_row_invalid_never_auc_one(bad):
    # A diverged model (every score NaN, or one score infinite) has no AUC; before, all-NaN scored 1.0.
    labels = np.array([[1, 0, 1, 0, 1, 0]] * 3, np.float32)
    mask = np.ones((3, 6), bool)
    scores = np.array([[0.9, 0.1, 0.8, 0.2, 0.7, 0.3]] * 3, np.float32)
    scores[0, :] = bad                       # every score non-finite
    scores[1, 3] = bad                       # one valid score non-finite
    scores[2, 5] = bad
    mask[2, 5] = False                       # ... but masked: the row stays valid
    auc, valid = masked_auc(scores, labels, mask)
    np.testing.assert_array_equal(np.asarray(valid), [False, False, True])
    assert np.isnan(np.asarray(auc)[:2]).all()
    ref = roc_auc_score(labels[2, :5], scores[2, :5])
    np.testing.assert_allclose(np.asarray(auc)[2], ref, rtol=1e-6)


def test_masked_auc_garbage_padding_does_not_matter():
    rng = np.random.default_rng(0)
    scores, labels, mask = _random_auc_batch(rng, u=16, t=40, n_levels=5)
    a1, v1 = masked_auc(scores, labels, mask)
    scores2 = scores.copy()
    scores2[~mask] = -1e30
    labels2 = labels.copy()
    labels2[~mask] = 1.0
    a2, v2 = masked_auc(scores2, labels2, mask)
    np.testing.assert_array_equal(np.asarray(v1), np.asarray(v2))
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))


def test_auc_1d():
    s = np.array([0.1, 0.4, 0.35, 0.8, np.nan], np.float32)
    y = np.array([0, 0, 1, 1, 0])
    m = np.array([True, True, True, True, False])
    auc, valid = auc_1d(s, y, m)
    assert bool(valid)
    assert float(auc) == pytest.approx(roc_auc_score(y[:4], s[:4]))
    auc, valid = auc_1d(s[:4], y[:4])
    assert float(auc) == pytest.approx(0.75)


def test_masked_auc_compiles_once_per_shape():
    rng = np.random.default_rng(1)
    # A shape no other test uses, so the first call must trace.
    scores, labels, mask = _random_auc_batch(rng, u=5, t=23, n_levels=4)
    before = auc_mod._TRACE_COUNT["masked_auc"]
    masked_auc(scores, labels, mask)
    after_first = auc_mod._TRACE_COUNT["masked_auc"]
    scores2, labels2, mask2 = _random_auc_batch(rng, u=5, t=23, n_levels=4)
    masked_auc(scores2, labels2, mask2)
    masked_auc(jnp.asarray(scores2), jnp.asarray(labels2), jnp.asarray(mask2))
    assert after_first - before == 1
    assert auc_mod._TRACE_COUNT["masked_auc"] == after_first


# --------------------------------------------------------------------------- top-k


def _np_topk(q, db, k):
    s = q.astype(np.float64) @ db.astype(np.float64).T
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, axis=1), idx


@pytest.mark.parametrize(
    "q_n, n, d, k, block_size, query_block",
    [
        (37, 1000, 16, 10, 128, 8192),   # N not a multiple of block_size
        (20, 50, 8, 7, 4096, 8192),      # N < block_size
        (100, 300, 12, 5, 64, 32),       # several query blocks, ragged last block
        (9, 64, 4, 64, 16, 4),           # k == N, k > block_size
        (3, 1, 4, 1, 4096, 8192),        # N == 1
    ],
)
def test_exact_topk_matches_numpy(q_n, n, d, k, block_size, query_block):
    rng = np.random.default_rng(q_n * 1000 + n)
    q = rng.standard_normal((q_n, d)).astype(np.float32)
    db = rng.standard_normal((n, d)).astype(np.float32)
    scores, idx = exact_topk(q, db, k, block_size=block_size, query_block=query_block)
    scores, idx = np.asarray(scores), np.asarray(idx)
    assert scores.shape == (q_n, k) and scores.dtype == np.float32
    assert idx.shape == (q_n, k) and idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < n
    ref_s, ref_i = _np_topk(q, db, k)
    for r in range(q_n):
        assert set(idx[r].tolist()) == set(ref_i[r].tolist())
    np.testing.assert_allclose(scores, ref_s, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 0)
    # Returned scores are the dot products of the returned indices.
    direct = np.einsum("qd,qkd->qk", q.astype(np.float64), db[idx].astype(np.float64))
    np.testing.assert_allclose(scores, direct, rtol=1e-5, atol=1e-5)


def test_exact_topk_never_returns_padding():
    # All real scores are -inf-free but very negative; padded rows score -inf.
    q = np.ones((4, 3), np.float32)
    db = -1e6 * np.ones((10, 3), np.float32)
    scores, idx = exact_topk(q, db, 10, block_size=4)
    idx = np.asarray(idx)
    assert np.all((idx >= 0) & (idx < 10))
    assert all(sorted(r) == list(range(10)) for r in idx.tolist())


def test_exact_topk_k_too_large():
    q = np.zeros((2, 4), np.float32)
    db = np.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="exceeds"):
        exact_topk(q, db, 6)
    with pytest.raises(ValueError):
        exact_topk(q, db, 0)


def test_exact_topk_sharded_over_four_devices_equals_one_device():
    # The database split over 4 forced host devices (in a subprocess: the device count is fixed when JAX
    # starts) returns exactly what one device returns, ties included, and matches numpy.
    import json
    import os
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import json
        import jax
        import numpy as np
        from kernels.topk import TopK
        rng = np.random.default_rng(0)
        db = rng.standard_normal((1003, 12)).astype(np.float32)
        db[500:520] = db[3]                                   # ties across the shards' boundaries
        q = np.concatenate([rng.standard_normal((40, 12)), db[3:4]]).astype(np.float32)
        four = TopK(db, jax.devices(), block_size=64)
        one = TopK(db, jax.devices()[:1], block_size=64)
        s4, i4 = (np.asarray(a) for a in four.search(q, 25, query_block=16))
        s1, i1 = (np.asarray(a) for a in one.search(q, 25, query_block=16))
        ref = np.argsort(-(q.astype(np.float64) @ db.T.astype(np.float64)), axis=1, kind="stable")[:, :25]
        print(json.dumps({"devices": len(jax.devices()), "shards": len(four.devices),
                          "ids_equal": bool((i4 == i1).all()), "scores_equal": bool((s4 == s1).all()),
                          "tie_ids": i4[-1, :21].tolist(),
                          "numpy_sets": bool(all(set(a) == set(b) for a, b in zip(i4[:-1].tolist(), ref[:-1].tolist())))}))
    """)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": root}
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["devices"] == got["shards"] == 4
    assert got["ids_equal"] and got["scores_equal"] and got["numpy_sets"]
    assert got["tie_ids"] == [3] + list(range(500, 520))              # equal scores: ascending index
