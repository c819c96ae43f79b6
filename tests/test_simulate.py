"""End to end: simulate() on tiny data, results.json, the CLI, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from coda_jax.cloud.output import CloudOutput
from coda_jax.cloud.pretrain import predict
from coda_jax.simulate import simulate
from sims.cli import main as cli_main


@pytest.fixture(scope="module")
def tiny_results(tiny_cfg, tiny_data, tiny_cloud_output):
    return simulate(tiny_cfg, data=tiny_data, show_progress=False, cloud=tiny_cloud_output)


def test_results_cover_every_method_on_the_same_users(tiny_cloud, tiny_results):
    cfg, data, *_ = tiny_cloud
    t = data.table
    # users evaluated: simulated users whose held-out rows hold both classes (computed independently)
    expected = [str(t.user_ids[u]) for u in data.users
                if len(set(t.label[data.heldout & (t.user == u)].tolist())) == 2]
    assert set(tiny_results.methods) == set(cfg.methods) | {"coarse-subset"}      # the filter's control, added
    for name, m in tiny_results.methods.items():
        assert sorted(m["per_user"]) == sorted(expected), name
        assert m["users"] == len(expected)
        vals = np.array(list(m["per_user"].values()))
        assert np.all((vals >= 0) & (vals <= 1))
        assert m["auc"] == pytest.approx(vals.mean())
    for name, c in tiny_results.comparisons.items():
        assert c["low"] <= c["mean"] <= c["high"], name
        coda = np.array([tiny_results.methods["coda"]["per_user"][u] for u in expected])
        other = np.array([tiny_results.methods[name]["per_user"][u] for u in expected])
        assert c["mean"] == pytest.approx((coda - other).mean())


def test_global_method_auc_matches_sklearn_on_the_cloud_model(tiny_cloud, tiny_results):
    cfg, data, model, params, vectors, rows = tiny_cloud
    t = data.table
    logits, _ = predict(model, params, t.features())
    for uid, got in list(tiny_results.methods["global"]["per_user"].items())[:10]:
        u = int(np.flatnonzero(t.user_ids == int(uid))[0])
        sel = data.heldout & (t.user == u)
        assert got == pytest.approx(roc_auc_score(t.label[sel], logits[sel]), abs=1e-5)


def test_augmentation_counts(tiny_cloud, tiny_results):
    cfg, data, model, params, vectors, rows = tiny_cloud
    aug = tiny_results.augmentation
    assert aug["local_rows"] == pytest.approx(rows.counts("local").mean())
    assert aug["local+coarse"] == pytest.approx(rows.counts("candidates").mean())
    expected_kept = np.ceil(cfg.classifier.keep_fraction * rows.counts("candidates")).mean()
    assert aug["coda"] == pytest.approx(expected_kept)
    assert aug["local+random"] == pytest.approx(aug["coda"])   # random rows: as many as coda keeps
    assert tiny_results.overhead["bytes_down"] > tiny_results.overhead["model_copy_bytes"] > 0


def test_repeats_average_each_users_auc_over_independent_device_keys(tiny_cloud, tiny_results):
    import dataclasses

    from coda_jax.simulate import Results, run_device_stage

    cfg, data, model, params, vectors, rows = tiny_cloud
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, repeats=3))
    out = run_device_stage(cfg, data, CloudOutput(model, params, vectors, rows, retrieval={}), show_progress=False)
    valid = out.valid
    assert out.auc.shape == (1, 3, len(cfg.methods), len(data.users))      # [points, repeats, methods, users]
    dev = dict(auc_repeats=out.auc[0], auc=out.auc_mean[0], kept=out.kept[0].mean(axis=0))
    np.testing.assert_allclose(dev["auc"], dev["auc_repeats"].mean(axis=0))
    # repeat 0 is the single-repeat run (same key); the others are independent draws
    single = tiny_results.methods
    uid = [str(u) for u in data.table.user_ids[data.users][valid]]
    for i, name in enumerate(cfg.methods):
        np.testing.assert_allclose(dev["auc_repeats"][0, i][valid], [single[name]["per_user"][u] for u in uid],
                                   atol=1e-6)
        same = np.allclose(dev["auc_repeats"][1, i][valid], dev["auc_repeats"][0, i][valid])
        assert same == (name == "global"), name          # only the cloud model has no device randomness
    assert dev["kept"] == pytest.approx(np.ceil(cfg.classifier.keep_fraction * rows.counts("candidates")))
    # the results object: per-user AUC = the mean, plus each repeat's user average
    from coda_jax.simulate import simulate

    res = simulate(cfg, data=data, show_progress=False, cloud=CloudOutput(model, params, vectors, rows, retrieval={}))
    for i, name in enumerate(cfg.methods):
        assert res.methods[name]["per_repeat_auc"] == pytest.approx(dev["auc_repeats"][:, i][:, valid].mean(axis=1))
        assert res.methods[name]["auc"] == pytest.approx(dev["auc"][i][valid].mean())
    assert "mean over 3 device-stage repeats" in Results.table(res)


def test_results_json_round_trip(tiny_results, tmp_path):
    path = tiny_results.save(tmp_path / "out")
    loaded = json.loads(path.read_text())
    assert loaded["methods"]["coda"]["per_user"] == tiny_results.methods["coda"]["per_user"]
    assert loaded["config"]["finetune"]["steps"] == tiny_results.config["finetune"]["steps"]
    for stage in ("cloud_pretrain", "coarse_match", "device_stage"):
        assert loaded["timings"][stage] >= 0
    r = loaded["retrieval"]                          # the tiny pool (< 2000 rows): auto searched it exactly
    assert r["backend"] == "exact" and "rows <" in r["backend_reason"] and r["recall_at_k"] is None


def _tiny_yaml(tmp_path, **extra) -> str:
    from conftest import tiny_config

    from coda_jax.config import to_dict

    d = to_dict(tiny_config())
    d["synthetic"]["num_users"] = 16
    d["eval"]["bootstrap"] = 50
    for key, value in extra.items():
        section, name = key.split("__")
        d[section][name] = value
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return str(path)


@pytest.mark.slow
def test_cli_run_writes_results(tmp_path, capsys):
    cfg_path = _tiny_yaml(tmp_path)
    assert cli_main(["run", "--config", cfg_path, "--out", str(tmp_path / "run"), "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in ("global", "local", "local+random", "local+coarse", "coda"):
        assert name in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["data"]["simulated_users"] == 16


@pytest.mark.slow
def test_cli_run_on_movielens_format_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    d = tmp_path / "ml"
    d.mkdir()
    n_users, n_items = 12, 30
    (d / "u.user").write_text("".join(f"{u}|30|M|other|00000\n" for u in range(1, n_users + 1)))
    (d / "u.item").write_bytes(b"".join(
        f"{i}|Film {i} (1995)|01-Jan-1995||http://x|".encode("latin-1")
        + "|".join(str(int(g)) for g in rng.random(19) < 0.15).encode() + b"\n" for i in range(1, n_items + 1)))
    lines = []
    for u in range(1, n_users + 1):
        for j, i in enumerate(rng.choice(n_items, size=15, replace=False) + 1):
            lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + 1000 * j}\n")
    (d / "u.data").write_text("".join(lines))
    cfg_path = _tiny_yaml(tmp_path, data__source="movielens100k")
    assert cli_main(["run", "--config", cfg_path, "--data-dir", str(d), "--quiet"]) == 0
    assert "coda" in capsys.readouterr().out


@pytest.mark.parametrize("args, fragment", [
    (["--set", "finetune.stepz=3"], "finetune.stepz"),
    (["--set", "classifier.keep_fraction=2"], "classifier.keep_fraction"),
    (["--config", "/nonexistent/cfg.yaml"], "/nonexistent/cfg.yaml"),
    (["--set", "data.source=movielens100k", "--data-dir", "/nonexistent/ml"], "/nonexistent/ml"),
    (["--set", "data.source=movielens100k"], "data.data_dir"),
    (["--set", "finetune.trainable=[dense,bogus]", "--set", "synthetic.num_users=8"], "finetune.trainable"),
])
def test_cli_errors_name_the_problem(args, fragment, capsys):
    assert cli_main(["run", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert "error" in err and fragment in err


def test_device_only_rows_stay_off_the_cloud():
    """With data.device_only_fraction, the cloud's pool (its training data, candidates, random rows, MPDA's
    rows) never holds a device-only row, while every device still trains on all its training rows."""
    import dataclasses

    from coda_jax.data.dataset import make_dataset
    from coda_jax.cloud.stage import cloud_stage
    from conftest import tiny_config

    cfg = tiny_config()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, device_only_fraction=0.3))
    data = make_dataset(cfg)
    assert (data.train & ~data.pool).any()
    cloud = cloud_stage(cfg, data, show_progress=False)
    rows, report = cloud.rows, cloud.retrieval
    assert report["pool_rows"] == int(data.pool.sum())
    for name in ("candidates", "random"):
        got = getattr(rows, name)[1]
        assert got.size and data.pool[got].all(), name
    assert data.pool[rows.pool[1]].all() and rows.pool[1].size == data.pool.sum()
    local = np.sort(rows.local[1])
    want = np.flatnonzero(data.train & np.isin(data.table.user, data.users))
    np.testing.assert_array_equal(local, want)
