"""Command-line values reach the config typed by their field (not parsed as YAML): ``sims.cli.build_config``
on parsed arguments, and sweep's ``--grid`` items. No simulation runs here."""

from __future__ import annotations

import pytest

from coda_jax.config import ConfigError
from sims.cli import build_config, make_parser
from sims.sweep import grid_overrides


def _cfg(*argv: str, command: str = "run"):
    return build_config(make_parser().parse_args([command, *argv]))


@pytest.mark.parametrize("value", ["runs/x #1", "2024", "yes", "null", "*x", "%x", "[x", "a: b", "~", "1e3"])
@pytest.mark.parametrize("flag, section, field", [("--data-dir", "data", "data_dir"), ("--data-path", "data", "path")])
def test_path_flags_keep_the_exact_text(flag, section, field, value):
    cfg = _cfg(f"{flag}={value}")
    assert getattr(getattr(cfg, section), field) == value


def test_path_flags_win_over_set_and_config(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("data:\n  data_dir: from/file\n  path: from/file.csv\n")
    cfg = _cfg("--config", str(p), "--set", "data.data_dir=from/set", "--data-dir", "from flag #2",
               "--data-path", "x.csv")
    assert (cfg.data.data_dir, cfg.data.path) == ("from flag #2", "x.csv")
    assert _cfg("--config", str(p)).data.data_dir == "from/file"


@pytest.mark.parametrize("flag", ["--data-dir", "--data-path"])
@pytest.mark.parametrize("value", ["", "  "])
def test_empty_path_flag_is_an_error_not_ignored(flag, value):
    with pytest.raises(ConfigError) as exc:
        _cfg(f"{flag}={value}")
    assert str(exc.value) == f"{flag}: empty path"


@pytest.mark.parametrize("item, section, field, expected", [
    ("finetune.learning_rate=1e-3", "finetune", "learning_rate", 0.001),
    ("cloud.learning_rate=5E-4", "cloud", "learning_rate", 0.0005),
    ("finetune.steps=120", "finetune", "steps", 120),
    ("data.skip_bad_rows=yes", "data", "skip_bad_rows", True),
    ("data.skip_bad_rows=false", "data", "skip_bad_rows", False),
    ("finetune.trainable=[dense,item]", "finetune", "trainable", ("dense", "item")),
    ("model.name=deepfm", "model", "name", "deepfm"),
    ("data.amazon.meta_path=meta #1.json", "data.amazon", "meta_path", "meta #1.json"),
])
def test_set_values_typed_by_field(item, section, field, expected):
    got = _cfg("--set", item)
    for part in (*section.split("."), field):
        got = getattr(got, part)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("item, fragment", [
    ("finetune.learning_rate=abc", "finetune.learning_rate: expected a number, got 'abc'"),
    ("finetune.learning_rate=nan", "finetune.learning_rate: must be a finite number"),
    ("data.like_threshold=inf", "data.like_threshold: must be a finite number"),
    ("model.name=*x", "model.name: unknown model '*x'"),
    ("seed=%x", "seed: expected an integer, got '%x'"),
    ("seed=4294967296", "seed: must be in [0, 2^32)"),
    ("finetune.steps=[x", "finetune.steps: expected an integer, got '[x'"),
])
def test_malformed_set_value_names_the_key(item, fragment):
    with pytest.raises(ConfigError) as exc:
        _cfg("--set", item)
    assert fragment in str(exc.value)


def test_sweep_grid_items_apply_as_typed_overrides():
    from coda_jax.config import Config, with_overrides

    grid = ["finetune.trainable=[dense],[dense,user]", "classifier.keep_fraction=0.1,1e-1"]
    combos = grid_overrides(grid)
    cfgs = [with_overrides(Config(), ov) for ov in combos]
    assert [(c.finetune.trainable, c.classifier.keep_fraction) for c in cfgs] == [
        (("dense",), 0.1), (("dense",), 0.1), (("dense", "user"), 0.1), (("dense", "user"), 0.1)]
    # the sweep subcommand shares build_config and its typed --data-dir
    assert _cfg("--data-dir", "2024", "--grid", grid[0], command="sweep").data.data_dir == "2024"
