"""The library behaves like the CLI: configs validated before any work, validated overrides, the host
settings (compile cache, CPU devices), and the anchor of the paired differences."""

from __future__ import annotations

import dataclasses
import os

import pytest

import coda_jax as cj
import importlib
simulate_module = importlib.import_module("coda_jax.simulate")   # (coda_jax.simulate the name is the function)
from coda_jax.config import Config, ConfigError
from tests.conftest import tiny_config


@pytest.fixture
def no_work(monkeypatch):
    """Any data or cloud work fails the test: the error must come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the config was checked")

    for name in ("make_dataset", "cloud_stage", "run_device_stage"):
        monkeypatch.setattr(simulate_module, name, refuse)


@pytest.mark.parametrize("change, key", [
    (lambda c: dataclasses.replace(c, classifier=dataclasses.replace(c.classifier, keep_fraction=1.7)),
     "classifier.keep_fraction"),
    (lambda c: dataclasses.replace(c, finetune=dataclasses.replace(c.finetune, steps=-1)), "finetune.steps"),
    (lambda c: dataclasses.replace(c, methods=("global", "no-such-method")), "methods"),
    (lambda c: dataclasses.replace(c, eval=dataclasses.replace(c.eval, anchor="mpda")), "eval.anchor"),
])
def test_simulate_refuses_an_invalid_config_before_reading_any_data(no_work, change, key):
    cfg = change(Config())                       # dataclasses.replace skips validation
    with pytest.raises(ConfigError, match=rf"^simulate: {key}: "):
        cj.simulate(cfg, show_progress=False)


def test_simulate_points_checks_every_point_and_their_shared_structure(no_work):
    good = Config()
    bad = dataclasses.replace(good, finetune=dataclasses.replace(good.finetune, steps=0))
    with pytest.raises(ConfigError, match=r"^simulate_points: config 1: finetune.steps: must be >= 1"):
        cj.simulate_points([good, bad], show_progress=False)
    other = cj.with_overrides(good, {"finetune.batch_size": 7})   # a static size, not a traced number
    with pytest.raises(ConfigError, match=r"config 1 differs from config 0 in finetune.batch_size"):
        cj.simulate_points([good, other], show_progress=False)
    lanes = cj.with_overrides(good, {"finetune.learning_rate": 0.01})        # numbers only: lanes of one run
    from coda_jax.config_points import check_configs

    assert check_configs([good, lanes]) == [good, lanes]
    with pytest.raises(ConfigError, match="not a coda_jax.Config"):
        cj.simulate_points([{"seed": 1}], show_progress=False)


def test_with_overrides_takes_python_values_and_validates_them():
    cfg = cj.with_overrides(Config(), {"classifier.keep_fraction": 0.5, "finetune.trainable": ["dense", "user"],
                                       "cloud": {"epochs": 5}, "seed": 3})
    assert cfg.classifier.keep_fraction == 0.5 and cfg.finetune.trainable == ("dense", "user")
    assert cfg.cloud.epochs == 5 and cfg.cloud.batch_size == Config().cloud.batch_size and cfg.seed == 3
    assert cj.with_overrides(Config(), ["finetune.steps=7"]).finetune.steps == 7        # the --set form
    for bad, message in [({"classifier.keep_fraction": 1.7}, "classifier.keep_fraction: must be in"),
                         ({"finetune.steps": -1}, "finetune.steps: must be >= 1"),
                         ({"finetune.steps": "5"}, "finetune.steps: expected an integer"),
                         ({"finetune.stepz": 1}, "unknown key finetune.stepz"),
                         ({"cloud": {"epochz": 1}}, "cloud.epochz: unknown key"),
                         ({"eval.anchor": "mpda"}, "eval.anchor: must be one of the run's methods")]:
        with pytest.raises(ConfigError, match=message):
            cj.with_overrides(Config(), bad)
    with pytest.raises(ConfigError, match="a mapping or a list"):
        cj.with_overrides(Config(), "finetune.steps=7")


def test_a_trainable_group_the_data_lacks_is_an_error_naming_the_key(tiny_data):
    no_genres = dataclasses.replace(tiny_data, table=dataclasses.replace(tiny_data.table, num_genres=0))
    cfg = tiny_config(finetune=dataclasses.replace(tiny_config().finetune, trainable=("genre",)))
    with pytest.raises(ConfigError, match=r"^finetune.trainable: 'genre' names genre weights, but the data"):
        simulate_module.check_trainable(cfg, no_genres)
    simulate_module.check_trainable(cfg, tiny_data)                     # with genres: fine
    simulate_module.check_trainable(tiny_config(), no_genres)           # other groups: fine


def test_enable_compile_cache_sets_jax_cache_folder(tmp_path):
    import jax

    old = jax.config.jax_compilation_cache_dir
    try:
        assert cj.enable_compile_cache(tmp_path / "xla") == str(tmp_path / "xla")
        assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
        assert cj.enable_compile_cache() == os.environ["CODA_JAX_CACHE"]    # the default: $CODA_JAX_CACHE
    finally:
        jax.config.update("jax_compilation_cache_dir", old)


def test_use_host_devices_as_the_cli_does():
    env = {"XLA_FLAGS": "--xla_cpu_foo"}
    assert cj.use_host_devices(3, environ=env) == 3
    assert env["XLA_FLAGS"] == "--xla_cpu_foo --xla_force_host_platform_device_count=3"
    assert cj.use_host_devices(environ=env) == 3                            # a count in XLA_FLAGS wins
    assert cj.use_host_devices(1, environ=env) == 1 and env["XLA_FLAGS"] == "--xla_cpu_foo"
    import jax

    have = len(jax.devices("cpu"))                                          # the backend is running here
    assert cj.use_host_devices(have) == have
    with pytest.raises(RuntimeError, match="before the first JAX computation"):
        cj.use_host_devices(have + 1)


def test_combine_takes_the_runs_anchor_and_records_its_provenance(tmp_path, capsys):
    import json

    from sims.cli import main
    from tests.test_combine import _run

    dirs = []
    for seed in (0, 1):
        pu = {str(u): 0.5 + 0.01 * u + 0.001 * seed for u in range(10)}
        run = _run(seed, {"local": pu, "coda": {u: a + 0.02 for u, a in pu.items()}},
                   eval=dataclasses.replace(Config().eval, anchor="local"))
        (tmp_path / f"run{seed}").mkdir()
        (tmp_path / f"run{seed}" / "results.json").write_text(json.dumps(run))
        dirs.append(str(tmp_path / f"run{seed}"))
    assert main(["combine", *dirs, "--out", str(tmp_path / "combined.json")]) == 0
    assert "local - method [95% CI]" in capsys.readouterr().out
    out = json.loads((tmp_path / "combined.json").read_text())
    assert out["anchor"] == "local" and out["comparisons"]["coda"]["mean"] == pytest.approx(-0.02)
    assert out["schema_version"] == 2 and out["provenance"]["versions"]["jax"]
    assert out["sources"] == [str(tmp_path / f"run{s}" / "results.json") for s in (0, 1)]


def test_use_host_devices_after_importing_the_library_takes_effect():
    import subprocess
    import sys

    code = ("import coda_jax as cj\nassert cj.use_host_devices(3) == 3\nimport jax\nprint(len(jax.devices('cpu')))")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "CODA_JAX_HOST_DEVICES")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3"


def test_an_unhashable_module_is_refused_when_registered():
    import flax.linen as nn

    from coda_jax.registry import RegistryError

    with pytest.raises(RegistryError, match=r"register_classifier\('test:listed'\).*must be hashable.*tuples"):
        cj.register_classifier("test:listed", lambda cfg: nn.Sequential([nn.Dense(4), nn.relu, nn.Dense(1),
                                                                         lambda z: z[..., 0]]))
