"""Sweep: run the simulator over a grid of config values, sharing the dataset and the cloud stage between
variants that differ only in device-side settings, and print one line per variant.

  coda-sim sweep --config configs/movielens100k.yaml --data-dir PATH/ml-100k \\
      --grid classifier.keep_fraction=0.1,0.3,0.5 --grid finetune.steps=50,100 --out runs/sweep

Choose settings with ``--set data.eval_on=validation`` (held-out rows carved from the training rows), never
on test rows.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import yaml

from coda_jax.config import Config, ConfigError, with_overrides


def grid_overrides(grid: list[str]) -> list[list[str]]:
    """Expand ``KEY=V1,V2`` items into the list of override lists of their cartesian product."""
    axes = []
    for item in grid:
        if "=" not in item:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2,...")
        key, values = item.split("=", 1)
        # a value may itself be a YAML list: split on commas outside brackets
        parts, depth, cur = [], 0, ""
        for ch in values:
            depth += ch in "[{"
            depth -= ch in "]}"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        axes.append([f"{key}={v.strip()}" for v in parts])
    return [list(combo) for combo in itertools.product(*axes)] if axes else [[]]


def run_sweep(base: Config, grid: list[str], out: str | None = None, show_progress: bool = True) -> list[dict]:
    """Run every grid point; returns one summary dict per variant (overrides, per-method AUC, coda diffs)."""
    from coda_jax.data.dataset import make_dataset  # noqa: PLC0415
    from coda_jax.simulate import cloud_key, cloud_stage, simulate  # noqa: PLC0415

    variants = [(ov, with_overrides(base, ov) if ov else base) for ov in grid_overrides(grid)]
    datasets, clouds, rows = {}, {}, []
    for i, (ov, cfg) in enumerate(variants):
        key = cloud_key(cfg)
        if key not in clouds:
            datasets[key] = make_dataset(cfg)
            clouds[key] = cloud_stage(cfg, datasets[key], show_progress=show_progress)
        res = simulate(cfg, data=datasets[key], cloud=clouds[key], show_progress=show_progress)
        summary = {"variant": i, "overrides": ov, "auc": {m: v["auc"] for m, v in res.methods.items()},
                   "users": next(iter(res.methods.values()))["users"], "coda_minus": res.comparisons,
                   "kept": res.augmentation.get("coda"), "device_seconds": res.timings.get("device_stage")}
        rows.append(summary)
        print(format_row(summary), flush=True)
        if out:
            res.save(Path(out) / f"variant_{i:03d}")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "sweep.json").write_text(json.dumps(rows, indent=1))
    return rows


def format_row(s: dict) -> str:
    aucs = "  ".join(f"{m}={a:.4f}" for m, a in s["auc"].items())
    diff = s["coda_minus"].get("local")
    d = "" if diff is None else f"  coda-local={diff['mean']:+.4f} [{diff['low']:+.4f},{diff['high']:+.4f}]"
    return f"[{s['variant']}] {' '.join(s['overrides']) or '(base)'}: {aucs}{d}"


def main(args) -> int:
    from sims.cli import build_config  # noqa: PLC0415

    base = build_config(args)
    print(yaml.safe_dump({"grid": args.grid or []}, default_flow_style=True).strip(), file=sys.stderr)
    run_sweep(base, args.grid or [], args.out, show_progress=not args.quiet)
    return 0
