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
SWEEP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
# reference rows: each its own grey, line style and marker, so oracle, group-oracle, ... tell apart in print
REFERENCE_STYLES = (("#8c8c8c", "--", "s"), ("#4d4d4d", ":", "^"), ("#a6a6a6", "-.", "D"),
                    ("#333333", (0, (5, 1, 1, 1)), "v"), ("#bdbdbd", (0, (1, 1)), "P"), ("#666666", "--", "X"),
                    ("#7f7f7f", (0, (3, 1, 1, 1, 1, 1)), "*"), ("#262626", (0, (2, 2)), "p"))
FORMATS = ("png", "pdf", "svg")
DPI = 200


# ----------------------------------------------------------------------------------------------- drawing

def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415 - only when drawing
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Write the figure once per format (``path`` with that suffix) through a temporary file and ``os.replace``
    (never a half-written file); returns the files."""
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            fig.savefig(tmp, format=fmt, dpi=DPI, metadata=_METADATA.get(fmt))
            os.chmod(tmp, 0o644)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(target)
    return written


_METADATA = {"pdf": {"CreationDate": None}, "svg": {"Date": None}}   # no timestamps: the same input, the same file


def formats_of(text: str) -> tuple[str, ...]:
    """``--format png,pdf`` -> ``("png", "pdf")``; an unknown or repeated format is a :class:`ConfigError`."""
    formats = tuple(f.strip().lower().lstrip(".") for f in text.split(",") if f.strip())
    for f in formats:
        if f not in FORMATS:
            raise ConfigError(f"--format: unknown format {f!r}; known: {', '.join(FORMATS)} (comma-separated)")
    if not formats or len(set(formats)) != len(formats):
        raise ConfigError(f"--format: give each of {', '.join(FORMATS)} at most once, e.g. png,pdf; got {text!r}")
    return formats


def _styles(names: list[str], reference: dict[str, bool]) -> dict[str, tuple]:
    """``name -> (color, line style, marker)``: coda red, methods blue (sweeps: a palette), each reference row
    its own grey, line style and marker (:data:`REFERENCE_STYLES`, in order of appearance)."""
    refs = [n for n in names if reference.get(n)]
    out = {n: REFERENCE_STYLES[refs.index(n) % len(REFERENCE_STYLES)] for n in refs}
    out.update({n: (CODA_COLOR if n == CODA else METHOD_COLOR, "-", "o") for n in names if n not in out})
    return out


def _label(name: str, reference: bool) -> str:
    return f"{name} (reference)" if reference else name


def _dataset(results: dict) -> str:
    """The dataset's name: the config's ``data.source``, or ``DataFrame`` for a log given from Python."""
    cfg = results.get("config") if isinstance(results.get("config"), dict) else {}
    data = cfg.get("data", {}) if isinstance(cfg.get("data"), dict) else {}
    given = results.get("data", {}).get("source") if isinstance(results.get("data"), dict) else None
    return "DataFrame" if given == "DataFrame" else str(data.get("source", ""))


def _title(runs: dict | list[dict], what: str) -> str:
    """``what`` over a line naming the dataset, model, seed(s) and evaluation rows of one run or several."""
    runs = runs if isinstance(runs, list) else [runs]
    cfgs = [r.get("config") if isinstance(r.get("config"), dict) else {} for r in runs]

    def values(section: str, key: str) -> list[str]:
        got = [c.get(section, {}).get(key) if isinstance(c.get(section), dict) else None for c in cfgs]
        return sorted({str(v) for v in got if v not in (None, "")})

    seeds = sorted({c["seed"] for c in cfgs if isinstance(c.get("seed"), int)})
    seed = "" if not seeds else f"seed {seeds[0]}" if len(seeds) == 1 else (
        f"seeds {seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else
        "seeds " + ", ".join(map(str, seeds)))
    bits = [", ".join(sorted({_dataset(r) for r in runs} - {""})), ", ".join(values("model", "name")), seed,
            " / ".join(values("data", "eval_on")) + " rows" if values("data", "eval_on") else ""]
    where = ", ".join(b for b in bits if b)
    return f"{what}\n({where})" if where else what


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


def plot_filter_field(variants: list[dict], key: str, path: Path, title: str,
                      formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """The fine filter against a swept field: coda − coarse-subset and coda − local+coarse with bootstrap
    intervals (left), each augmenting method's kept own-group share (right; planted worlds); the files written
    (one per format), none when the runs have neither."""
    values, diffs, shares = filter_points(variants, key)
    if not diffs and not shares:
        return []
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
    fig.suptitle(_title([v.get("results", {}) for v in variants], f"{title}: the fine filter against {key}"),
                 fontsize=10)
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
