"""Several processes through jax.distributed: two processes on 127.0.0.1 (one CPU device each) give the same
per-user AUCs as one process, and process 0 alone writes results.json."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "synthetic.num_users=48", "--set", "synthetic.num_items=200", "--set", "cloud.epochs=1",
         "--set", "classifier.steps=5", "--set", "finetune.steps=5", "--set", "eval.bootstrap=50",
         "--set", "engine.chunk_users=16", "--quiet", "--no-compile-cache"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(out: Path, extra: list[str]) -> subprocess.Popen:
    env = dict(os.environ, CODA_JAX_HOST_DEVICES="1", PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen([sys.executable, "-m", "sims.cli", "run", "--out", str(out), *SMALL, *extra], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _per_user(path: Path) -> dict:
    methods = json.loads((path / "results.json").read_text())["methods"]
    return {m: v["per_user"] for m, v in methods.items()}


@pytest.mark.slow
def test_two_processes_give_the_per_user_aucs_of_one(tmp_path):
    port = _free_port()
    procs = [_run(tmp_path / "two", ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                     "--process-id", str(i)]) for i in range(2)]
    one = _run(tmp_path / "one", [])
    for p in procs + [one]:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out[-3000:]
    assert (tmp_path / "two" / "results.json").is_file()
    two, single = _per_user(tmp_path / "two"), _per_user(tmp_path / "one")
    assert set(two) == set(single)
    for m in single:
        assert set(two[m]) == set(single[m]) and len(single[m]) > 20
        a = np.array([np.nan if single[m][u] is None else single[m][u] for u in single[m]], float)
        b = np.array([np.nan if two[m][u] is None else two[m][u] for u in single[m]], float)
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) <= 1e-5, m


def test_coordinator_flags_go_together(capsys):
    from sims.cli import main

    assert main(["run", "--coordinator", "127.0.0.1:1", "--quiet"]) == 2
    assert "go together" in capsys.readouterr().err
