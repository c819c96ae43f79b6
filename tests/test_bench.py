"""The engine benchmark runs end to end on a tiny problem and reports consistent figures."""

from __future__ import annotations

import json

import pytest


def test_bench_engine_reports_both_times_and_their_ratio(tmp_path, capsys):
    from sims.cli import main    # through `coda-sim bench engine`, which hands its options to the benchmark

    out = tmp_path / "bench.json"
    assert main(["bench", "engine", "--users", "16", "--steps", "2", "--chunk-users", "8", "--lockstep-users", "4", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["users"] == 16 and figures["chunk_users"] == 8 and figures["loop_users_timed"] == 16
    assert figures["lockstep_users"] == 4
    assert figures["engine_seconds"] > 0 and figures["loop_seconds"] > 0
    assert figures["speedup"] == pytest.approx(figures["loop_seconds"] / figures["engine_seconds"])
    printed = capsys.readouterr().out
    assert "device:" in printed and "speedup:" in printed


def test_bench_engine_rejects_a_ragged_last_chunk():
    from sims.bench_engine import main

    with pytest.raises(SystemExit, match="multiple of the chunk size"):
        main(["--users", "12", "--steps", "1", "--chunk-users", "8"])
