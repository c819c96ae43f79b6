"""``coda-sim report``: figures for a paper (PNG, matplotlib's Agg backend) and a per-user CSV for pandas.

  coda-sim report RUN_DIR [RUN_DIR ...] [--out DIR]

Each input is a run folder (holding ``results.json``, as ``coda-sim run --out`` writes it), a ``results.json``
file, or a sweep folder (holding ``sweep.json`` and ``variant-<hash>/results.json``, as ``coda-sim sweep
--out`` writes it). Written into ``--out`` (default: the input's own folder when there is one input):

* for a run: ``auc.png`` (every method's user-averaged AUC with a 95% bootstrap interval over users, from
  the method's per-user AUCs), ``coda_differences.png`` (coda's paired differences to every other method, from
  ``comparisons``: a forest plot), ``per_user_scatter.png`` (each user's AUC, coda vs global and coda vs
  local, users evaluated by both);
* for a sweep: ``sweep_<field>.png`` for each swept field (every method's AUC against the field's values,
  with 95% bootstrap intervals over users) and ``filter_<field>.png`` (coda − coarse-subset and coda −
  local+coarse with intervals, and each method's kept own-group share, against the field);
* ``per_user.csv``: one row per (input run, user, method): ``run, user_id, method, auc, rows`` (``rows``:
  the user's row count where the results hold one, else empty; a null AUC is empty).

With several inputs each input's figures are prefixed with its folder's name (``seed_0_auc.png``) and
``per_user.csv`` holds them all. Reference methods (``"reference": true`` in results.json, e.g. an oracle) are
drawn in grey. Files are replaced (they are derived from the inputs); anything unreadable is a
:class:`~coda_jax.config.ConfigError` naming the file. Reading, intervals and the CSV rows are
:mod:`sims.report_data`; this module draws and writes.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from coda_jax.config import ConfigError
from coda_jax.results_io import check_out_dir, write_text_atomic
from sims.report_data import (eval_settings, filter_points, is_sweep, load_results, load_sweep, method_intervals, num,
                               per_user_rows, sweep_points, swept_fields)

CODA = "coda"
CODA_COLOR = "#c0392b"       # coda: red
METHOD_COLOR = "#1f4e79"     # the other methods: dark blue
REFERENCE_COLOR = "#8c8c8c"  # reference rows (oracle, ...): grey
SWEEP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
DPI = 200


# ----------------------------------------------------------------------------------------------- drawing

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - only when drawing
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    """Write the figure as PNG through a temporary file and ``os.replace`` (never a half-written PNG)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _color(name: str, reference: bool) -> str:
    return REFERENCE_COLOR if reference else CODA_COLOR if name == CODA else METHOD_COLOR


def _label(name: str, reference: bool) -> str:
    return f"{name} (reference)" if reference else name


def _title(results: dict, what: str) -> str:
    cfg = results.get("config") if isinstance(results.get("config"), dict) else {}
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    model = cfg.get("model", {}) if isinstance(cfg.get("model"), dict) else {}
    bits = [str(data.get("source", "")), str(model.get("name", "")),
            f"seed {cfg['seed']}" if "seed" in cfg else "",
            f"{data['eval_on']} rows" if data.get("eval_on") else ""]
    where = ", ".join(b for b in bits if b)
    return f"{what}\n({where})" if where else what


