"""Tests for config composition (:func:`coda_jax.config.load_all`, ``--config A --config B``) and the shipped
model overlays (``configs/models/*.yaml``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from coda_jax.config import ConfigError, load, load_all, merge, to_dict
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
    base = _write(tmp_path, "base.yaml", "finetune:\n  steps: 30\n  select: holdout\n  check_every: 10\n")
    over = _write(tmp_path, "over.yaml", "finetune:\n  steps: 25\n")          # 10 no longer divides 25
    with pytest.raises(ConfigError) as exc:
        load_all([base, over])
    assert f"{base} + {over}" in str(exc.value) and "finetune.check_every" in str(exc.value)


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
