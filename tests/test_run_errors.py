"""Errors that name their keys: two-cutoff windows and user filters (data.cutoff_t0 / data.cutoff_t1 /
data.min_test_rows with the data's time range), tiny samples (no interval from fewer than 2 users), and the
CLI's messages (--grid, --config DIR, CODA_JAX_CACHE, a damaged sweep.json)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from coda_jax.config import Config, with_overrides
from coda_jax.data.dataset import make_dataset
from coda_jax.data.ingest import DataError
from coda_jax.evaluate import FEW_USERS, combine_runs, format_difference, paired_bootstrap
from sims.cli import main as cli_main
from test_outputs import _results


def _planted(*overrides: str) -> Config:
    return with_overrides(Config(), ["synthetic.num_users=30", "synthetic.num_items=200", *overrides])


def _time_range(cfg: Config) -> str:
    from coda_jax.data.dataset import load_interactions

    t = load_interactions(cfg).time
    return f"the data's times run from {int(t.min())} to {int(t.max())}"


@pytest.mark.parametrize("overrides,start", [
    (["data.cutoff_by=timestamp", "data.cutoff_t0=0", "data.cutoff_t1=0.5"],
     "data.cutoff_t0 0: no row is before T0, so the cloud model has no training rows"),
    (["data.cutoff_by=timestamp", "data.cutoff_t0=300000000", "data.cutoff_t1=1e12"],
     "data.cutoff_t1 1e+12: no row is at or after T1, so no device has test rows"),
    (["data.cutoff_by=timestamp", "data.cutoff_t0=500000000", "data.cutoff_t1=500000001"],
     "data.cutoff_t0 5e+08 to data.cutoff_t1 5e+08: no row is in the local window [T0, T1)"),
])
def test_two_cutoff_windows_without_rows_name_the_key_and_the_time_range(overrides, start):
    cfg = _planted(*overrides)
    with pytest.raises(DataError) as exc:
        make_dataset(cfg)
    msg = str(exc.value)
    assert msg.startswith(f"planted(seed=0): {start}") and _time_range(cfg) in msg


def test_no_user_left_by_min_test_rows_names_the_keys_and_the_most_any_user_has():
    cfg = _planted("data.min_test_rows=1000")
    with pytest.raises(DataError) as exc:
        make_dataset(cfg)
    msg = str(exc.value)
    data = make_dataset(_planted())
    most = int(np.bincount(data.table.user[data.heldout]).max())
    assert "data.min_test_rows: no user has both local rows in [T0, T1)" in msg
    assert "data.cutoff_t0 0.6 (a time quantile: T = " in msg and "data.cutoff_t1 0.8" in msg
    assert f"the most held-out rows any has is {most});" in msg and _time_range(cfg) in msg
    with pytest.raises(DataError, match="data.min_test_rows: no user has both training rows and at least 1000 "
                                        "held-out rows .*; split user_fraction"):
        make_dataset(_planted("data.min_test_rows=1000", "data.split=user_fraction"))


def test_no_interval_from_fewer_than_two_users_and_a_warning_below_few_users():
    one = paired_bootstrap(np.array([0.7]), np.array([0.6]), 200, 0.95)
    assert one["mean"] == pytest.approx(0.1) and math.isnan(one["low"]) and math.isnan(one["high"])
    two = paired_bootstrap(np.array([0.7, 0.5]), np.array([0.6, 0.6]), 200, 0.95)
    assert two["low"] < two["high"]
    assert format_difference(one) == "+0.1000 [n/a]"
    assert format_difference({"mean": None, "low": None, "high": None}) == "n/a [n/a]"
    assert format_difference(two) == f"{two['mean']:+.4f} [{two['low']:+.4f}, {two['high']:+.4f}]"
    res = _results(0.7)
    res.methods["coda"]["users"] = 1
    res.comparisons = {"local": one}
    table = res.table()
    assert "+0.1000 [n/a]" in table and "[+0.1000, +0.1000]" not in table
    assert f"warning: only 1 user evaluated (fewer than {FEW_USERS}): intervals over users are rough; no " \
           "interval from fewer than 2 (n/a)" in table
    res.methods["coda"]["users"] = res.methods["local"]["users"] = FEW_USERS
    assert "warning" not in res.table()


def test_combine_gives_no_interval_from_one_common_user():
    from coda_jax.config import to_dict

    cfg = to_dict(Config())
    cfg["data"] = dict(cfg["data"], seed=0)          # repeats of one world: combine refuses runs on other data
    runs = []
    for seed, (a, b) in enumerate([(0.7, 0.6), (0.8, 0.65)]):
        runs.append({"config": dict(cfg, seed=seed), "methods": {
            "coda": {"auc": a, "per_user": {"7": a}}, "local": {"auc": b, "per_user": {"7": b}}}})
    out = combine_runs(runs)
    assert out["users"] == 1 and math.isnan(out["comparisons"]["local"]["low"])


def test_cli_messages_name_the_flag_the_folder_and_the_variable(tmp_path, capsys, monkeypatch):
    assert cli_main(["sweep", "--quiet", "--grid", "finetune.steps=10,abc"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == ("coda-sim: error: --grid 'finetune.steps=abc': "
                                                       "finetune.steps: expected an integer, got 'abc'")
    assert cli_main(["sweep", "--quiet", "--grid", "finetune.steps=10,0"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == "coda-sim: error: --grid: finetune.steps: must be >= 1, got 0"
    (tmp_path / "a.yaml").write_text("seed: 1\n")
    assert cli_main(["run", "--quiet", "--config", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: {tmp_path}: is a directory, not a config file; give a "
                                       f"YAML file in it, e.g. {tmp_path / 'a.yaml'}\n")
    not_dir = tmp_path / "cache-file"
    not_dir.write_text("x")
    monkeypatch.setenv("CODA_JAX_CACHE", str(not_dir))
    assert cli_main(["run", "--quiet", "--set", "synthetic.num_users=5"]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: CODA_JAX_CACHE={not_dir}: exists and is not a folder "
                                       "(JAX's persistent compilation cache); point CODA_JAX_CACHE at a writable "
                                       "folder, or give --no-compile-cache\n")
    from coda_jax import results_io

    monkeypatch.setenv("CODA_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(results_io.tempfile, "mkstemp", lambda **kw: (_ for _ in ()).throw(
        PermissionError(13, "Permission denied")))                    # a read-only folder, even for root
    assert cli_main(["run", "--quiet", "--set", "synthetic.num_users=5"]) == 2
    assert capsys.readouterr().err.startswith(f"coda-sim: error: CODA_JAX_CACHE={tmp_path / 'cache'}: cannot "
                                              "write into this folder: Permission denied")


def _finished_variant(store, overrides):
    from coda_jax.config import to_dict
    from coda_jax.results_io import strict_json
    from sims.sweep import variant_id

    cfg = with_overrides(Config(), overrides)
    (store / variant_id(cfg)).mkdir(parents=True)
    (store / variant_id(cfg) / "results.json").write_text(json.dumps({
        "config": strict_json(to_dict(cfg)), "methods": {"coda": {"auc": 0.7, "users": 3}},
        "comparisons": {}, "augmentation": {}, "timings": {}}))
    return variant_id(cfg)


def test_a_damaged_sweep_json_is_rebuilt_from_the_variant_folders(tmp_path, capsys):
    store = tmp_path / "sweep"
    ids = [_finished_variant(store, [f"eval.bootstrap={b}"]) for b in (10, 20)]
    (store / "sweep.json").write_text('[{"variant": 0, "id": "var')          # truncated mid-write
    assert cli_main(["sweep", "--quiet", "--grid", "eval.bootstrap=10,20", "--out", str(store)]) == 0
    assert "rebuilding it from the variant folders" in capsys.readouterr().err
    rows = json.loads((store / "sweep.json").read_text())
    assert [r["id"] for r in rows] == ids and rows[0]["auc"] == {"coda": 0.7}
    # a damaged sweep.json beside another grid's variant folder: the error says how to rebuild it
    _finished_variant(store, ["eval.bootstrap=30"])
    (store / "sweep.json").write_text("{")
    assert cli_main(["sweep", "--quiet", "--grid", "eval.bootstrap=10,20", "--out", str(store)]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err.startswith(f"coda-sim: error: {store / 'sweep.json'}: not valid JSON")
    assert f"remove {store / 'sweep.json'} to rebuild it from this grid's variant folders" in err
