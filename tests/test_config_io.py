"""Tests for config composition (:func:`coda_jax.config.load_all`, ``--config A --config B``), the shipped
model overlays (``configs/models/*.yaml``) and retired keys (:data:`coda_jax.config.RETIRED`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coda_jax.config import (RETIRED, Config, ConfigError, drop_retired, from_dict, load, load_all, merge, to_dict,
                             with_overrides)
from sims.cli import build_config, make_parser

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
OVERLAYS = sorted((CONFIGS / "models").glob("*.yaml"))


def _write(folder: Path, name: str, text: str) -> Path:
    p = folder / name
    p.write_text(text)
    return p


def test_two_files_compose_as_one_merged_file(tmp_path):
    base = _write(tmp_path, "base.yaml", "seed: 3\nmodel:\n  name: din\n  embed_dim: 8\nfinetune:\n  steps: 9\n"
                                           "  trainable: [dense, user]\n")
    over = _write(tmp_path, "over.yaml", "model:\n  name: deepfm\nfinetune:\n  trainable: [dense]\n"
                                           "classifier:\n  kind: mlp\n")
    merged = _write(tmp_path, "merged.yaml", "seed: 3\nmodel:\n  name: deepfm\n  embed_dim: 8\nfinetune:\n"
                                               "  steps: 9\n  trainable: [dense]\nclassifier:\n  kind: mlp\n")
    assert load_all([base, over]) == load(merged)
    assert load_all([base]) == load(base)
    # the command line: --config repeated, later files win key by key; --set still wins over both
    args = make_parser().parse_args(["run", "--config", str(base), "--config", str(over), "--set", "seed=5"])
    cfg = build_config(args)
    assert cfg.model.name == "deepfm" and cfg.model.embed_dim == 8 and cfg.seed == 5


def test_merge_is_key_by_key_and_lists_replace():
    assert merge({"a": {"x": 1, "y": [1, 2]}, "b": 1}, {"a": {"y": [3]}, "c": 2}) == \
        {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}


def test_an_unknown_key_in_an_overlay_names_that_file(tmp_path):
    base = _write(tmp_path, "base.yaml", "seed: 1\n")
    over = _write(tmp_path, "overlay.yaml", "finetune:\n  learnin_rate: 0.3\n")
    with pytest.raises(ConfigError) as exc:
        load_all([base, over])
    msg = str(exc.value)
    assert str(over) in msg and "finetune.learnin_rate" in msg and str(base) not in msg
    bad_type = _write(tmp_path, "types.yaml", "cloud:\n  epochs: two\n")
    with pytest.raises(ConfigError, match=f"{bad_type}: cloud.epochs"):
        load_all([base, bad_type])


def test_a_range_error_of_the_merged_config_names_the_files(tmp_path):
    base = _write(tmp_path, "base.yaml", "synthetic:\n  num_items: 200\n  max_rows_per_user: 150\n")
    over = _write(tmp_path, "over.yaml", "synthetic:\n  num_items: 120\n")     # fewer items than max rows
    with pytest.raises(ConfigError) as exc:
        load_all([base, over])
    assert f"{base} + {over}" in str(exc.value) and "synthetic.max_rows_per_user" in str(exc.value)


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.stem)
def test_model_overlays_hold_only_model_settings(overlay):
    raw = yaml.safe_load(overlay.read_text())
    assert set(raw) <= {"model", "classifier", "finetune"}
    assert raw["model"]["name"] == overlay.stem


@pytest.mark.parametrize("name", ["movielens100k", "movielens100k_two_cutoff", "movielens1m", "movielens20m",
                                  "amazon", "taobao", "csv_example"])
def test_every_din_dataset_config_carries_the_validated_din_setting(name):
    """What was chosen on validation reaches every dataset: laying configs/models/din.yaml over a DIN dataset
    config changes nothing (SGD at 0.3, an MLP classifier keeping 30%, [dense, user])."""
    path = CONFIGS / f"{name}.yaml"
    cfg = load(path)
    assert cfg.model.name == "din"
    assert to_dict(load_all([path, CONFIGS / "models" / "din.yaml"])) == to_dict(cfg)
    assert (cfg.finetune.optimizer, cfg.finetune.learning_rate, cfg.classifier.kind) == ("sgd", 0.3, "mlp")


# ----------------------------------------------------------------------------- retired settings


def _retired_says(msg: str, key: str) -> None:
    assert f"{key} was retired: " in msg and "docs/configuration.md, 'Retired settings'" in msg


@pytest.mark.parametrize("key", sorted(RETIRED))
def test_a_retired_key_in_a_file_is_refused_saying_it_was_retired(tmp_path, key):
    section, name = key.split(".")
    value = yaml.safe_dump(RETIRED[key][0]).splitlines()[0]        # even its old default is refused
    p = _write(tmp_path, "old.yaml", f"{section}:\n  {name}: {value}\n")
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert str(p) in str(exc.value)
    _retired_says(str(exc.value), key)
    with pytest.raises(ConfigError) as exc:                        # also as one of several files
        load_all([_write(tmp_path, "base.yaml", "seed: 1\n"), p])
    _retired_says(str(exc.value), key)


@pytest.mark.parametrize("key", sorted(RETIRED))
def test_a_retired_key_on_the_command_line_is_refused_saying_it_was_retired(key):
    section, name = key.split(".")
    for item in (f"{key}=1", f"{section}={{{name}: 1}}"):
        with pytest.raises(ConfigError) as exc:
            with_overrides(Config(), [item])
        assert "--set" in str(exc.value)
        _retired_says(str(exc.value), key)
    with pytest.raises(ConfigError) as exc:
        build_config(make_parser().parse_args(["run", "--set", f"{key}=1"]))
    _retired_says(str(exc.value), key)


def test_an_older_results_config_reads_when_retired_keys_hold_the_kept_behaviour():
    """A results.json of before the retirement spells out every field: retired keys at the value whose
    behaviour was kept are dropped (so `coda-sim combine` still reads it), at any other value refused."""
    old = to_dict(Config())
    for key, (kept, _) in RETIRED.items():
        section, name = key.split(".")
        old[section][name] = kept
    assert from_dict(drop_retired(old)) == Config()
    assert "select" in old["finetune"]                              # the input is not changed
    key = sorted(RETIRED)[0]
    section, name = key.split(".")
    other = {**old, section: {**old[section], name: "something else"}}
    with pytest.raises(ConfigError, match=f"{key} was retired"):
        from_dict(drop_retired(other))


@pytest.mark.parametrize("old", ["scann_leaves_to_search", "scann_reorder"])
def test_the_old_scann_knobs_name_what_replaced_them(tmp_path, old):
    p = _write(tmp_path, "old.yaml", f"retrieval:\n  {old}: 1\n")
    with pytest.raises(ConfigError, match=f"old.yaml: retrieval.{old}: moved to retrieval.target_recall"):
        load(p)
    with pytest.raises(ConfigError, match=f"retrieval.{old} moved to retrieval.target_recall"):
        with_overrides(Config(), [f"retrieval.{old}=1"])
