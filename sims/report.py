"""``coda-sim report``: figures for a paper (PNG, PDF or SVG; matplotlib's Agg backend) and a per-user CSV.

  coda-sim report RUN_DIR [RUN_DIR ...] [--out DIR] [--format png,pdf,svg]

Each input is a run folder (holding ``results.json``, as ``coda-sim run --out`` writes it), a ``results.json``
file, or a sweep folder (holding ``sweep.json`` and ``variant-<hash>/results.json``, as ``coda-sim sweep
--out`` writes it). Written into ``--out`` (default: the input's own folder when there is one input), each
figure once per ``--format`` (default png):

* for a run: ``auc.png`` (every method's user-averaged AUC with a 95% bootstrap interval over users, from
  the method's per-user AUCs), ``coda_differences.png`` (the anchor's paired differences to every other
  method, from ``comparisons``: a forest plot; the anchor is ``eval.anchor``, coda by default),
  ``per_user_scatter.png`` (each user's AUC, coda vs global and coda vs local, users evaluated by both);
* for a sweep: ``sweep_<field>.png`` for each swept field (every method's AUC against the field's values,
  with 95% bootstrap intervals over users; the legend beside the axes) and ``filter_<field>.png`` (coda −
  coarse-subset and coda − local+coarse with intervals, and each method's kept own-group share, against the
  field);
* ``per_user.csv``: one row per (input run, user, method): ``run, user_id, method, auc, rows`` (``rows``:
  the user's row count where the results hold one, else empty; a null AUC is empty).

Every title names the dataset, model and seed(s). With several inputs each input's figures are prefixed with
its folder's name (``seed_0_auc.png``) and ``per_user.csv`` holds them all. Reference methods (``"reference":
true`` in results.json, e.g. an oracle) are drawn in greys, each in its own line style and marker. Files are
replaced (they are derived from the inputs); anything unreadable is a :class:`~coda_jax.config.ConfigError`
naming the file. Reading, intervals and the CSV rows are :mod:`sims.report_data`; this module draws and writes.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from coda_jax.config import ConfigError
from coda_jax.results_io import check_out_dir, write_text_atomic
from sims.report_filter import plot_filter_field
from sims.report_data import (eval_settings, is_sweep, load_results, load_sweep, method_intervals, num,
                               per_user_rows, sweep_points, swept_fields)

from sims.figures import (CODA, CODA_COLOR, DPI, FORMATS, METHOD_COLOR, REFERENCE_STYLES, SWEEP_COLORS,  # noqa: F401
                          _dataset, _figure, _label, _METADATA, _save, _styles, _title, formats_of)


def _anchor(results: dict) -> str:
    """The method the paired differences start from (``eval.anchor``; coda in files written before it)."""
    ev = results.get("config", {}).get("eval", {}) if isinstance(results.get("config"), dict) else {}
    return str(ev.get("anchor", CODA)) if isinstance(ev, dict) else CODA


def _errorbar_rows(ax, names, values, lows, highs, colors, labels, fmt: str, markers=None) -> None:
    """Horizontal point + interval rows, top to bottom in the given order, each value written beside it."""
    ys = np.arange(len(names))[::-1]
    markers = markers or ["o"] * len(names)
    for y, v, lo, hi, c, mk in zip(ys, values, lows, highs, colors, markers):
        if not math.isfinite(v):
            continue
        if math.isfinite(lo) and math.isfinite(hi):
            ax.errorbar(v, y, xerr=[[max(v - lo, 0.0)], [max(hi - v, 0.0)]], fmt=mk, color=c, ecolor=c, elinewidth=2,
                        capsize=4, markersize=7)
        else:
            ax.plot(v, y, mk, color=c, markersize=7)
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


def plot_auc(results: dict, path: Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Every method's user-averaged AUC with its 95% bootstrap interval over users."""
    iv = method_intervals(results)
    names = list(iv)
    style = _styles(names, {n: iv[n]["reference"] for n in names})
    _, conf = eval_settings(results)
    fig = _figure(6.4, 1.2 + 0.42 * len(names))
    ax = fig.add_subplot()
    _errorbar_rows(ax, names, [iv[n]["auc"] for n in names], [iv[n]["low"] for n in names],
                   [iv[n]["high"] for n in names], [style[n][0] for n in names],
                   [f"{_label(n, iv[n]['reference'])}  (n={iv[n]['users']})" for n in names], ".4f",
                   [style[n][2] for n in names])
    ax.set_xlabel(f"user-averaged test AUC  ({conf:.0%} bootstrap interval over users)", fontsize=9)
    ax.set_title(_title(results, "AUC per method"), fontsize=10)
    return _save(fig, path, formats)


