"""Reading what ``coda-sim report`` draws: runs (``results.json``) and sweeps (``sweep.json`` and its variants),
checked with errors naming the file; bootstrap intervals of each method's AUC; the rows of ``per_user.csv``;
and each swept field's points. No plotting here (:mod:`sims.report` draws)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from coda_jax.config import ConfigError
from coda_jax.results_io import read_json

ROW_KEYS = ("per_user_rows", "per_user_test_rows")
"""Where a user's row count is looked for: the method's entry, then ``data`` (a dict keyed by user id)."""


# ----------------------------------------------------------------------------------------------- reading

def num(x: Any) -> float:
    """A results.json number: ``null`` (a NaN written as strict JSON) reads as NaN."""
    return float("nan") if x is None else float(x)


def check_results(results: Any, path: Path) -> dict:
    """``results`` if it has what the report draws from; else :class:`ConfigError` naming ``path``."""
    if not isinstance(results, dict):
        raise ConfigError(f"{path}: not a results.json (a JSON {type(results).__name__}, not an object)")
    methods = results.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise ConfigError(f"{path}: not a complete results.json: no 'methods' object (or no method in it)")
    for name, m in methods.items():
        if not isinstance(m, dict) or "auc" not in m:
            raise ConfigError(f"{path}: method {name!r} has no 'auc'")
        if not (m["auc"] is None or isinstance(m["auc"], (int, float))):
            raise ConfigError(f"{path}: method {name!r}: 'auc' is not a number or null: {m['auc']!r}")
        pu = m.get("per_user", {})
        if not isinstance(pu, dict):
            raise ConfigError(f"{path}: method {name!r}: 'per_user' is not an object keyed by user id")
        bad = next((u for u, a in pu.items() if not (a is None or isinstance(a, (int, float)))), None)
        if bad is not None:
            raise ConfigError(f"{path}: method {name!r}: the AUC of user {bad!r} is not a number or null: "
                              f"{pu[bad]!r}")
    cmp = results.get("comparisons", {})
    if not isinstance(cmp, dict):
        raise ConfigError(f"{path}: 'comparisons' is not an object")
    for name, c in cmp.items():
        if not (isinstance(c, dict) and all(k in c and (c[k] is None or isinstance(c[k], (int, float)))
                                            for k in ("mean", "low", "high"))):
            raise ConfigError(f"{path}: comparison {name!r} needs numbers (or null) 'mean', 'low', 'high'")
    return results


def load_results(path: str | Path) -> tuple[Path, dict]:
    """``(file, results)`` of a run folder or a ``results.json`` file, checked (:func:`check_results`)."""
    p = Path(path)
    f = p / "results.json" if p.is_dir() else p
    if not f.is_file():
        raise ConfigError(f"{f}: no results.json here (give the --out folder of coda-sim run or sweep)")
    return f, check_results(read_json(f), f)


def is_sweep(path: Path) -> bool:
    return (path.is_dir() and (path / "sweep.json").is_file()) or (path.is_file() and path.name == "sweep.json")


def load_sweep(path: str | Path) -> tuple[Path, list[dict]]:
    """``(folder, variants)`` of a sweep folder: each variant ``{"id", "overrides", "path", "results"}``."""
    p = Path(path)
    folder = p if p.is_dir() else p.parent
    index = folder / "sweep.json"
    rows = read_json(index, "sweep.json")
    if not isinstance(rows, list):
        raise ConfigError(f"{index}: not a sweep.json (a JSON {type(rows).__name__}, not a list of variants)")
    variants = []
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("id"), str) and isinstance(row.get("overrides"), list)
                and all(isinstance(o, str) and "=" in o for o in row["overrides"])):
            raise ConfigError(f"{index}: entry {i} has no variant 'id' and 'overrides' (KEY=VALUE strings)")
        if not re.fullmatch(r"variant-[0-9a-f]+", row["id"]):
            raise ConfigError(f"{index}: entry {i}: {row['id']!r} is not a variant folder name")
        f, results = load_results(folder / row["id"] / "results.json")
        variants.append({"id": row["id"], "overrides": list(row["overrides"]), "path": f, "results": results})
    if not variants:
        raise ConfigError(f"{index}: lists no finished variant yet")
    return folder, variants


# ----------------------------------------------------------------------------------------------- numbers

def bootstrap_mean(x: np.ndarray, num_samples: int = 2000, confidence: float = 0.95, seed: int = 0
                   ) -> tuple[float, float, float]:
    """Mean of ``x`` (NaNs dropped) with a percentile bootstrap interval over its entries (users)."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, math.nan, math.nan
    if num_samples <= 0 or x.size == 1:
        return float(x.mean()), math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(num_samples)
    for start in range(0, num_samples, 256):
        size = min(256, num_samples - start)
        means[start:start + size] = x[rng.integers(0, x.size, size=(size, x.size))].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(x.mean()), float(low), float(high)


