"""Evaluation: per-user AUC of every method on a chunk, and paired bootstrap intervals over users."""

from __future__ import annotations

import numpy as np

from kernels.auc import masked_auc


def chunk_auc(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-user test AUC of each method.

    Args:
      logits: float [U, M, T] test logits per user and method.
      labels: float [U, T]; mask: bool [U, T].

    Returns:
      ``(auc float [M, U], valid bool [U])``; a user is valid when its test rows hold both classes.
    """
    u, m, t = logits.shape
    flat_scores = np.swapaxes(logits, 0, 1).reshape(m * u, t)
    flat_labels = np.broadcast_to(labels, (m, u, t)).reshape(m * u, t)
    flat_mask = np.broadcast_to(mask, (m, u, t)).reshape(m * u, t)
    auc, valid = masked_auc(flat_scores, flat_labels, flat_mask)
    return np.asarray(auc).reshape(m, u), np.asarray(valid).reshape(m, u)[0]


def paired_bootstrap(a: np.ndarray, b: np.ndarray, num_samples: int, confidence: float,
                     seed: int = 0) -> dict:
    """Mean of ``a - b`` over users with a percentile bootstrap interval (users resampled with replacement).

    Args:
      a, b: float [n] per-user metrics of two methods on the same users.

    Returns:
      ``{"mean", "low", "high"}`` (low/high are NaN when ``num_samples`` is 0 or n is 0).
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = d.shape[0]
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
    if num_samples == 0:
        return {"mean": float(d.mean()), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    means = np.empty(num_samples)
    for start in range(0, num_samples, 256):        # bounded memory: 256 resamples at a time
        size = min(256, num_samples - start)
        means[start:start + size] = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high)}
