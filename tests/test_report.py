"""``coda-sim report``: figures and the per-user CSV from tiny fake results.json files (no simulation)."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from sims.cli import main
from sims.report import report
from sims.report_data import bootstrap_mean, sweep_points

PNG = b"\x89PNG\r\n\x1a\n"


def fake_results(seed: int = 0, users: int = 12, shift: float = 0.0, reference: bool = False, **config) -> dict:
    """A results.json dict with the layout coda-sim run writes: config, methods (per-user AUCs keyed by user
    id), coda's comparisons."""
    rng = np.random.default_rng(seed)
    per_user = {}
    for i, m in enumerate(("global", "local", "coda")):
        per_user[m] = {str(100 + u): float(np.clip(rng.normal(0.6 + 0.02 * i + shift, 0.1), 0, 1))
                       for u in range(users)}
    per_user["local"].pop("100")                      # user 100 not evaluated for local
    methods = {m: {"auc": float(np.mean(list(pu.values()))), "users": len(pu), "per_user": pu,
                   "nonfinite_logits": 0, "diverged_users": 0} for m, pu in per_user.items()}
    if reference:
        methods["oracle"] = {"auc": None, "users": 0, "per_user": {}, "reference": True}
    comparisons = {m: {"mean": 0.01 * (j + 1), "low": -0.01, "high": 0.02 * (j + 1)}
                   for j, m in enumerate(x for x in methods if x != "coda")}
    cfg = {"seed": seed, "data": {"source": "synthetic", "eval_on": "test"}, "model": {"name": "din"},
           "eval": {"bootstrap": 200, "confidence": 0.95}}
    for key, value in config.items():                 # dotted keys: finetune__steps=50
        section, field = key.split("__")
        cfg.setdefault(section, {})[field] = value
    return {"config": cfg, "methods": methods, "comparisons": comparisons, "augmentation": {}, "retrieval": {},
            "timings": {}, "overhead": {}, "data": {}}


def write_run(folder, results: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, allow_nan=False))
    return folder


def write_sweep(folder, grid: dict[str, list]):
    """A sweep store: sweep.json and variant-<hash>/results.json, one variant per grid point."""
    import itertools

    rows = []
    keys = list(grid)
    for i, combo in enumerate(itertools.product(*grid.values())):
        vid = f"variant-{i:012x}"
        cfg = {k.replace(".", "__"): v for k, v in zip(keys, combo)}
        write_run(folder / vid, fake_results(seed=i, shift=0.05 * i, **cfg))
        rows.append({"variant": i, "id": vid, "overrides": [f"{k}={v}" for k, v in zip(keys, combo)]})
    (folder / "sweep.json").write_text(json.dumps(rows))
    return folder


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_report_of_one_run_writes_figures_and_the_per_user_csv(tmp_path, capsys):
    results = fake_results(reference=True)
    run = write_run(tmp_path / "run", results)
    out = tmp_path / "figs"
    assert main(["report", str(run), "--out", str(out)]) == 0
    names = {"auc.png", "coda_differences.png", "per_user_scatter.png", "per_user.csv"}
    assert {p.name for p in out.iterdir()} == names
    for name in names - {"per_user.csv"}:
        assert (out / name).read_bytes()[:8] == PNG
    assert "auc.png" in capsys.readouterr().out
    rows = read_csv(out / "per_user.csv")
    assert list(rows[0]) == ["run", "user_id", "method", "auc", "rows"]
    expected = {(m, u): a for m, v in results["methods"].items() for u, a in v["per_user"].items()}
    assert {(r["method"], r["user_id"]): float(r["auc"]) for r in rows} == expected
    assert len(rows) == len(expected) and {r["run"] for r in rows} == {str(run)}
    assert {r["rows"] for r in rows} == {""}


def test_report_defaults_to_the_run_folder_and_reads_rows_and_nulls(tmp_path):
    results = fake_results(users=4)
    results["methods"]["coda"]["per_user"]["101"] = None             # a NaN written as null
    results["methods"]["coda"]["per_user_rows"] = {"100": 7, "101": 9}
    run = write_run(tmp_path / "run", results)
    assert main(["report", str(run / "results.json")]) == 0           # the file itself, no --out
    rows = {(r["method"], r["user_id"]): r for r in read_csv(run / "per_user.csv")}
    assert rows[("coda", "100")]["rows"] == "7" and rows[("coda", "101")]["auc"] == ""
    assert rows[("global", "100")]["rows"] == ""
    assert (run / "auc.png").is_file()


