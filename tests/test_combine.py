"""Combining runs that differ only in their seed: per-user AUC averaged over runs, paired intervals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from coda_jax.config import Config, to_dict
from coda_jax.evaluate import combine_runs, paired_bootstrap


def _run(seed: int, aucs: dict, **config_changes) -> dict:
    cfg = dataclasses.replace(Config(), seed=seed, **config_changes)
    methods = {m: {"auc": float(np.mean(list(pu.values()))), "users": len(pu), "per_user": pu}
               for m, pu in aucs.items()}
    return {"config": to_dict(cfg), "methods": methods}


def test_combine_runs_averages_each_users_auc_over_runs():
    rng = np.random.default_rng(0)
    runs, tables = [], []
    for seed in range(3):
        users = [str(u) for u in range(20) if not (seed == 1 and u == 7)]      # user 7 missing from run 1
        t = {m: {u: float(rng.uniform(0.4, 0.9)) for u in users} for m in ("global", "local", "coda")}
        tables.append(t)
        runs.append(_run(seed, t))
    runs[2]["methods"]["mpda"] = runs[2]["methods"]["local"]                  # only in one run: ignored
    out = combine_runs(runs, num_samples=500)
    keep = sorted(str(u) for u in range(20) if u != 7)            # combine_runs orders users by id
    mean = {m: np.mean([[t[m][u] for u in keep] for t in tables], axis=0) for m in ("global", "local", "coda")}
    assert out["runs"] == 3 and out["seeds"] == [0, 1, 2] and out["users"] == 19
    assert set(out["methods"]) == {"global", "local", "coda"}
    for m in ("global", "local", "coda"):
        assert out["methods"][m]["auc"] == pytest.approx(mean[m].mean())
        assert out["methods"][m]["per_run_auc"] == [r["methods"][m]["auc"] for r in runs]
    assert out["comparisons"]["local"] == pytest.approx(paired_bootstrap(mean["coda"], mean["local"], 500, 0.95))


def test_combine_runs_refuses_runs_that_differ_beyond_the_seed():
    a = _run(0, {"coda": {"1": 0.6}, "local": {"1": 0.5}})
    b = _run(1, {"coda": {"1": 0.7}, "local": {"1": 0.5}},
             finetune=dataclasses.replace(Config().finetune, steps=7))
    with pytest.raises(ValueError, match="'finetune'"):
        combine_runs([a, b])
    with pytest.raises(ValueError, match="at least two runs"):
        combine_runs([a])
    c = _run(2, {"coda": {"1": 0.7}, "local": {"1": 0.5}}, engine=dataclasses.replace(Config().engine, chunk_users=3))
    assert combine_runs([a, c], num_samples=10)["runs"] == 2           # chunking does not change results


def test_combine_runs_weighs_every_run_the_same_whatever_its_repeats():
    a = _run(0, {"coda": {"1": 0.6, "2": 0.8}, "local": {"1": 0.5, "2": 0.5}})
    b = _run(1, {"coda": {"1": 0.9, "2": 0.5}, "local": {"1": 0.5, "2": 0.6}},
             eval=dataclasses.replace(Config().eval, repeats=3))
    out = combine_runs([a, b], num_samples=10)
    assert out["methods"]["coda"]["auc"] == pytest.approx(np.mean([(0.6 + 0.9) / 2, (0.8 + 0.5) / 2]))
    assert out["methods"]["local"]["auc"] == pytest.approx(np.mean([0.5, (0.5 + 0.6) / 2]))


def test_cli_combine_prints_and_writes(tmp_path, capsys):
    from sims.cli import main

    dirs = []
    for seed in (0, 1):
        d = tmp_path / f"run{seed}"
        d.mkdir()
        pu = {str(u): 0.5 + 0.01 * u + 0.001 * seed for u in range(10)}
        (d / "results.json").write_text(json.dumps(_run(seed, {"local": pu, "coda": {u: a + 0.02 for u, a in pu.items()}})))
        dirs.append(str(d))
    out = tmp_path / "combined.json"
    assert main(["combine", *dirs, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 runs" in printed and "+0.0200" in printed
    assert json.loads(out.read_text())["comparisons"]["local"]["mean"] == pytest.approx(0.02)
    assert main(["combine", dirs[0], str(tmp_path / "nowhere")]) == 2
    assert "no results.json" in capsys.readouterr().err
