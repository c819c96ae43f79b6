"""The engine benchmark runs end to end on a tiny problem and reports consistent figures."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_bench_engine_times_every_side_in_rounds_with_ratios_and_parity(tmp_path, capsys):
    from sims.cli import main    # through `coda-sim bench engine`, which hands its options to the benchmark

    out = tmp_path / "bench.json"
    assert main(["bench", "engine", "--users", "12", "--steps", "2", "--chunk-users", "8", "--lockstep-users", "4",
                 "--repeats", "2", "--contenders", "loop", "--parity-users", "3", "--out", str(out)]) == 0
    fig = json.loads(out.read_text())
    assert fig["users"] == 12 and fig["chunk_users"] == 8 and fig["contender_users"] == 12   # every user, measured
    assert fig["lanes"]["users_in_lockstep"] == 4 and fig["lanes"]["methods"] == 1
    engine, loop = fig["sides"]["engine"], fig["sides"]["loop"]
    assert len(engine["seconds"]) == len(loop["seconds"]) == 2                    # one time per round per side
    assert engine["programs"] >= 1 and engine["compile_seconds"] > 0 and loop["compile_seconds"] >= 0
    assert engine["devices"] >= 1 and loop["devices"] == 1
    # the ratio is the median of per-round ratios (two rounds: their mean)
    per_round = [t / e for t, e in zip(loop["seconds"], engine["seconds"])]
    assert loop["speedup_execute"] == pytest.approx(float(np.median(per_round)))
    with_compile = [(t + loop["compile_seconds"]) / (e + engine["compile_seconds"])
                    for t, e in zip(loop["seconds"], engine["seconds"])]
    assert loop["speedup_with_compile"] == pytest.approx(float(np.median(with_compile)))
    # same draws on both sides: the loop's per-user AUCs and test logits are the engine's
    assert loop["auc_users_compared"] >= 1 and loop["auc_max_abs_difference"] < 1e-4
    assert loop["logit_max_abs_difference"] < 1e-3
    assert fig["step_hlo"]["ops"] > 0 and fig["step_hlo"]["dots"] >= 1
    printed = capsys.readouterr().out
    assert "device:" in printed and "engine / loop (execute)" in printed and "HLO ops" in printed