def _errorbar_rows(ax, names, values, lows, highs, colors, labels, fmt: str) -> None:
    """Horizontal point + interval rows, top to bottom in the given order, each value written beside it."""
    ys = np.arange(len(names))[::-1]
    for y, v, lo, hi, c in zip(ys, values, lows, highs, colors):
        if not math.isfinite(v):
            continue
        if math.isfinite(lo) and math.isfinite(hi):
            ax.errorbar(v, y, xerr=[[max(v - lo, 0.0)], [max(hi - v, 0.0)]], fmt="o", color=c, ecolor=c, elinewidth=2,
                        capsize=4, markersize=7)
        else:
            ax.plot(v, y, "o", color=c, markersize=7)
    ax.set_yticks(ys, labels)
    for tick, c in zip(ax.get_yticklabels(), colors):
        tick.set_color(c)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.grid(axis="x", alpha=0.3)
    # the numbers, in a column at the right edge
    finite = [x for x in (*values, *lows, *highs) if math.isfinite(x)]
    if finite:
        lo, hi = min(finite), max(finite)
        pad = (hi - lo) or abs(hi) * 0.05 or 0.01
        ax.set_xlim(lo - 0.08 * pad, hi + 0.9 * pad)
    for y, v, lo_, hi_, c in zip(ys, values, lows, highs, colors):
        text = "n/a (no users)" if not math.isfinite(v) else (
            f"{v:{fmt}} [{lo_:{fmt}}, {hi_:{fmt}}]" if math.isfinite(lo_) and math.isfinite(hi_) else f"{v:{fmt}}")
        ax.annotate(text, xy=(1.0, y), xycoords=("axes fraction", "data"), xytext=(-4, 0),
                    textcoords="offset points", ha="right", va="center", fontsize=8, color=c)


def plot_auc(results: dict, path: Path) -> Path:
    """Every method's user-averaged AUC with its 95% bootstrap interval over users."""
    iv = method_intervals(results)
    names = list(iv)
    _, conf = eval_settings(results)
    fig = _figure(6.4, 1.2 + 0.42 * len(names))
    ax = fig.add_subplot()
    _errorbar_rows(ax, names, [iv[n]["auc"] for n in names], [iv[n]["low"] for n in names],
                   [iv[n]["high"] for n in names], [_color(n, iv[n]["reference"]) for n in names],
                   [f"{_label(n, iv[n]['reference'])}  (n={iv[n]['users']})" for n in names], ".4f")
    ax.set_xlabel(f"user-averaged test AUC  ({conf:.0%} bootstrap interval over users)", fontsize=9)
    ax.set_title(_title(results, "AUC per method"), fontsize=10)
    return _save(fig, path)


def plot_differences(results: dict, path: Path) -> Path | None:
    """coda's paired differences to every other method (``comparisons``) as a forest plot; None without any."""
    cmp = results.get("comparisons") or {}
    if not cmp:
        return None
    _, conf = eval_settings(results)
    names = list(cmp)
    ref = {n: bool(results["methods"].get(n, {}).get("reference", False)) for n in names}
    fig = _figure(6.4, 1.2 + 0.42 * len(names))
    ax = fig.add_subplot()
    ax.axvline(0.0, color="black", linewidth=1, linestyle="--")
    _errorbar_rows(ax, names, [num(cmp[n]["mean"]) for n in names], [num(cmp[n]["low"]) for n in names],
                   [num(cmp[n]["high"]) for n in names],
                   [REFERENCE_COLOR if ref[n] else METHOD_COLOR for n in names],
                   [f"coda − {_label(n, ref[n])}" for n in names], "+.4f")
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, -0.05 * (hi - lo)), max(hi, 0.05 * (hi - lo)))
    ax.set_xlabel(f"coda − method: paired difference in user-averaged AUC\n"
                  f"({conf:.0%} bootstrap interval over users; right of 0: coda ahead)", fontsize=9)
    ax.set_title(_title(results, "coda against every other method"), fontsize=10)
    return _save(fig, path)


