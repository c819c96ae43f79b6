"""The engine benchmark runs end to end on a tiny problem and reports consistent figures."""

from __future__ import annotations

import json

import pytest


def test_bench_engine_reports_both_times_their_ratio_and_agreement(tmp_path, capsys):
    from sims.cli import main    # through `coda-sim bench engine`, which hands its options to the benchmark

    out = tmp_path / "bench.json"
    assert main(["bench", "engine", "--users", "12", "--steps", "2", "--chunk-users", "8", "--lockstep-users", "4",
                 "--loop-users", "5", "--repeats", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["users"] == 12 and figures["chunk_users"] == 8 and figures["loop_users_timed"] == 5
    assert figures["lanes"]["users_in_lockstep"] == 4 and figures["lanes"]["methods"] == 1
    assert figures["engine_seconds"] > 0 and figures["loop_seconds"] > 0
    assert figures["engine_compiles"] >= 1 and figures["engine_compile_seconds"] > 0
    assert figures["speedup"] == pytest.approx(figures["loop_seconds"] / figures["engine_seconds"])
    lo, hi = figures["engine_seconds_spread"]
    assert lo <= figures["engine_seconds"] <= hi
    # same draws on both sides: the loop's per-user AUCs are the engine's
    assert figures["auc_users_compared"] >= 1 and figures["auc_max_abs_difference"] < 1e-4
    assert figures["step_hlo"]["ops"] > 0 and figures["step_hlo"]["dots"] >= 1
    printed = capsys.readouterr().out
    assert "device:" in printed and "speedup:" in printed and "HLO ops" in printed
