"""Nothing lost, no silent wrong answer: ``--out`` checked before the run, existing results kept unless
``--overwrite``, strict JSON (NaN as null), atomic writes, and Ctrl-C leaving with status 130."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from coda_jax import results_io
from coda_jax.results_io import dumps_strict, strict_json, write_json_atomic
from coda_jax.simulate import Results
from sims.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
SIMULATE = sys.modules["coda_jax.simulate"]      # the module (``coda_jax.simulate`` is also the function)


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def _results(coda_auc: float = float("nan")) -> Results:
    """A small Results: coda evaluated no user (AUC NaN), numpy values where a run has them."""
    return Results(
        config={"seed": 0, "eval": {"repeats": 1}},
        methods={"local": {"auc": 0.61, "users": 2, "per_user": {"1": 0.6, "2": 0.62}},
                 "coda": {"auc": coda_auc, "users": np.int64(0), "per_user": {}}},
        comparisons={"local": {"mean": float("nan"), "low": float("nan"), "high": float("nan")}},
        augmentation={"local_rows": 12.0, "local": 0.0, "coda": np.float32(3.5)},
        retrieval={"recall_at_k": None}, timings={"device_stage": 1.25}, overhead={"bytes_down": np.int64(10)},
        data={"simulated_users": 2})


@pytest.fixture
def no_simulation(monkeypatch):
    """``simulate`` that fails the test if reached: the --out checks must come before any work."""
    def fail(*args, **kwargs):
        raise AssertionError("the simulation started before --out was checked")

    monkeypatch.setattr(SIMULATE, "simulate", fail)


@pytest.fixture
def fake_simulation(monkeypatch):
    monkeypatch.setattr(SIMULATE, "simulate", lambda cfg, show_progress=True: _results())


def test_run_out_that_is_a_file_fails_before_any_work(tmp_path, capsys, no_simulation):
    f = tmp_path / "notes.txt"
    f.write_text("x")
    assert cli_main(["run", "--quiet", "--out", str(f)]) == 2
    assert capsys.readouterr().err == f"coda-sim: error: --out {f}: exists and is not a folder\n"
    assert cli_main(["run", "--quiet", "--out", str(f / "run")]) == 2        # a parent that cannot be made
    assert capsys.readouterr().err == (f"coda-sim: error: --out {f / 'run'}: cannot create this folder: "
                                       f"{f} is not a folder\n")
    assert f.read_text() == "x"


def test_run_out_that_is_not_writable_fails_before_any_work(tmp_path, capsys, monkeypatch, no_simulation):
    monkeypatch.setattr(results_io.os, "access", lambda path, mode: False)    # as a read-only folder (even as root)
    assert cli_main(["run", "--quiet", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"coda-sim: error: --out {tmp_path}: this folder is not writable\n"
    assert cli_main(["run", "--quiet", "--out", str(tmp_path / "a" / "b")]) == 2
    assert capsys.readouterr().err == (f"coda-sim: error: --out {tmp_path / 'a' / 'b'}: cannot create this folder: "
                                       f"{tmp_path} is not writable\n")


def test_run_keeps_an_existing_results_json_unless_overwrite(tmp_path, capsys, monkeypatch, no_simulation):
    out = tmp_path / "run"
    out.mkdir()
    old = out / "results.json"
    old.write_bytes(b'{"old": true}\n')
    assert cli_main(["run", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == (f"coda-sim: error: --out {out}: {old} already exists; give --overwrite to replace it "
                   "(or choose another --out)\n")
    assert old.read_bytes() == b'{"old": true}\n'

    monkeypatch.setattr(SIMULATE, "simulate", lambda cfg, show_progress=True: _results())
    assert cli_main(["run", "--quiet", "--out", str(out), "--overwrite"]) == 0       # replaced
    assert f"results written to {old}" in capsys.readouterr().out
    assert _strict_loads(old.read_text())["methods"]["local"]["per_user"] == {"1": 0.6, "2": 0.62}
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_results_json_is_strict_json_with_nan_as_null(tmp_path, fake_simulation, capsys):
    assert cli_main(["run", "--quiet", "--out", str(tmp_path / "run")]) == 0
    text = (tmp_path / "run" / "results.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = _strict_loads(text)                                 # raises on a bare NaN
    assert loaded["methods"]["coda"]["auc"] is None
    assert loaded["methods"]["coda"]["users"] == 0
    assert loaded["comparisons"]["local"] == {"mean": None, "low": None, "high": None}
    assert loaded["augmentation"]["coda"] == 3.5 and loaded["overhead"]["bytes_down"] == 10
    assert loaded["methods"]["local"]["auc"] == 0.61


def test_strict_json_values():
    assert strict_json({"a": [np.float32(0.5), np.nan, -np.inf, (np.int32(2), np.bool_(True))], 3: None}) == \
        {"a": [0.5, None, None, [2, True]], "3": None}
    assert dumps_strict({"x": float("inf")}, indent=None) == '{"x": null}'
    with pytest.raises(TypeError, match="object"):
        strict_json({"x": object()})


def test_a_failed_write_leaves_the_previous_results_json_intact(tmp_path, monkeypatch):
    out = tmp_path / "run"
    path = _results(0.7).save(out)
    before = path.read_bytes()
    assert _strict_loads(before.decode())["methods"]["coda"]["auc"] == 0.7

    broken = _results()
    broken.timings["device_stage"] = object()                    # cannot be serialized: fails before writing
    with pytest.raises(TypeError):
        broken.save(out)
    assert path.read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]

    def disk_full(fd):                                           # fails after the new text is half on disk
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_io.os, "fsync", disk_full)      # every file, the fallback ones too
    with pytest.raises(results_io.SaveError, match=f"cannot write {path}: No space left on device; no fallback"):
        _results().save(out)
    assert path.read_bytes() == before                           # the old file, not a truncated new one
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]     # and no temporary file left


def test_write_json_atomic_replaces_and_keeps_permissions(tmp_path):
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": math.nan})
    assert _strict_loads(path.read_text()) == {"a": None}
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line(tmp_path):
    """SIGINT once the run has started (the default synthetic run takes minutes): status 130 at once."""
    proc = subprocess.Popen([sys.executable, "-m", "sims.cli", "run", "--quiet"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(60, proc.kill)                   # never hang the suite on a stuck child
    watchdog.start()
    try:
        first = proc.stderr.readline()                           # printed once jax is imported: handler is on
        assert first.startswith("coda-sim run:"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err == "coda-sim: interrupted\n"


def test_stale_temporaries_of_a_killed_write_are_removed(tmp_path):
    (tmp_path / "sweep.json").write_text("[]")
    (tmp_path / ".sweep.json.k2j4.tmp").write_text("[{")                  # a writer killed mid-way
    (tmp_path / ".other.json.k2j4.tmp").write_text("x")                   # not ours to remove
    removed = results_io.remove_stale_temporaries(tmp_path, ("sweep.json",))
    assert removed == [tmp_path / ".sweep.json.k2j4.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.k2j4.tmp", "sweep.json"]


def test_results_report_peak_memory(tiny_cfg, tiny_data, tiny_cloud_output):
    """results.json carries the process's peak RSS (the run cannot have used less than the dataset's arrays)
    and the device memory (None on the CPU backend); the table prints it."""
    import jax

    from coda_jax.resources import peak_rss_bytes
    from coda_jax.simulate import simulate

    data = tiny_data
    res = simulate(tiny_cfg, data, show_progress=False, cloud=tiny_cloud_output)
    table_bytes = sum(getattr(data.table, f).nbytes for f in ("user", "item", "label", "time"))
    assert res.memory["peak_rss_gb"] * (1 << 30) >= table_bytes
    assert res.memory["peak_rss_gb"] * (1 << 30) <= peak_rss_bytes() + (1 << 20)
    if jax.default_backend() == "cpu":
        assert res.memory["device_peak_gb"] is None
    assert "peak host RSS" in res.table()
    assert res.timings["results"] > 0
    # per_user.csv's rows column: each evaluated user's test rows, from the run itself
    from sims.report_data import per_user_rows

    test_counts = {str(data.table.user_ids[u]): int((data.heldout & (data.table.user == u)).sum())
                   for u in data.users}
    got = res.data["per_user_test_rows"]
    assert got and all(got[uid] == test_counts[uid] for uid in got)
    assert set(res.methods["coda"]["per_user"]) <= set(got)
    csv_rows = per_user_rows("run", res.to_json())
    assert csv_rows and all(r[4] == got[r[1]] for r in csv_rows if r[2] == "coda")
