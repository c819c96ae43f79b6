"""The engine around the compiled stage: shape classes, sweep points and repeats as lanes, methods from the
registry, diverged runs, sharding over devices, the persistent compilation cache."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from coda_jax.device.engine import local_width_classes
from coda_jax.device.methods import get_method, register_method
from coda_jax.cloud.output import CloudOutput
from coda_jax.simulate import simulate, simulate_points

ROOT = Path(__file__).resolve().parents[1]



@pytest.mark.parametrize("widths", [[1024, 256, 256, 256, 128, 128, 128, 64, 64, 32, 32], [64, 64, 16],
                                    [512], [256, 128, 64, 32, 16, 16]])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_local_width_classes_is_the_least_padding_split(widths, k):
    got = local_width_classes(np.asarray(widths), k)
    assert (got >= widths).all() and len(set(got.tolist())) <= k
    # brute force over every split of the (non-increasing) sequence into at most k contiguous classes
    best = None
    for cuts in itertools.chain.from_iterable(itertools.combinations(range(1, len(widths)), j) for j in range(k)):
        bounds = (0,) + cuts + (len(widths),)
        cost = sum(widths[a] * (b - a) for a, b in zip(bounds, bounds[1:]))
        best = cost if best is None else min(best, cost)
    assert got.sum() == best


@pytest.mark.slow
def test_sweep_points_as_lanes_equal_separate_runs(tiny_cloud):
    """Configs differing only in traced numbers run as lanes of one program, compiled once, and give each
    config's own results."""
    cfg, data, model, params, vectors, rows = tiny_cloud
    cloud = CloudOutput(model, params, vectors, rows, retrieval={})
    other = dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, learning_rate=0.02, aug_weight=0.5),
                                classifier=dataclasses.replace(cfg.classifier,
                                                               keep_fraction=0.5 * cfg.classifier.keep_fraction))
    both = simulate_points([cfg, other], data=data, show_progress=False, cloud=cloud)
    alone = [simulate(c, data=data, show_progress=False, cloud=cloud) for c in (cfg, other)]
    assert both[0].timings["device_stage_compiles"] + both[0].timings["device_stage_cache_hits"] == \
        alone[0].timings["device_stage_compiles"] + alone[0].timings["device_stage_cache_hits"]
    for lanes, single in zip(both, alone):
        for name in cfg.methods:
            a, b = lanes.methods[name]["per_user"], single.methods[name]["per_user"]
            assert a.keys() == b.keys()
            np.testing.assert_allclose([a[u] for u in a], [b[u] for u in a], atol=1e-4, err_msg=name)
        assert lanes.augmentation["coda"] == pytest.approx(single.augmentation["coda"])
    assert both[1].augmentation["coda"] < both[0].augmentation["coda"]       # half the keep fraction
    assert both[0].methods["local"]["per_user"] != both[1].methods["local"]["per_user"]


def test_a_method_registered_from_outside_runs_end_to_end(tiny_cloud):
    """A researcher's method, registered from their own code: here the coarse candidates under another name
    (same rows, same weights, same key), so its per-user AUCs must equal local+coarse's."""
    cfg, data, model, params, vectors, rows = tiny_cloud
    coarse = get_method("local+coarse").augment

    def my_coarse(x):
        return x.candidates, jnp.where(x.candidates.mask, x.finetune.aug_weight, 0.0)

    register_method("test:my-coarse", my_coarse, description="the coarse candidates, again", replace=True)
    assert coarse is not my_coarse
    c = dataclasses.replace(cfg, methods=("global", "local+coarse", "test:my-coarse"))
    res = simulate(c, data=data, show_progress=False, cloud=CloudOutput(model, params, vectors, rows, retrieval={}))
    mine, ref = res.methods["test:my-coarse"], res.methods["local+coarse"]
    assert mine["users"] == ref["users"] > 0
    np.testing.assert_allclose(list(mine["per_user"].values()), list(ref["per_user"].values()), atol=1e-6)
    assert res.augmentation["test:my-coarse"] == pytest.approx(rows.counts("candidates").mean())
    assert "test:my-coarse" in res.table()