def eval_settings(results: dict) -> tuple[int, float]:
    ev = results.get("config", {}).get("eval", {}) if isinstance(results.get("config"), dict) else {}
    n = ev.get("bootstrap", 2000) if isinstance(ev, dict) else 2000
    c = ev.get("confidence", 0.95) if isinstance(ev, dict) else 0.95
    return (int(n) if isinstance(n, int) and n >= 0 else 2000,
            float(c) if isinstance(c, (int, float)) and 0 < c < 1 else 0.95)


def method_intervals(results: dict) -> dict[str, dict]:
    """Per method: ``{"auc", "low", "high", "users", "reference"}``: the mean of the method's per-user AUCs (in a
    results.json, its user-averaged ``auc``) with a bootstrap interval over users; a method without per-user
    AUCs keeps its ``auc`` and no interval."""
    n, conf = eval_settings(results)
    out = {}
    for name, m in results["methods"].items():
        pu = np.array([num(a) for a in m.get("per_user", {}).values()], np.float64)
        mean, low, high = bootstrap_mean(pu, n, conf)
        out[name] = {"auc": mean if math.isfinite(mean) else num(m["auc"]), "low": low, "high": high,
                     "users": int(np.isfinite(pu).sum()), "reference": bool(m.get("reference", False))}
    return out


def _rows_of(results: dict, method: str) -> dict:
    m = results["methods"][method]
    for where in (m, results.get("data") if isinstance(results.get("data"), dict) else {}):
        for key in ROW_KEYS:
            if isinstance(where.get(key), dict):
                return where[key]
    return {}


def per_user_rows(label: str, results: dict) -> list[list]:
    """The CSV rows of one run: ``[run, user_id, method, auc, rows]`` (missing values as ``""``)."""
    out = []
    for name, m in results["methods"].items():
        rows = _rows_of(results, name)
        for uid, a in m.get("per_user", {}).items():
            r = rows.get(uid)
            out.append([label, uid, name, "" if a is None else repr(float(a)), "" if r is None else r])
    return out


# ----------------------------------------------------------------------------------------------- drawing

