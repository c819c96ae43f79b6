"""Evaluation: paired bootstrap intervals over users, and combining runs of different seeds. (Per-user AUCs
are computed inside the compiled device stage: :func:`coda_jax.device.stage.finish_user`.)"""

from __future__ import annotations

import numpy as np

from coda_jax.config import data_seed, drop_retired, from_dict, to_dict


def grouped_auc(owner: np.ndarray, scores: np.ndarray, labels: np.ndarray, num_groups: int) -> np.ndarray:
    """AUC of each group's rows (ties count one half), in O(n log n) over all rows at once, no padding.

    The host-side twin of :func:`kernels.auc.masked_auc` for ragged groups (one user's test rows each): the
    Mann-Whitney statistic from tie-averaged ranks within each group.

    Args:
      owner: int [n] group of each row, in ``0..num_groups-1``.
      scores: float [n] scores.
      labels: float / bool [n] 0/1 labels.

    Returns:
      float64 [num_groups]: NaN for a group without both classes or with a non-finite score.
    """
    owner = np.asarray(owner, np.int64)
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    n = owner.shape[0]
    order = np.lexsort((scores, owner))
    o, s, y = owner[order], scores[order], labels[order]
    count = np.bincount(o, minlength=num_groups)
    start = np.concatenate([[0], np.cumsum(count)[:-1]])
    rank = np.arange(n) - start[o] + 1.0                             # 1-based rank within the group
    tie = np.concatenate([[True], (o[1:] != o[:-1]) | (s[1:] != s[:-1])]) if n else np.zeros(0, bool)
    tie_id = np.cumsum(tie) - 1
    rank = (np.bincount(tie_id, weights=rank) / np.bincount(tie_id))[tie_id] if n else rank
    pos = np.bincount(o, weights=y, minlength=num_groups)
    neg = count - pos
    rank_sum = np.bincount(o, weights=rank * y, minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - pos * (pos + 1) / 2.0) / (pos * neg)
    bad = np.bincount(o, weights=~np.isfinite(s), minlength=num_groups) > 0
    auc[(pos == 0) | (neg == 0) | bad] = np.nan
    return auc


MIN_INTERVAL_USERS = 2
"""Fewest users a bootstrap interval over users is drawn from: one user's resamples are all that user, an
interval of width 0 that says nothing (shown as n/a)."""

FEW_USERS = 30
"""Below this many evaluated users a run's table warns that its intervals over users are rough."""


