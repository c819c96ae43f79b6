"""A run from a DataFrame: Results.to_frame, eval.anchor, the provenance in results.json, and older files
still read."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

import coda_jax as cj
import importlib
simulate_module = importlib.import_module("coda_jax.simulate")   # (coda_jax.simulate the name is the function)
from coda_jax.provenance import RESULTS_SCHEMA_VERSION
from sims.cli import main as cli_main
from tests.conftest import tiny_config
from tests.test_frame import log_frame

pd = pytest.importorskip("pandas")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def frame_run():
    df, _ = log_frame(seed=1)
    cfg = cj.with_overrides(tiny_config(), {"seed": 1, "methods": ["global", "local", "local+coarse", "coda"],
                                            "eval.bootstrap": 50, "eval.anchor": "local", "model.name": "lr",
                                            "engine.max_shapes": 1})       # one compiled program: a quick test
    data = cj.make_dataset(cfg, cj.interactions_from_frame(df, user="uid", item="iid", label="click",
                                                           timestamp="ts", genres="tags"))
    cloud = cj.cloud_stage(cfg, data, show_progress=False)
    return cfg, data, cloud, cj.simulate(cfg, data=data, show_progress=False, cloud=cloud)


def test_to_frame_has_one_row_per_user_and_method(frame_run):
    cfg, data, cloud, res = frame_run
    frame = res.to_frame()
    assert list(frame.columns) == ["user_id", "method", "auc", "test_rows", "local_rows", "aug_rows", "reference"]
    for name, m in res.methods.items():
        mine = frame[frame["method"] == name].set_index("user_id")
        assert sorted(mine.index) == sorted(m["per_user"])
        assert np.allclose(mine.loc[list(m["per_user"]), "auc"], list(m["per_user"].values()))
    t = data.table                                        # test and local rows counted from the split itself
    for uid, row in frame[frame["method"] == "coda"].set_index("user_id").iterrows():
        u = int(np.flatnonzero(t.user_ids == uid)[0])
        assert row["test_rows"] == int((data.heldout & (t.user == u)).sum())
        assert row["local_rows"] == int((data.train & (t.user == u)).sum())
    candidates = dict(zip(t.user_ids[data.users], cloud.rows.counts("candidates")))   # per simulated user
    for name, expected in (("local", lambda c: 0), ("local+coarse", lambda c: c),
                           ("coda", lambda c: np.ceil(cfg.classifier.keep_fraction * c))):
        mine = frame[frame["method"] == name]
        assert np.allclose(mine["aug_rows"], [expected(candidates[u]) for u in mine["user_id"]]), name
    assert frame["user_id"].str.startswith("u").all()      # the frame's own user ids
    assert not frame["reference"].any()


def test_results_json_records_what_produced_it(frame_run, tmp_path):
    _, _, _, res = frame_run
    saved = json.loads(res.save(tmp_path).read_text())
    assert saved["schema_version"] == RESULTS_SCHEMA_VERSION == 2
    prov = saved["provenance"]
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        assert prov["versions"][name] == importlib.metadata.version(name)
    assert "scann" in prov["versions"] and prov["versions"]["coda-jax"] == cj.__version__
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert prov["git"]["commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    import jax

    assert prov["device"] == {"platform": jax.devices()[0].platform, "kind": jax.devices()[0].device_kind,
                              "count": jax.device_count(), "process_count": jax.process_count()}
    start, end = datetime.fromisoformat(prov["started_at"]), datetime.fromisoformat(prov["finished_at"])
    assert start.tzinfo is not None and start <= end
    assert Path(sys.argv[0]).name in prov["command_line"]
    assert saved["data"]["source"] == "DataFrame"


@pytest.mark.slow
def test_older_results_without_provenance_still_combine_and_report(frame_run, tmp_path, capsys):
    cfg, data, _, res = frame_run
    other = cj.simulate(cj.with_overrides(cfg, {"seed": 2}), data=data, show_progress=False)
    for name, r in (("a", res), ("b", other)):
        old = r.to_json()
        del old["schema_version"], old["provenance"]                 # as written before schema version 2
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(old))
    assert cli_main(["combine", str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert "2 runs (seeds [1, 2])" in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "a_auc.png").is_file() and (tmp_path / "fig" / "per_user.csv").is_file()


def test_genre_weights_on_data_without_genres_stop_before_the_cloud_stage(monkeypatch):
    df, _ = log_frame(seed=1)
    base = tiny_config()
    cfg = dataclasses.replace(base, finetune=dataclasses.replace(base.finetune, trainable=("genre",)))
    data = cj.make_dataset(cfg, cj.interactions_from_frame(df, user="uid", item="iid", label="click", timestamp="ts"))
    monkeypatch.setattr(simulate_module, "cloud_stage", lambda *a, **k: pytest.fail("the cloud stage ran"))
    with pytest.raises(cj.ConfigError, match=r"^finetune.trainable: 'genre' .*\(DataFrame\) has no genres"):
        cj.simulate(cfg, data=data, show_progress=False)


def test_eval_anchor_sets_the_method_the_paired_differences_start_from(frame_run):
    cfg, _, _, res = frame_run
    assert res.anchor == "local" and set(res.comparisons) == {"global", "local+coarse", "coda", "coarse-subset"}
    for name in res.comparisons:
        theirs = res.methods[name]["per_user"]
        users = [u for u in res.methods["local"]["per_user"] if u in theirs]       # in the run's user order
        local = np.array([res.methods["local"]["per_user"][u] for u in users])
        other = np.array([theirs[u] for u in users])
        assert res.comparisons[name] == cj.paired_bootstrap(local, other, cfg.eval.bootstrap, cfg.eval.confidence,
                                                            cfg.seed)
    assert "local - method [95% CI]" in res.table().splitlines()[0]