def plot_scatter(results: dict, path: Path, others: tuple[str, ...] = ("global", "local")) -> Path | None:
    """Each user's AUC, coda (y) against each of ``others`` (x), users evaluated by both; None if none."""
    methods = results["methods"]
    if CODA not in methods:
        return None
    others = tuple(o for o in others if o in methods)
    if not others:
        return None
    coda = methods[CODA].get("per_user", {})
    fig = _figure(4.3 * len(others), 5.4)
    for i, other in enumerate(others):
        ax = fig.add_subplot(1, len(others), i + 1)
        theirs = methods[other].get("per_user", {})
        users = [u for u in coda if u in theirs and math.isfinite(num(coda[u])) and math.isfinite(num(theirs[u]))]
        x = np.array([num(theirs[u]) for u in users])
        y = np.array([num(coda[u]) for u in users])
        ax.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle="--", zorder=1)
        alpha = 0.7 if len(users) <= 200 else 0.35
        ax.scatter(x, y, s=10, alpha=alpha, color=CODA_COLOR, edgecolors="none", zorder=2)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{other}: per-user test AUC")
        ax.set_ylabel("coda: per-user test AUC")
        above, below = int((y > x).sum()), int((y < x).sum())
        ax.set_title(f"coda vs {other}: {len(users)} users\ncoda higher for {above}, lower for {below}, "
                     f"equal for {len(users) - above - below}", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle(_title(results, "Per-user test AUC (above the dashed line: coda better for that user)"),
                 fontsize=10)
    return _save(fig, path)


def plot_sweep_field(variants: list[dict], key: str, path: Path, title: str) -> Path:
    values, points = sweep_points(variants, key)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
    xs = np.array(values, np.float64) if numeric else np.arange(len(values), dtype=np.float64)
    log = numeric and len(values) > 2 and min(values) > 0 and max(values) / min(values) >= 50
    fig = _figure(7.2, 4.6)
    ax = fig.add_subplot()
    spread = (np.log10(xs.max() / xs.min()) if log else xs.max() - xs.min()) if len(xs) > 1 else 1.0
    names = list(points)
    palette = iter(SWEEP_COLORS * (1 + len(names) // len(SWEEP_COLORS)))
    for j, m in enumerate(names):
        p = points[m]
        color = REFERENCE_COLOR if p["reference"] else CODA_COLOR if m == CODA else next(palette)
        shift = (j - (len(names) - 1) / 2) * (0.012 * spread if numeric else 0.06)   # intervals side by side
        x = xs * 10 ** shift if log else xs + shift
        auc, low, high = (np.array(p[k], np.float64) for k in ("auc", "low", "high"))
        err = np.where(np.isfinite(low) & np.isfinite(high), np.maximum([auc - low, high - auc], 0.0), 0.0)
        ax.errorbar(x, auc, yerr=err, marker="o", color=color, capsize=3, linewidth=2.2 if m == CODA else 1.3,
                    linestyle=("--" if p["reference"] else "-") if numeric and len(xs) > 1 else "none",
                    markersize=5, label=_label(m, p["reference"]))
    if log:
        ax.set_xscale("log")
    if not numeric:                               # categories: points side by side, no lines between them
        ax.set_xticks(xs, [str(list(v)) if isinstance(v, tuple) else str(v) for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    elif len(values) <= 8:
        ax.set_xticks(xs, [f"{v:g}" for v in values])
        ax.minorticks_off()
    ax.set_xlabel(key)
    n, conf = eval_settings(variants[0]["results"])
    ax.set_ylabel(f"user-averaged AUC  ({conf:.0%} bootstrap interval)")
    others = [k for k in swept_fields(variants) if k != key]
    note = f"; averaged over {', '.join(others)}" if others else ""
    ax.set_title(f"{title}: AUC against {key}{note}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", frameon=False)
    return _save(fig, path)


def plot_filter_field(variants: list[dict], key: str, path: Path, title: str) -> Path | None:
    """The fine filter against a swept field: coda − coarse-subset and coda − local+coarse with bootstrap
    intervals (left), each augmenting method's kept own-group share (right; planted worlds). None when the runs
    have neither."""
    values, diffs, shares = filter_points(variants, key)
    if not diffs and not shares:
        return None
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
    xs = np.array(values, np.float64) if numeric else np.arange(len(values), dtype=np.float64)
    fig = _figure(11.0, 4.4)
    left, right = fig.subplots(1, 2)
    spread = float(xs.max() - xs.min()) if len(xs) > 1 else 1.0
    for j, (other, d) in enumerate(diffs.items()):
        mean, low, high = (np.array(d[k], np.float64) for k in ("mean", "low", "high"))
        err = np.where(np.isfinite(low) & np.isfinite(high), np.maximum([mean - low, high - mean], 0.0), 0.0)
        left.errorbar(xs + (j - 0.5) * 0.01 * spread, mean, yerr=err, marker="o", capsize=3,
                      color=SWEEP_COLORS[j], label=f"coda − {other}")
    left.axhline(0.0, color="black", linewidth=0.8)
    left.set_ylabel("paired AUC difference (95% bootstrap interval)")
    left.set_title("the filter's value", fontsize=10)
    for j, (m, s) in enumerate(shares.items()):
        right.plot(xs, s, marker="o", color=CODA_COLOR if m == CODA else SWEEP_COLORS[(j + 2) % len(SWEEP_COLORS)],
                   linewidth=2.2 if m == CODA else 1.2, label=m)
    right.set_ylabel("own-group share of augmented rows")
    right.set_title("kept own-group share", fontsize=10)
    for ax in (left, right):
        if not numeric:
            ax.set_xticks(xs, [str(v) for v in values])
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False)
    fig.suptitle(f"{title}: the fine filter against {key}", fontsize=10)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- the report

def _prefix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "run"


def _field_file(key: str) -> str:
    return "sweep_" + re.sub(r"[^A-Za-z0-9._+-]+", "_", key) + ".png"


def run_figures(results: dict, out: Path, prefix: str = "") -> list[Path]:
    """The figures of one run into ``out``: AUC per method, coda's differences, per-user scatter."""
    written = [plot_auc(results, out / f"{prefix}auc.png")]
    for made in (plot_differences(results, out / f"{prefix}coda_differences.png"),
                 plot_scatter(results, out / f"{prefix}per_user_scatter.png")):
        if made is not None:
            written.append(made)
    return written


def report(inputs: list[str | Path], out: str | Path | None = None) -> list[Path]:
    """Write the figures and ``per_user.csv`` of runs and sweeps (see the module docstring); returns the
    files written. Every input is read and checked before anything is written."""
    if not inputs:
        raise ConfigError("report: give at least one run or sweep folder")
    loaded = []                                   # (kind, label, source path, payload)
    for given in inputs:
        p = Path(given)
        if not p.exists():
            raise ConfigError(f"{p}: no such file or folder (give the --out folder of coda-sim run or sweep)")
        if is_sweep(p):
            folder, variants = load_sweep(p)
            loaded.append(("sweep", folder, variants))
        else:
            f, results = load_results(p)
            loaded.append(("run", f.parent, results))
    if out is None:
        if len(loaded) > 1:
            raise ConfigError("report: several inputs need --out DIR (one folder for all their figures)")
        out = loaded[0][1]
    out = check_out_dir(out, files=())
    out.mkdir(parents=True, exist_ok=True)
    labels: dict[str, int] = {}
    written: list[Path] = []
    table: list[list] = []
    for kind, folder, payload in loaded:
        prefix = ""
        if len(loaded) > 1:
            base = _prefix(folder.resolve().name)
            labels[base] = labels.get(base, 0) + 1
            prefix = f"{base}_" if labels[base] == 1 else f"{base}-{labels[base]}_"
        if kind == "run":
            written += run_figures(payload, out, prefix)
            table += per_user_rows(str(folder), payload)
        else:
            for key in swept_fields(payload):
                written.append(plot_sweep_field(payload, key, out / f"{prefix}{_field_file(key)}",
                                                f"sweep {folder.resolve().name!r}"))
                made = plot_filter_field(payload, key, out / f"{prefix}{_field_file(key).replace('sweep_', 'filter_', 1)}",
                                         f"sweep {folder.resolve().name!r}")
                if made is not None:
                    written.append(made)
            for v in payload:
                table += per_user_rows(str(folder / v["id"]), v["results"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "user_id", "method", "auc", "rows"])
    w.writerows(table)
    written.append(write_text_atomic(out / "per_user.csv", buf.getvalue()))
    return written


def main(args) -> int:
    written = report(args.inputs, args.out)
    for p in written:
        print(p)
    return 0
