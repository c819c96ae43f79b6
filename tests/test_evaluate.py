"""evaluate.paired_bootstrap against a plain numpy reference (the same resamples, drawn one at a time)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coda_jax.evaluate import paired_bootstrap


def reference(a, b, num_samples: int, confidence: float, seed: int = 0) -> dict:
    """Percentile bootstrap of mean(a - b), users drawn with replacement; the same generator calls in blocks of
    256 resamples as paired_bootstrap makes."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, num_samples, 256):
        idx = rng.integers(0, len(d), size=(min(256, num_samples - start), len(d)))
        means += [float(np.mean([d[i] for i in row])) for row in idx]
    alpha = (1 - confidence) / 2
    return {"mean": float(np.mean(d)), "low": float(np.quantile(means, alpha)),
            "high": float(np.quantile(means, 1 - alpha))}


@pytest.mark.parametrize("n, num_samples, confidence", [(30, 1000, 0.95), (7, 300, 0.9), (2, 50, 0.95)])
def test_paired_bootstrap_matches_a_numpy_reference(n, num_samples, confidence):
    rng = np.random.default_rng(n)
    a, b = rng.uniform(0.4, 0.9, n), rng.uniform(0.4, 0.9, n)
    got = paired_bootstrap(a, b, num_samples, confidence, seed=3)
    assert got == pytest.approx(reference(a, b, num_samples, confidence, seed=3))
    assert got["low"] <= got["mean"] <= got["high"]


def test_paired_bootstrap_draws_no_interval_from_one_user():
    got = paired_bootstrap(np.array([0.8]), np.array([0.6]), 50, 0.95)     # its resamples are all that one user
    assert got["mean"] == pytest.approx(0.2) and math.isnan(got["low"]) and math.isnan(got["high"])


def test_paired_bootstrap_interval_covers_the_normal_approximation():
    rng = np.random.default_rng(0)
    d = rng.normal(0.01, 0.1, 2000)
    got = paired_bootstrap(d, np.zeros_like(d), 2000, 0.95)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert got["mean"] == pytest.approx(d.mean())
    assert got["low"] == pytest.approx(d.mean() - half, abs=0.002)
    assert got["high"] == pytest.approx(d.mean() + half, abs=0.002)


def test_paired_bootstrap_without_users_or_resamples():
    empty = paired_bootstrap(np.array([]), np.array([]), 100, 0.95)
    assert all(math.isnan(v) for v in empty.values())
    plain = paired_bootstrap(np.array([0.7, 0.5]), np.array([0.6, 0.6]), 0, 0.95)
    assert plain["mean"] == pytest.approx(0.0) and math.isnan(plain["low"]) and math.isnan(plain["high"])


def test_grouped_auc_matches_sklearn_per_group_with_ties_and_bad_groups():
    from sklearn.metrics import roc_auc_score

    from coda_jax.evaluate import grouped_auc

    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 40, size=60)
    owner = np.repeat(np.arange(60), sizes)
    perm = rng.permutation(owner.shape[0])                  # rows of a group need not be contiguous
    owner = owner[perm]
    scores = np.round(rng.normal(size=owner.shape[0]), 1)   # rounding makes ties
    labels = (rng.random(owner.shape[0]) < 0.4).astype(np.float32)
    scores[owner == 7] = np.where(np.arange((owner == 7).sum()) == 0, np.nan, 1.0)   # a non-finite score
    got = grouped_auc(owner, scores, labels, 62)             # groups 60, 61 have no rows
    for g in range(62):
        y, s = labels[owner == g], scores[owner == g]
        if g == 7 or len(np.unique(y)) < 2:
            assert np.isnan(got[g]), g
        else:
            assert got[g] == pytest.approx(roc_auc_score(y, s), abs=1e-12), g
