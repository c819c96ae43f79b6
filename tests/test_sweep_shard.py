"""coda-sim sweep --shard I/N: shards into one store run every variant once and give the unsharded sweep."""

from __future__ import annotations

import json

import pytest
import yaml

from coda_jax.config import ConfigError, load, to_dict
from sims.sweep import parse_shard, run_sweep

GRID = ["finetune.learning_rate=0.05,0.2", "finetune.steps=2,3"]          # 4 variants in 2 compiled groups


def _base(tmp_path):
    from conftest import tiny_config

    d = to_dict(tiny_config())
    d["synthetic"]["num_users"] = 16
    d["eval"]["bootstrap"] = 30
    d["methods"] = ["local", "coda"]
    d["retrieval"]["backend"] = "exact"
    d["engine"]["chunk_users"] = 16
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return load(path)


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) is None
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            parse_shard(bad)


@pytest.mark.slow
def test_two_shards_into_one_store_give_the_unsharded_sweep(tmp_path):
    base = _base(tmp_path)
    store = tmp_path / "store"
    run_sweep(base, GRID, str(store), show_progress=False, shard=(1, 2))
    assert len(list(store.glob("variant-*/results.json"))) == 2                # shard 1's own group only
    rows = run_sweep(base, GRID, str(store), show_progress=False, shard=(0, 2))
    claims = [p.read_text().strip() for p in store.glob("variant-*/claim")]
    assert sorted(claims) == ["0/2", "0/2", "1/2", "1/2"]                      # every variant claimed once
    full = run_sweep(base, GRID, str(tmp_path / "full"), show_progress=False)
    assert [r["id"] for r in rows] == [r["id"] for r in full] and len(full) == 4
    for a, b in zip(rows, full):
        assert a["overrides"] == b["overrides"]
        for m in b["auc"]:
            assert a["auc"][m] == pytest.approx(b["auc"][m], abs=1e-5)
    table = json.loads((store / "sweep.json").read_text())
    assert [r["id"] for r in table] == [r["id"] for r in full]
    # a rerun of a shard finds everything finished: nothing runs, the rows are the same
    again = run_sweep(base, GRID, str(store), show_progress=False, shard=(1, 2))
    assert [r["auc"] for r in again] == [r["auc"] for r in rows]
