"""The sweep store: variant folders named by their config's hash, results written as each variant finishes,
a killed sweep resumed without redoing or duplicating finished variants."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from coda_jax.config import Config, load, to_dict, with_overrides
from sims.cli import main as cli_main
from sims.sweep import grid_overrides, summarize, variant_id

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_work(monkeypatch):
    """A sweep that reaches the dataset fails the test: --out problems must stop it before any work."""
    import coda_jax.data.dataset as dataset

    def fail(*args, **kwargs):
        raise AssertionError("the sweep started before --out was checked")

    monkeypatch.setattr(dataset, "make_dataset", fail)


def test_variant_id_is_a_hash_of_the_resolved_config():
    a = with_overrides(Config(), ["finetune.steps=7"])
    assert variant_id(a) == variant_id(with_overrides(Config(), ["finetune.steps=7", "eval.bootstrap=2000"]))
    assert variant_id(a) != variant_id(Config())
    assert variant_id(a).startswith("variant-") and len(variant_id(a)) == len("variant-") + 12


def test_summary_row_of_a_results_json():
    results = {"methods": {"local": {"auc": 0.6, "users": 3, "per_user": {}}, "coda": {"auc": None, "users": 3}},
               "comparisons": {"local": {"mean": None, "low": None, "high": None}},
               "augmentation": {"coda": 4.0}, "timings": {"device_stage": 2.5}}
    assert summarize(1, ["a=1"], results, "variant-x") == {
        "variant": 1, "id": "variant-x", "overrides": ["a=1"], "auc": {"local": 0.6, "coda": None}, "users": 3,
        "coda_minus": {"local": {"mean": None, "low": None, "high": None}}, "kept": 4.0, "device_seconds": 2.5}


def test_sweep_out_problems_stop_it_before_any_work(tmp_path, capsys, no_work):
    f = tmp_path / "file"
    f.write_text("x")
    assert cli_main(["sweep", "--quiet", "--grid", "eval.bootstrap=10,20", "--out", str(f)]) == 2
    assert capsys.readouterr().err.endswith(f"coda-sim: error: --out {f}: exists and is not a folder\n")
    assert cli_main(["sweep", "--quiet", "--grid", "eval.bootstrap=10,10", "--out", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err.endswith("coda-sim: error: --grid: variants 0 (eval.bootstrap=10) and 1 "
                                            "(eval.bootstrap=10) are the same config\n")
    other = tmp_path / "other"                         # another sweep's index is not replaced without a word
    other.mkdir()
    (other / "sweep.json").write_text(json.dumps([{"variant": 0, "id": "variant-000000000000"}]))
    assert cli_main(["sweep", "--quiet", "--grid", "eval.bootstrap=10,20", "--out", str(other)]) == 2
    assert capsys.readouterr().err.endswith(
        f"coda-sim: error: {other / 'sweep.json'}: belongs to another sweep (variant variant-000000000000 is not "
        "in this grid); give --overwrite to replace it (finished variant folders are kept), or use another --out\n")
    assert not (tmp_path / "s").exists()
    cfg = with_overrides(Config(), ["eval.bootstrap=10"])        # a variant folder holding another config's run
    (other / variant_id(cfg)).mkdir()
    (other / variant_id(cfg) / "results.json").write_text(json.dumps({
        "config": to_dict(Config()), "methods": {}, "comparisons": {}, "augmentation": {}, "timings": {}}))
    (other / "sweep.json").unlink()
    assert cli_main(["sweep", "--quiet", "--grid", "eval.bootstrap=10,20", "--out", str(other)]) == 2
    assert capsys.readouterr().err.endswith(
        f"coda-sim: error: {other / variant_id(cfg) / 'results.json'}: holds the results of another config than "
        "this variant's; give --overwrite to run the variant again and replace it, or use another --out\n")


def _tiny_yaml(tmp_path) -> Path:
    from conftest import tiny_config

    d = to_dict(tiny_config())
    d["synthetic"]["num_users"] = 16
    d["eval"]["bootstrap"] = 50
    d["methods"] = ["local", "coda"]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


GRID = ["--grid", "eval.bootstrap=20,30", "--grid", "eval.repeats=1,300"]
"""Four variants sharing one compiled device stage; the second and fourth run it 300 times (about 2 s on a
CPU): the sweep is reliably inside the second when the first one's results.json appears."""
SETTINGS = ["--set", "retrieval.backend=exact", "--set", "engine.chunk_users=16"]      # one chunk, one compile


def _sweep(cfg: Path, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sims.cli", "sweep", "--quiet", "--config", str(cfg),
                             *SETTINGS, *GRID, "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out, err


def _table(path: Path) -> list[dict]:
    """sweep.json's rows without the timings (which differ between runs)."""
    rows = json.loads(path.read_text())
    for r in rows:
        r.pop("device_seconds")
    return rows


@pytest.mark.slow
def test_a_killed_sweep_resumes_to_the_uninterrupted_table(tmp_path):
    cfg = _tiny_yaml(tmp_path)
    env = dict(os.environ, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax-cache"),   # later runs compile less
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    base = with_overrides(load(cfg), [SETTINGS[1], SETTINGS[3]])
    ids = [variant_id(with_overrides(base, ov)) for ov in grid_overrides([GRID[1], GRID[3]])]
    assert len(set(ids)) == 4

    killed = tmp_path / "killed"
    proc = _sweep(cfg, killed, env)
    deadline = time.monotonic() + 240
    while not list(killed.glob("variant-*/results.json")):          # kill once the first variant is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = [i for i in ids if (killed / i / "results.json").exists()]
    assert done == ids[:1]                              # killed inside the second variant
    first = (killed / ids[0] / "results.json").read_bytes()
    json.loads(first)                                   # complete, never a truncated file
    assert not (killed / ids[2]).exists()
    (killed / ids[2]).mkdir()                           # a cut-off write by an older, non-atomic version
    (killed / ids[2] / "results.json").write_text('{"config": {"seed": 0}, "meth')

    out, err = _finish(_sweep(cfg, killed, env))        # rerun: resumes
    assert err.count("finished earlier, read back") == 1 and f"{killed / ids[0]}: finished earlier" in err
    assert f"{killed / ids[2] / 'results.json'}: not valid JSON" in err
    assert (killed / ids[0] / "results.json").read_bytes() == first           # read back, not run again
    assert len(out.strip().splitlines()) == 4

    fresh = tmp_path / "fresh"
    _finish(_sweep(cfg, fresh, env))                    # an uninterrupted sweep
    table = _table(killed / "sweep.json")
    assert table == _table(fresh / "sweep.json")
    assert [r["id"] for r in table] == ids and [r["variant"] for r in table] == [0, 1, 2, 3]     # grid order
    assert sorted(p.name for p in killed.iterdir()) == sorted(ids + ["sweep.json"])             # nothing else
    for i in ids:
        assert sorted(p.name for p in (killed / i).iterdir()) == ["results.json", "variant.json"]
        assert json.loads((killed / i / "results.json").read_text())["methods"] == \
            json.loads((fresh / i / "results.json").read_text())["methods"]