def test_report_of_several_runs_and_a_sweep(tmp_path):
    a = write_run(tmp_path / "seed_0", fake_results(0))
    b = write_run(tmp_path / "seed_1", fake_results(1))
    sweep = write_sweep(tmp_path / "sweep", {"finetune.steps": [25, 50, 100], "finetune.optimizer": ["adam", "sgd"]})
    out = tmp_path / "figs"
    written = report([a, b, sweep], out)
    names = {p.name for p in written}
    for run in ("seed_0", "seed_1"):
        assert {f"{run}_auc.png", f"{run}_coda_differences.png", f"{run}_per_user_scatter.png"} <= names
    assert {"sweep_sweep_finetune.steps.png", "sweep_sweep_finetune.optimizer.png", "per_user.csv"} <= names
    assert all(p.parent == out and p.is_file() for p in written)
    runs = {r["run"] for r in read_csv(out / "per_user.csv")}
    assert runs == {str(a), str(b)} | {str(sweep / f"variant-{i:012x}") for i in range(6)}
    assert main(["report", str(a), str(b)]) == 2                       # several inputs need --out


def test_sweep_points_average_users_over_the_other_fields(tmp_path):
    sweep = write_sweep(tmp_path / "sweep", {"finetune.steps": [25, 50], "finetune.optimizer": ["adam", "sgd"]})
    from sims.report_data import load_sweep

    _, variants = load_sweep(sweep)
    values, points = sweep_points(variants, "finetune.steps")
    assert values == [25, 50]
    group = [v for v in variants if v["results"]["config"]["finetune"]["steps"] == 25]
    pu = [v["results"]["methods"]["coda"]["per_user"] for v in group]
    users = sorted(set(pu[0]) & set(pu[1]))
    assert points["coda"]["auc"][0] == pytest.approx(np.mean([[p[u] for u in users] for p in pu]))
    assert points["coda"]["low"][0] < points["coda"]["auc"][0] < points["coda"]["high"][0]


def test_bootstrap_mean_is_a_percentile_interval_over_entries():
    x = np.array([0.2, 0.4, 0.6, 0.8, math.nan])
    mean, low, high = bootstrap_mean(x, 2000, 0.95)
    assert mean == pytest.approx(0.5) and 0.2 <= low < 0.5 < high <= 0.8
    assert all(math.isnan(v) for v in bootstrap_mean(np.array([math.nan]))[0:3])
    assert math.isnan(bootstrap_mean(np.array([0.3]))[1])


@pytest.mark.parametrize("content, message", [
    ("{\"methods\": ", "not valid JSON"),
    ("[1, 2]", "not a results.json"),
    ("{\"config\": {}}", "no 'methods'"),
    ("{\"methods\": {\"coda\": {\"auc\": 0.5, \"per_user\": {\"1\": \"high\"}}}}", "user '1'"),
    ("{\"methods\": {\"coda\": {\"auc\": 0.5}}, \"comparisons\": {\"local\": {\"mean\": 1}}}", "comparison 'local'"),
])
def test_unreadable_results_are_errors_naming_the_file(tmp_path, capsys, content, message):
    good = write_run(tmp_path / "good", fake_results())
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.json").write_text(content)
    out = tmp_path / "figs"
    assert main(["report", str(good), str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("coda-sim: error: ") and str(bad / "results.json") in err and message in err
    assert not out.exists()                                           # everything is read before writing


def test_missing_inputs_and_broken_sweeps_name_the_file(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert str(empty / "results.json") in capsys.readouterr().err
    sweep = write_sweep(tmp_path / "sweep", {"finetune.steps": [25, 50]})
    (sweep / "variant-000000000001" / "results.json").unlink()
    assert main(["report", str(sweep)]) == 2
    assert str(sweep / "variant-000000000001" / "results.json") in capsys.readouterr().err
    (sweep / "sweep.json").write_text("{\"not\": \"a list\"}")
    assert main(["report", str(sweep)]) == 2
    assert str(sweep / "sweep.json") in capsys.readouterr().err


def test_run_plot_needs_out(capsys):
    assert main(["run", "--plot", "--quiet"]) == 2
    assert "--plot: needs --out" in capsys.readouterr().err


def test_run_plot_writes_the_runs_figures_next_to_results_json(tmp_path, monkeypatch, capsys):
    import importlib

    simulate_module = importlib.import_module("coda_jax.simulate")
    fake = fake_results()

    def simulate(cfg, show_progress=True):          # the engine is not what this test is about
        return simulate_module.Results(**{k: fake[k] for k in ("config", "methods", "comparisons", "augmentation",
                                                               "retrieval", "timings", "overhead", "data")})

    monkeypatch.setattr(simulate_module, "simulate", simulate)
    fake["augmentation"] = {"local_rows": 10.0}
    out = tmp_path / "run"
    assert main(["run", "--quiet", "--plot", "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"results.json", "auc.png", "coda_differences.png",
                                               "per_user_scatter.png", "per_user.csv"}
    assert "figures written to" in capsys.readouterr().out