def dotted(cfg: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def field_value(variant: dict, key: str) -> Any:
    """The value a variant gave a swept field: from its config where it is there, else the override text."""
    v = dotted(variant["results"].get("config"), key)
    if v is None:
        v = next((o.split("=", 1)[1] for o in variant["overrides"] if o.split("=", 1)[0] == key), None)
    return tuple(v) if isinstance(v, list) else v


def swept_fields(variants: list[dict]) -> list[str]:
    """The config keys the sweep's overrides set, in the order they first appear."""
    keys = []
    for v in variants:
        for o in v["overrides"]:
            k = o.split("=", 1)[0]
            if k not in keys:
                keys.append(k)
    return keys


def sweep_points(variants: list[dict], key: str) -> tuple[list, dict[str, dict]]:
    """``(values, {method: {"auc", "low", "high", "reference"} lists over values})`` for one swept field.

    Where other fields vary too, a value's point is over every variant with that value: each user's AUC is
    averaged over those variants (users evaluated in all of them), then a bootstrap over users."""
    values = []
    for v in variants:
        x = field_value(v, key)
        if x not in values:
            values.append(x)
    if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values):
        values.sort()
    methods = []
    for v in variants:
        methods += [m for m in v["results"]["methods"] if m not in methods]
    n, conf = eval_settings(variants[0]["results"])
    out = {m: {"auc": [], "low": [], "high": [], "reference": False} for m in methods}
    for x in values:
        group = [v for v in variants if field_value(v, key) == x]
        for m in methods:
            have = [v["results"]["methods"][m] for v in group if m in v["results"]["methods"]]
            out[m]["reference"] |= any(bool(h.get("reference", False)) for h in have)
            users = set.intersection(*[set(h.get("per_user", {})) for h in have]) if have else set()
            if have and users:
                per_user = np.mean([[num(h["per_user"][u]) for u in sorted(users)] for h in have], axis=0)
                mean, low, high = bootstrap_mean(per_user, n, conf)
            else:
                aucs = [num(h["auc"]) for h in have]
                mean, low, high = (float(np.mean(aucs)) if aucs else math.nan), math.nan, math.nan
            out[m]["auc"].append(mean)
            out[m]["low"].append(low)
            out[m]["high"].append(high)
    return values, out


FILTER_CONTROLS = ("coarse-subset", "local+coarse")
"""The methods the filter figure compares coda with: the size-matched random subset (the filter's own value)
and every coarse candidate."""


def filter_points(variants: list[dict], key: str) -> tuple[list, dict[str, dict], dict[str, list]]:
    """The filter figure's numbers for one swept field: ``(values, diffs, shares)``.

    ``diffs[other]``: ``{"mean", "low", "high"}`` lists over the values of coda − ``other`` (each of
    :data:`FILTER_CONTROLS` that the runs have): each user's paired difference averaged over the variants of a
    value (users evaluated by both in all of them), then a bootstrap over users. ``shares[method]``: the mean
    over those variants of each augmenting method's kept own-group share (``diagnostics.kept_own_share``; NaN
    where a run has none)."""
    values, _ = sweep_points(variants, key)
    n, conf = eval_settings(variants[0]["results"])
    diffs: dict[str, dict] = {}
    shares: dict[str, list] = {}
    for x in values:
        group = [v["results"] for v in variants if field_value(v, key) == x]
        for other in FILTER_CONTROLS:
            have = [r for r in group if "coda" in r["methods"] and other in r["methods"]]
            d = diffs.setdefault(other, {"mean": [], "low": [], "high": []})
            users = (set.intersection(*[set(r["methods"]["coda"].get("per_user", {})) &
                                        set(r["methods"][other].get("per_user", {})) for r in have])
                     if have else set())
            per_user = (np.mean([[num(r["methods"]["coda"]["per_user"][u]) - num(r["methods"][other]["per_user"][u])
                                  for u in sorted(users)] for r in have], axis=0) if users else np.zeros(0))
            mean, low, high = bootstrap_mean(per_user, n, conf)
            for k, val in (("mean", mean), ("low", low), ("high", high)):
                d[k].append(val)
        names = []
        for r in group:
            names += [m for m in r.get("diagnostics", {}).get("kept_own_share", {}) if m not in names]
        for m in names:
            got = [num(r.get("diagnostics", {}).get("kept_own_share", {}).get(m)) for r in group]
            got = [g for g in got if math.isfinite(g)]
            shares.setdefault(m, [math.nan] * values.index(x)).append(float(np.mean(got)) if got else math.nan)
        for m in shares:
            if len(shares[m]) < values.index(x) + 1:
                shares[m].append(math.nan)
    return values, {k: v for k, v in diffs.items() if any(math.isfinite(a) for a in v["mean"])}, shares
