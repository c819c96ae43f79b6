"""Sweep: run the simulator over a grid of config values, sharing the dataset and the cloud stage between
variants that differ only in device-side settings, and print one line per variant.

  coda-sim sweep --config configs/movielens100k.yaml --data-dir PATH/ml-100k \\
      --grid classifier.keep_fraction=0.1,0.3,0.5 --grid finetune.steps=50,100 --out runs/sweep

Choose settings with ``--set data.eval_on=validation`` (held-out rows carved from the training rows), never
on test rows.

``--out DIR`` is a store a rerun resumes: ``DIR/variant-<hash of the variant's config>/results.json`` is
written (atomically) when the variant finishes and ``DIR/sweep.json`` after every variant; the same command
again reads finished variants back and runs only the missing or cut-off ones.

``--shard I/N`` splits a sweep over N machines (e.g. a Slurm array job) into one shared store: each shard
runs its groups of variants (those sharing one compiled program; group g for g = I mod N) and claims each
variant (``variant-<hash>/claim``, created exclusively, so a variant is claimed once, never run twice); a
rerun of the same shard retakes its own claims and fills what is missing; ``sweep.json`` lists every
variant finished in the store so far.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path

import yaml

from coda_jax.config import Config, ConfigError, check_memory, to_dict, with_overrides
from coda_jax.evaluate import format_difference
from coda_jax.results_io import check_out_dir, read_json, remove_stale_temporaries, save_json, strict_json
from sims.common import build_config


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


def variant_id(cfg: Config) -> str:
    """The folder name of a variant: ``variant-`` and the first 12 hex digits of the sha256 of its resolved
    config's JSON, so a rerun of the sweep finds the variants it already finished whatever the grid order."""
    text = json.dumps(strict_json(to_dict(cfg)), sort_keys=True)
    return "variant-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def summarize(index: int, overrides: list[str], results: dict, variant: str | None = None) -> dict:
    """One sweep row from a variant's ``results.json`` dict (strict JSON: a NaN figure is ``None``).

    Built from the JSON form so that a variant run now and one read back from disk give the same row."""
    methods = results["methods"]
    return {"variant": index, "id": variant, "overrides": list(overrides),
            "auc": {m: v["auc"] for m, v in methods.items()},
            "users": next(iter(methods.values()))["users"] if methods else 0,
            "coda_minus": results["comparisons"], "kept": results["augmentation"].get("coda"),
            "device_seconds": results["timings"].get("device_stage")}


def _finished(path: Path, cfg: Config, overwrite: bool) -> dict | None:
    """The results of a variant finished earlier, or None when it has to run (again)."""
    if overwrite or not path.is_file():
        return None
    try:
        results = read_json(path)
    except ConfigError as err:          # written atomically, so only by hand or by an older version
        print(f"coda-sim sweep: {err}; running this variant again", file=sys.stderr)
        return None
    if not isinstance(results, dict) or not all(isinstance(results.get(k), dict) for k in
                                                ("config", "methods", "comparisons", "augmentation", "timings")):
        print(f"coda-sim sweep: {path}: not a complete results.json; running this variant again", file=sys.stderr)
        return None
    if results["config"] != strict_json(to_dict(cfg)):
        raise ConfigError(f"{path}: holds the results of another config than this variant's; give --overwrite "
                          "to run the variant again and replace it, or use another --out")
    return results


