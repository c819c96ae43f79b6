"""Combining runs that differ only in their seed: per-user AUC averaged over runs, paired intervals."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from coda_jax.config import Config, to_dict
from coda_jax.evaluate import combine_runs, paired_bootstrap


def _run(seed: int, aucs: dict, **config_changes) -> dict:
    config_changes.setdefault("data", dataclasses.replace(Config().data, seed=0))    # repeats of one world
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


def _run_dirs(tmp_path, seeds=(0, 1)) -> list:
    dirs = []
    for seed in seeds:
        d = tmp_path / f"run{seed}"
        d.mkdir()
        pu = {str(u): 0.5 + 0.01 * u + 0.001 * seed for u in range(10)}
        coda = {u: a + 0.02 for u, a in pu.items()}
        (d / "results.json").write_text(json.dumps(_run(seed, {"local": pu, "coda": coda})))
        dirs.append(d)
    return dirs


def test_cli_combine_refuses_a_truncated_results_json(tmp_path, capsys):
    from sims.cli import main

    a, b = _run_dirs(tmp_path)
    text = (b / "results.json").read_text()
    (b / "results.json").write_text(text[:len(text) // 2])                 # a write cut off half-way
    assert main(["combine", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coda-sim: error: {b / 'results.json'}: not valid JSON (")
    assert "a truncated or unfinished results.json?" in err


def test_cli_combine_refuses_a_results_json_without_config(tmp_path, capsys):
    from sims.cli import main

    a, b = _run_dirs(tmp_path)
    run = json.loads((b / "results.json").read_text())
    del run["config"]
    (b / "results.json").write_text(json.dumps(run))
    assert main(["combine", str(a), str(b)]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: {b / 'results.json'}: not a complete results.json: "
                                       "no 'config' object\n")
    run["config"] = {"finetune": {"stepz": 3}}                               # a config that does not load
    (b / "results.json").write_text(json.dumps(run))
    assert main(["combine", str(a), str(b)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"coda-sim: error: {b / 'results.json'}: config: ") and "stepz" in err


def test_cli_combine_refuses_out_that_is_a_folder_or_exists(tmp_path, capsys):
    from sims.cli import main

    a, b = _run_dirs(tmp_path)
    assert main(["combine", str(a), str(b), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: --out {tmp_path}: is a folder; give a file name, e.g. "
                                       f"{tmp_path / 'combined.json'}\n")
    out = tmp_path / "combined.json"
    out.write_text("keep me")
    assert main(["combine", str(a), str(b), "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: --out {out}: already exists; give --overwrite to "
                                       "replace it (or choose another --out)\n")
    assert out.read_text() == "keep me"
    assert main(["combine", str(a), str(b), "--out", str(out), "--overwrite"]) == 0
    assert json.loads(out.read_text())["seeds"] == [0, 1]


def test_cli_combine_refuses_the_same_run_twice(tmp_path, capsys):
    from sims.cli import main

    a, b = _run_dirs(tmp_path)
    same = tmp_path / "run0" / ".." / "run0" / "results.json"               # another spelling of run0
    assert main(["combine", str(a), str(b), str(same)]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: {same}: the same results.json as {a / 'results.json'} "
                                       "(each run may be given once)\n")
    c = tmp_path / "copy-of-run1"                                           # a copy: same seed, other folder
    c.mkdir()
    (c / "results.json").write_text((b / "results.json").read_text())
    assert main(["combine", str(a), str(b), str(c)]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: combine_runs: {c / 'results.json'} has seed 1, as "
                                       f"{b / 'results.json'} has: the same run twice? (combine runs of "
                                       "different seeds)\n")


def test_combine_runs_reads_a_null_auc_as_nan():
    a = _run(0, {"coda": {"1": 0.6}, "local": {"1": 0.5}})
    b = _run(1, {"coda": {"1": 0.7}, "local": {"1": 0.5}})
    b["methods"]["local"]["auc"] = None                    # a NaN AUC written as strict JSON
    out = combine_runs([a, b], num_samples=10)
    assert out["methods"]["local"]["per_run_auc"][0] == 0.5 and np.isnan(out["methods"]["local"]["per_run_auc"][1])
