"""The fine filter's sweep figure (``filter_<field>.png``, see :func:`sims.report.report`): coda − coarse-subset
and coda − local+coarse against a swept field, beside each augmenting method's kept own-group share."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sims.figures import CODA, CODA_COLOR, SWEEP_COLORS, _figure, _save, _title
from sims.report_data import filter_points


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