def _check_sweep_json(path: Path, ids: list[str]) -> None:
    """Refuse to replace a sweep.json that lists variants outside this sweep (another sweep's index).

    A damaged sweep.json (truncated, not a list of rows) is rebuilt from the variant folders (this sweep
    rewrites it from every finished variant's results.json), unless the folder holds variant folders of
    another grid: then the error says how to rebuild it."""
    if not path.exists():
        return
    try:
        rows = read_json(path, "sweep.json")
        if not (isinstance(rows, list) and all(isinstance(r, dict) for r in rows)):
            raise ConfigError(f"{path}: not a sweep.json (a list of variant rows)")
    except ConfigError as err:
        others = sorted(d.name for d in path.parent.glob("variant-*") if d.is_dir() and d.name not in ids)
        if others:
            raise ConfigError(f"{err}; {path.parent} also holds variant folders of another grid ({others[0]}), so "
                              f"it is not rebuilt from this one: remove {path} to rebuild it from this grid's "
                              "variant folders, give --overwrite, or use another --out") from None
        print(f"coda-sim sweep: {err}; rebuilding it from the variant folders", file=sys.stderr)
        return
    other = [r.get("id") for r in rows if r.get("id") not in ids]
    if other:
        raise ConfigError(f"{path}: belongs to another sweep (variant {other[0] or 'without an id'} is not in this "
                          "grid); give --overwrite to replace it (finished variant folders are kept), or use "
                          "another --out")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (None passes through)."""
    if text is None:
        return None
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N, e.g. 0/4") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: needs 0 <= I < N")
    return i, n


def claim(folder: Path, shard: tuple[int, int]) -> bool:
    """Claim a variant for ``shard``: create ``folder/claim`` exclusively (True), or find it held by this same
    shard (True: a rerun retakes its claims) or by another (False)."""
    folder.mkdir(parents=True, exist_ok=True)
    mine = f"{shard[0]}/{shard[1]}"
    try:
        fd = os.open(folder / "claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return (folder / "claim").read_text().strip() == mine
    with os.fdopen(fd, "w") as f:
        f.write(mine + "\n")
    return True


def run_sweep(base: Config, grid: list[str], out: str | None = None, show_progress: bool = True,
              overwrite: bool = False, shard: tuple[int, int] | None = None) -> list[dict]:
    """Run every grid point; returns one summary dict per variant (:func:`summarize`), in grid order.

    With ``out``, the sweep is a store that a rerun resumes: each variant's ``results.json`` goes into
    ``out/variant-<hash>`` (:func:`variant_id`) atomically when the variant finishes, and ``out/sweep.json``
    (the rows so far, in grid order) is rewritten atomically after each variant. Variants whose results.json
    is there are read back, not run; a variant folder without a complete results.json (cut off) is run
    again. ``overwrite`` runs every variant again. ``out`` is checked before any work. ``shard`` ``(I, N)``
    runs only the variants this shard claims (:func:`claim`) and returns the rows of every variant finished
    in the store.
    """
    from coda_jax.data.dataset import make_dataset  # noqa: PLC0415
    from coda_jax.device.settings import structure  # noqa: PLC0415
    from coda_jax.cloud.stage import cloud_key, cloud_stage  # noqa: PLC0415
    from coda_jax.simulate import run_matched_rows, simulate_points  # noqa: PLC0415

    variants = [(ov, with_overrides(base, ov, "--grid") if ov else base) for ov in grid_overrides(grid)]
    for _, cfg in variants:               # before any work: a variant too big for this machine is refused
        check_memory(cfg, matched_rows=run_matched_rows(cfg))
    ids = [variant_id(cfg) for _, cfg in variants]
    for j, vid in enumerate(ids):
        i = ids.index(vid)
        if i != j:
            raise ConfigError(f"--grid: variants {i} ({' '.join(variants[i][0]) or 'base'}) and {j} "
                              f"({' '.join(variants[j][0]) or 'base'}) are the same config")
    store = Path(out) if out else None
    if shard is not None and store is None:
        raise ConfigError("--shard: needs --out DIR (the store the shards share)")
    if store is not None:
        check_out_dir(store, files=(), overwrite=overwrite)
        if not overwrite:
            _check_sweep_json(store / "sweep.json", ids)
        if store.is_dir():               # left by a sweep killed mid-write: its files themselves are whole
            remove_stale_temporaries(store, ("sweep.json",))
            for vid in ids:
                if (store / vid).is_dir():
                    remove_stale_temporaries(store / vid, ("results.json", "variant.json"))
    # variants finished earlier, all read (and checked) before any work (a rerun skips them)
    earlier = [_finished(store / vid / "results.json", cfg, overwrite) if store is not None else None
               for (_, cfg), vid in zip(variants, ids)]
    # Variants that differ only in traced numbers (learning rates, weights, keep fraction, ...) and share the
    # dataset and cloud stage run together: the sweep points of one compiled device stage (lanes).
    results_of = {i: r for i, r in enumerate(earlier) if r is not None}
    for i in results_of:
        print(f"coda-sim sweep: {store / ids[i]}: finished earlier, read back", file=sys.stderr)
    groups: dict[tuple, list[int]] = {}
    for i, (_, cfg) in enumerate(variants):
        if i not in results_of:
            groups.setdefault((cloud_key(cfg), json.dumps(to_dict(structure(cfg)), sort_keys=True)), []).append(i)
    datasets, clouds, rows = {}, {}, []
    printed = 0
    order = list(groups.items())
    if shard is not None:                 # its own groups of variants: group g for g = I mod N
        order = order[shard[0]::shard[1]]
    for (key, _), members in order:
        if shard is not None:
            members = [i for i in members if claim(store / ids[i], shard)]
            if not members:
                continue
        cfgs = [variants[i][1] for i in members]
        for i in members:
            if store is not None:
                (store / ids[i]).mkdir(parents=True, exist_ok=True)
                save_json(store / ids[i] / "variant.json", {"overrides": variants[i][0],
                                                                    "config": to_dict(variants[i][1])})
        if key not in clouds:
            datasets[key] = make_dataset(cfgs[0])
            clouds[key] = cloud_stage(cfgs[0], datasets[key], show_progress=show_progress)
        for i, res in zip(members, simulate_points(cfgs, data=datasets[key], cloud=clouds[key],
                                                   show_progress=show_progress)):
            if store is not None:
                res.save(store / ids[i])
            results_of[i] = strict_json(res.to_json())
        # rows in grid order, as far as every earlier variant is done
        rows = [summarize(i, variants[i][0], results_of[i], ids[i]) for i in range(len(variants)) if i in results_of]
        if store is not None:
            save_json(store / "sweep.json", rows)
        while printed < len(variants) and printed in results_of:
            print(format_row(summarize(printed, variants[printed][0], results_of[printed], ids[printed])), flush=True)
            printed += 1
    if shard is not None:                 # the other shards' variants finished so far
        for i, ((_, cfg), vid) in enumerate(zip(variants, ids)):
            if i not in results_of:
                done = _finished(store / vid / "results.json", cfg, False)
                if done is not None:
                    results_of[i] = done
    rows = [summarize(i, variants[i][0], results_of[i], ids[i]) for i in range(len(variants)) if i in results_of]
    for row in rows:
        if row["variant"] >= printed:
            print(format_row(row), flush=True)
    if store is not None:
        save_json(store / "sweep.json", rows)
    return rows


def _num(x, spec: str) -> str:
    return "nan" if x is None else format(x, spec)


def format_row(s: dict) -> str:
    aucs = "  ".join(f"{m}={_num(a, '.4f')}" for m, a in s["auc"].items())
    diff = s["coda_minus"].get("local")
    d = "" if diff is None else f"  coda-local={format_difference(diff).replace(', ', ',')}"
    return f"[{s['variant']}] {' '.join(s['overrides']) or '(base)'}: {aucs}{d}"


def main(args) -> int:
    base = build_config(args)
    print(yaml.safe_dump({"grid": args.grid or []}, default_flow_style=True).strip(), file=sys.stderr)
    run_sweep(base, args.grid or [], args.out, show_progress=not args.quiet,
              overwrite=getattr(args, "overwrite", False), shard=parse_shard(getattr(args, "shard", None)))
    return 0