def plot_differences(results: dict, path: Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """The anchor's (``eval.anchor``, coda by default) paired differences to every other method
    (``comparisons``) as a forest plot; nothing without any."""
    cmp = results.get("comparisons") or {}
    if not cmp:
        return []
    _, conf = eval_settings(results)
    anchor = _anchor(results)
    names = list(cmp)
    ref = {n: bool(results["methods"].get(n, {}).get("reference", False)) for n in names}
    style = _styles(names, ref)
    fig = _figure(6.4, 1.2 + 0.42 * len(names))
    ax = fig.add_subplot()
    ax.axvline(0.0, color="black", linewidth=1, linestyle="--")
    _errorbar_rows(ax, names, [num(cmp[n]["mean"]) for n in names], [num(cmp[n]["low"]) for n in names],
                   [num(cmp[n]["high"]) for n in names],
                   [style[n][0] if ref[n] else METHOD_COLOR for n in names],
                   [f"{anchor} − {_label(n, ref[n])}" for n in names], "+.4f", [style[n][2] for n in names])
    lo, hi = ax.get_xlim()
    ax.set_xlim(min(lo, -0.05 * (hi - lo)), max(hi, 0.05 * (hi - lo)))
    ax.set_xlabel(f"{anchor} − method: paired difference in user-averaged AUC\n"
                  f"({conf:.0%} bootstrap interval over users; right of 0: {anchor} ahead)", fontsize=9)
    ax.set_title(_title(results, f"{anchor} against every other method"), fontsize=10)
    return _save(fig, path, formats)


def plot_scatter(results: dict, path: Path, formats: tuple[str, ...] = ("png",),
                 others: tuple[str, ...] = ("global", "local")) -> list[Path]:
    """Each user's AUC, coda (y) against each of ``others`` (x), users evaluated by both; nothing if none."""
    methods = results["methods"]
    if CODA not in methods:
        return []
    others = tuple(o for o in others if o in methods)
    if not others:
        return []
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
    return _save(fig, path, formats)


def plot_sweep_field(variants: list[dict], key: str, path: Path, title: str,
                     formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Every method's AUC (95% interval over users) against the values of the swept field ``key``, the legend
    beside the axes (never over the data), reference rows each in their own style; the title names the
    dataset, model and seeds."""
    values, points = sweep_points(variants, key)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in values)
    xs = np.array(values, np.float64) if numeric else np.arange(len(values), dtype=np.float64)
    log = numeric and len(values) > 2 and min(values) > 0 and max(values) / min(values) >= 50
    fig = _figure(8.6, 4.6)
    ax = fig.add_subplot()
    spread = (np.log10(xs.max() / xs.min()) if log else xs.max() - xs.min()) if len(xs) > 1 else 1.0
    names = list(points)
    style = _styles(names, {m: points[m]["reference"] for m in names})
    palette = iter(SWEEP_COLORS * (1 + len(names) // len(SWEEP_COLORS)))
    lines = numeric and len(xs) > 1
    for j, m in enumerate(names):
        p = points[m]
        color, dash, marker = style[m] if p["reference"] or m == CODA else (next(palette), "-", "o")
        shift = (j - (len(names) - 1) / 2) * (0.012 * spread if numeric else 0.06)   # intervals side by side
        x = xs * 10 ** shift if log else xs + shift
        auc, low, high = (np.array(p[k], np.float64) for k in ("auc", "low", "high"))
        err = np.where(np.isfinite(low) & np.isfinite(high), np.maximum([auc - low, high - auc], 0.0), 0.0)
        ax.errorbar(x, auc, yerr=err, marker=marker, color=color, capsize=3, linewidth=2.2 if m == CODA else 1.3,
                    linestyle=dash if lines else "none", markersize=5, label=_label(m, p["reference"]))
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
    ax.set_title(_title([v["results"] for v in variants], f"{title}: AUC against {key}{note}"), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, frameon=False)
    return _save(fig, path, formats)


# ----------------------------------------------------------------------------------------------- the report

def _prefix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "run"


def _field_file(key: str) -> str:
    return "sweep_" + re.sub(r"[^A-Za-z0-9._+-]+", "_", key) + ".png"


def run_figures(results: dict, out: Path, prefix: str = "", formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """The figures of one run into ``out``: AUC per method, the anchor's differences, per-user scatter."""
    return (plot_auc(results, out / f"{prefix}auc.png", formats)
            + plot_differences(results, out / f"{prefix}coda_differences.png", formats)
            + plot_scatter(results, out / f"{prefix}per_user_scatter.png", formats))


def report(inputs: list[str | Path], out: str | Path | None = None, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write the figures (each in every one of ``formats``: png, pdf, svg) and ``per_user.csv`` of runs and
    sweeps (see the module docstring); returns the files written. Every input is read and checked before
    anything is written."""
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
            written += run_figures(payload, out, prefix, formats)
            table += per_user_rows(str(folder), payload)
        else:
            for key in swept_fields(payload):
                written += plot_sweep_field(payload, key, out / f"{prefix}{_field_file(key)}",
                                            f"sweep {folder.resolve().name!r}", formats)
                written += plot_filter_field(payload, key,
                                             out / f"{prefix}{_field_file(key).replace('sweep_', 'filter_', 1)}",
                                             f"sweep {folder.resolve().name!r}", formats)
            for v in payload:
                table += per_user_rows(str(folder / v["id"]), v["results"])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["run", "user_id", "method", "auc", "rows"])
    w.writerows(table)
    written.append(write_text_atomic(out / "per_user.csv", buf.getvalue()))
    return written


def main(args) -> int:
    written = report(args.inputs, args.out, formats_of(getattr(args, "format", None) or "png"))
    for p in written:
        print(p)
    return 0