def test_a_diverging_method_has_no_valid_users_never_auc_one(tiny_cloud):
    """Plain SGD at 1e30 makes the fine-tuned scores non-finite: those users are not scored (before, every
    fine-tuned method reported AUC 1.0); the cloud model's row is untouched; the table flags the divergence."""
    cfg, data, model, params, vectors, rows = tiny_cloud
    c = dataclasses.replace(cfg, methods=("global", "local"),
                            finetune=dataclasses.replace(cfg.finetune, optimizer="sgd", learning_rate=1e30))
    res = simulate(c, data=data, show_progress=False, cloud=CloudOutput(model, params, vectors, rows, retrieval={}))
    local, glob = res.methods["local"], res.methods["global"]
    assert local["nonfinite_logits"] > 0 and local["diverged_users"] == glob["users"] > 0
    assert local["users"] == 0 and local["per_user"] == {} and np.isnan(local["auc"])
    assert glob["nonfinite_logits"] == 0 and 0 < glob["auc"] < 1
    assert "DIVERGED" in res.table() and "local (" in res.table()


def _run_python(code: str, env: dict | None = None, timeout: int = 600) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_user_axis_sharded_over_four_devices_gives_the_same_per_user_auc():
    out = _run_python("""
        import json, jax, jax.numpy as jnp, numpy as np, dataclasses
        from tests.conftest import tiny_config
        from coda_jax.data.dataset import make_dataset
        from coda_jax.cloud.stage import cloud_stage
        from coda_jax.device.engine import run_device_stage
        cfg = tiny_config()
        cfg = dataclasses.replace(cfg, engine=dataclasses.replace(cfg.engine, chunk_users=8, lockstep_users=2))
        data = make_dataset(cfg)
        cloud = cloud_stage(cfg, data, show_progress=False)
        four = run_device_stage(cfg, data, cloud, False)
        one = run_device_stage(cfg, data, cloud, False, devices=jax.devices()[:1])
        print(json.dumps({"devices": len(jax.devices()), "mesh": four.compile.lanes["devices"],
                          "four": np.nan_to_num(four.auc, nan=-1).tolist(),
                          "one": np.nan_to_num(one.auc, nan=-1).tolist()}))
    """, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"})
    got = json.loads(out.strip().splitlines()[-1])
    assert got["devices"] == 4 and got["mesh"] == 4
    four, one = np.asarray(got["four"]), np.asarray(got["one"])
    assert (four >= 0).sum() > 10
    np.testing.assert_allclose(four, one, atol=1e-5)


@pytest.mark.slow
def test_a_second_run_loads_the_device_stage_from_the_persistent_cache(tmp_path):
    """Two runs of one config, each its own process (as a user runs them): the second compiles the device
    stage zero times, loading it from the persistent cache, and its results.json says so."""
    args = ["run", "--quiet", "--set", "synthetic.num_users=24", "--set", "synthetic.num_items=60",
            "--set", "synthetic.max_rows_per_user=20", "--set", "synthetic.min_rows_per_user=10",
            "--set", "finetune.steps=3", "--set", "classifier.steps=3", "--set", "cloud.epochs=1",
            "--set", "retrieval.backend=exact", "--set", "retrieval.max_candidates=10",
            "--set", "engine.chunk_users=32", "--set", "methods=[global,coda]"]
    env = {**os.environ, "CODA_JAX_CACHE": str(tmp_path / "cache")}
    timings = []
    for name in ("first", "second"):
        proc = subprocess.run([sys.executable, "-m", "sims.cli", *args, "--out", str(tmp_path / name)], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        timings.append(json.loads((tmp_path / name / "results.json").read_text())["timings"])
    first, second = timings
    assert first["device_stage_compiles"] >= 1 and first["device_stage_cache_hits"] == 0
    assert second["device_stage_compiles"] == 0 and second["device_stage_cache_hits"] == first["device_stage_compiles"]
    assert any((tmp_path / "cache").iterdir())


def test_cli_gives_jax_one_cpu_device_per_core_unless_told_otherwise():
    from sims.cli import host_devices

    env = {"XLA_FLAGS": "--xla_cpu_foo", "CODA_JAX_HOST_DEVICES": "3"}
    host_devices(env)
    assert env["XLA_FLAGS"] == "--xla_cpu_foo --xla_force_host_platform_device_count=3"
    kept = {"XLA_FLAGS": "--xla_force_host_platform_device_count=5", "CODA_JAX_HOST_DEVICES": "3"}
    host_devices(kept)
    assert kept["XLA_FLAGS"] == "--xla_force_host_platform_device_count=5"
    one = {"CODA_JAX_HOST_DEVICES": "1"}
    host_devices(one)
    assert "XLA_FLAGS" not in one
    auto = {}
    host_devices(auto)
    cores = len(os.sched_getaffinity(0))
    assert (f"--xla_force_host_platform_device_count={cores}" in auto.get("XLA_FLAGS", "")) == (cores > 1)