def paired_bootstrap(a: np.ndarray, b: np.ndarray, num_samples: int, confidence: float,
                     seed: int = 0) -> dict:
    """Mean of ``a - b`` over users with a percentile bootstrap interval (users resampled with replacement).

    Args:
      a, b: float [n] per-user metrics of two methods on the same users.

    Returns:
      ``{"mean", "low", "high"}`` (mean NaN when n is 0; low/high NaN when ``num_samples`` is 0 or n is below
      :data:`MIN_INTERVAL_USERS`).
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    n = d.shape[0]
    if n == 0:
        return {"mean": float("nan"), "low": float("nan"), "high": float("nan")}
    if num_samples == 0 or n < MIN_INTERVAL_USERS:
        return {"mean": float(d.mean()), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(seed)
    means = np.empty(num_samples)
    for start in range(0, num_samples, 256):        # bounded memory: 256 resamples at a time
        size = min(256, num_samples - start)
        means[start:start + size] = d[rng.integers(0, n, size=(size, n))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return {"mean": float(d.mean()), "low": float(low), "high": float(high)}


def _finite(x) -> bool:
    return x is not None and np.isfinite(x)


def format_difference(cmp: dict | None) -> str:
    """``+0.0123 [+0.0010, +0.0240]`` for a :func:`paired_bootstrap` dict (JSON ``null`` or NaN ends as
    ``n/a``: no interval from fewer than :data:`MIN_INTERVAL_USERS` users); ``""`` for None."""
    if cmp is None:
        return ""
    mean = f"{cmp['mean']:+.4f}" if _finite(cmp.get("mean")) else "n/a"
    if not (_finite(cmp.get("low")) and _finite(cmp.get("high"))):
        return f"{mean} [n/a]"
    return f"{mean} [{cmp['low']:+.4f}, {cmp['high']:+.4f}]"


def few_users_warning(users: int) -> str | None:
    """A warning line when only ``users`` (< :data:`FEW_USERS`) users were evaluated, else None."""
    if users >= FEW_USERS:
        return None
    none = f"; no interval from fewer than {MIN_INTERVAL_USERS} (n/a)" if users < MIN_INTERVAL_USERS else ""
    return (f"warning: only {users} user{'s' if users != 1 else ''} evaluated (fewer than {FEW_USERS}): "
            f"intervals over users are rough{none}")


RESULT_NEUTRAL = ("seed", "methods", "engine", "eval")
"""Config sections runs may differ in and still be combined: the seed, the method list, and settings that do
not change a user's expected result (chunking and padding, tested to be result-neutral; bootstrap settings;
``eval.repeats``, which averages device keys)."""


def check_same_data(results: list[dict], names: list[str]) -> None:
    """Raise ValueError, naming both files, unless every run saw the data of the first.

    Runs carry ``data.fingerprint`` (a hash of the rows and the split, :func:`coda_jax.data.dataset.fingerprint`);
    where one lacks it (a results.json from before fingerprints), runs of the synthetic source must share their
    data seed (``data.seed``, or ``seed`` where it is unset), which draws the world."""
    prints = [(r.get("data") or {}).get("fingerprint") for r in results]
    if all(prints):
        for i in range(1, len(results)):
            if prints[i] != prints[0]:
                raise ValueError(f"combine_runs: {names[i]} (run {i}) saw other data than {names[0]} (run 0): dataset "
                                 f"fingerprints {prints[i]} and {prints[0]} differ (a synthetic world is drawn by "
                                 f"data.seed, or by seed where it is unset: repeats of one world share data.seed)")
        return
    seeds = [data_seed(from_dict(drop_retired(r["config"]), source=n)) for r, n in zip(results, names)]
    source = results[0]["config"].get("data", {}).get("source", "synthetic")
    for i in range(1, len(results)):
        if source == "synthetic" and seeds[i] != seeds[0]:
            raise ValueError(f"combine_runs: {names[i]} (run {i}) holds another synthetic world than {names[0]} "
                             f"(run 0): data seeds {seeds[i]} and {seeds[0]} (data.seed, or seed where it is unset; "
                             f"no dataset fingerprint in these results to say more)")


def combine_runs(results: list[dict], num_samples: int = 2000, confidence: float = 0.95,
                 reference: str = "coda", sources: list[str] | None = None) -> dict:
    """Average several runs that differ only in their seed, user by user.

    Each run's per-user AUC carries the noise of its own cloud model, retrieval and fine-tuning draws; the
    mean over runs of each user's AUC has less of it, so paired differences between methods get narrower
    intervals than any single run's. Every run weighs the same, also one with ``eval.repeats`` > 1: its repeats
    share one cloud model and candidate set, and on MovieLens 100K most of a run's noise comes from those.

    Args:
      results: the ``results.json`` dicts of the runs (``Results.to_json()``).
      reference: the method compared against every other one.
      sources: where each run came from (its file), named in error messages; default ``run 0``, ``run 1``...

    Returns:
      ``{"runs", "seeds", "users", "methods": {name: {"auc", "per_run_auc"}}, "comparisons": {name: {mean,
      low, high}}}`` over the methods every run has and the users every run evaluated. A method AUC written
      as ``null`` (no user evaluated) reads as NaN.

    Raises:
      ValueError: fewer than two runs; a run that is not a results.json dict (no ``config`` or ``methods``,
        an invalid config, a method without ``per_user`` AUCs); two runs with the same seed (the same run
        twice counts its noise twice); runs whose configs differ outside :data:`RESULT_NEUTRAL` (the
        message names the first differing section); runs that saw different data (:func:`check_same_data`).
        Every message names the run's source.
    """
    names = list(sources) if sources is not None else [f"run {i}" for i in range(len(results))]
    if len(names) != len(results):
        raise ValueError(f"combine_runs: {len(results)} runs but {len(names)} sources")
    if len(results) < 2:
        raise ValueError(f"combine_runs: needs at least two runs, got {len(results)}")

    def settings(r: dict, name: str) -> dict:  # through the config class: keys added since a run take defaults,
        # retired keys at the value whose behaviour was kept are dropped (at another value they are refused)
        if not isinstance(r, dict):
            raise ValueError(f"{name}: not a results.json (a JSON {type(r).__name__}, not an object)")
        for key in ("config", "methods"):
            if not isinstance(r.get(key), dict):
                raise ValueError(f"{name}: not a complete results.json: no {key!r} object")
        for m, v in r["methods"].items():
            if not (isinstance(v, dict) and isinstance(v.get("per_user"), dict) and "auc" in v):
                raise ValueError(f"{name}: method {m!r} has no 'auc' and 'per_user' AUCs")
            if not all(isinstance(a, (int, float)) for a in v["per_user"].values()):
                raise ValueError(f"{name}: method {m!r} has a per-user AUC that is not a number")
        try:
            cfg = to_dict(from_dict(drop_retired(r["config"]), source=f"{name}: config"))
        except ValueError as err:           # ConfigError is a ValueError; it names the file
            raise ValueError(str(err)) from None
        return {k: v for k, v in cfg.items() if k not in RESULT_NEUTRAL}, cfg["seed"]

    checked = [settings(r, name) for r, name in zip(results, names)]
    seen: dict = {}
    for (_, seed), name in zip(checked, names):
        if seed in seen:
            raise ValueError(f"combine_runs: {name} has seed {seed}, as {seen[seed]} has: the same run twice? "
                             "(combine runs of different seeds)")
        seen[seed] = name
    base = checked[0][0]
    for i, ((cfg, _), name) in enumerate(zip(checked[1:], names[1:]), start=1):
        if cfg != base:
            key = next(k for k in sorted(set(base) | set(cfg)) if base.get(k) != cfg.get(k))
            raise ValueError(f"combine_runs: {name} (run {i}) differs from {names[0]} (run 0) in config section "
                             f"{key!r} (only {', '.join(RESULT_NEUTRAL)} may differ)")
    check_same_data(results, names)
    methods = [m for m in results[0]["methods"] if all(m in r["methods"] for r in results)]
    if not methods:
        raise ValueError(f"combine_runs: no method is in every run ({', '.join(names)})")
    users = sorted(set.intersection(*[set(r["methods"][m]["per_user"]) for r in results for m in methods]))
    if not users:
        raise ValueError("combine_runs: no user was evaluated in every run")
    mean_auc = {m: np.mean([[r["methods"][m]["per_user"][u] for u in users] for r in results], axis=0)
                for m in methods}

    def auc(a) -> float:                # null (no user evaluated) -> NaN
        return float("nan") if a is None else float(a)

    out = {"runs": len(results), "seeds": [seed for _, seed in checked], "users": len(users),
           "methods": {m: {"auc": float(mean_auc[m].mean()),
                           "per_run_auc": [auc(r["methods"][m]["auc"]) for r in results]} for m in methods},
           "comparisons": {}}
    if reference in mean_auc:
        for m in methods:
            if m != reference:
                out["comparisons"][m] = paired_bootstrap(mean_auc[reference], mean_auc[m], num_samples, confidence)
    return out
