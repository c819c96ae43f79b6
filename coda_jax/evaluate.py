"""Evaluation: per-user AUC of every method on a chunk, and paired bootstrap intervals over users."""

from __future__ import annotations

import numpy as np

from coda_jax.config import from_dict, to_dict
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


RESULT_NEUTRAL = ("seed", "methods", "engine", "eval")
"""Config sections runs may differ in and still be combined: the seed, the method list, and settings that do
not change a user's expected result (chunking and padding, tested to be result-neutral; bootstrap settings;
``eval.repeats``, which averages device keys)."""


def combine_runs(results: list[dict], num_samples: int = 2000, confidence: float = 0.95,
                 reference: str = "coda") -> dict:
    """Average several runs that differ only in their seed, user by user.

    Each run's per-user AUC carries the noise of its own cloud model, retrieval and fine-tuning draws; the
    mean over runs of each user's AUC has less of it, so paired differences between methods get narrower
    intervals than any single run's. Every run weighs the same, also one with ``eval.repeats`` > 1: its repeats
    share one cloud model and candidate set, and on MovieLens 100K most of a run's noise comes from those.

    Args:
      results: the ``results.json`` dicts of the runs (``Results.to_json()``).
      reference: the method compared against every other one.

    Returns:
      ``{"runs", "seeds", "users", "methods": {name: {"auc", "per_run_auc"}}, "comparisons": {name: {mean,
      low, high}}}`` over the methods every run has and the users every run evaluated.

    Raises:
      ValueError: fewer than two runs, or runs whose configs differ outside :data:`RESULT_NEUTRAL` (the
        message names the first differing section).
    """
    if len(results) < 2:
        raise ValueError(f"combine_runs: needs at least two runs, got {len(results)}")

    def settings(r: dict) -> dict:      # through the config class, so keys added since a run take defaults
        return {k: v for k, v in to_dict(from_dict(r["config"])).items() if k not in RESULT_NEUTRAL}

    base = settings(results[0])
    for i, r in enumerate(results[1:], start=1):
        cfg = settings(r)
        if cfg != base:
            key = next(k for k in sorted(set(base) | set(cfg)) if base.get(k) != cfg.get(k))
            raise ValueError(f"combine_runs: run {i} differs from run 0 in config section {key!r} "
                             f"(only {', '.join(RESULT_NEUTRAL)} may differ)")
    methods = [m for m in results[0]["methods"] if all(m in r["methods"] for r in results)]
    users = sorted(set.intersection(*[set(r["methods"][m]["per_user"]) for r in results for m in methods]))
    if not users:
        raise ValueError("combine_runs: no user was evaluated in every run")
    mean_auc = {m: np.mean([[r["methods"][m]["per_user"][u] for u in users] for r in results], axis=0)
                for m in methods}
    out = {"runs": len(results), "seeds": [r["config"]["seed"] for r in results], "users": len(users),
           "methods": {m: {"auc": float(mean_auc[m].mean()),
                           "per_run_auc": [float(r["methods"][m]["auc"]) for r in results]} for m in methods},
           "comparisons": {}}
    if reference in mean_auc:
        for m in methods:
            if m != reference:
                out["comparisons"][m] = paired_bootstrap(mean_auc[reference], mean_auc[m], num_samples, confidence)
    return out
