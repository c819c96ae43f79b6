"""`coda-sim bench scaling`: the synthetic population, and the benchmark end to end on a tiny workload."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sims.scaling_data import QUICK, global_model, synthetic_chunk


def test_synthetic_chunk_is_reproducible_shaped_and_has_both_test_classes():
    a, b = synthetic_chunk(QUICK, 3, 8, seed=1), synthetic_chunk(QUICK, 3, 8, seed=1)
    assert np.array_equal(a.local.features["item"], b.local.features["item"])
    assert np.array_equal(a.user_index, np.arange(24, 32))
    assert a.local.mask.shape == (8, QUICK.local_width) and a.candidates.mask.shape == (8, QUICK.candidates)
    assert a.local.mask.sum(axis=1).min() >= QUICK.local_min and a.matched.mask.shape == (8, 0)
    assert a.local.features["item"].max() < QUICK.vocab and a.vocab.shape == (8, QUICK.vocab)
    assert not a.local.features["item"][~a.local.mask].any()          # padding rows hold id 0
    other = synthetic_chunk(QUICK, 4, 8, seed=1)
    assert not np.array_equal(a.local.features["item"], other.local.features["item"])
    labels = a.test.label[a.test.mask]
    assert 0 < labels.mean() < 1
    model, params = global_model(QUICK, 64)
    assert params["item_bias"]["embedding"].shape == (QUICK.num_items + 1, 1)


def test_bench_scaling_quick_writes_json_and_png_with_parity(tmp_path, capsys):
    from sims.cli import main    # through `coda-sim bench scaling`

    assert main(["bench", "scaling", "--quick", "--users", "32", "64", "--out", str(tmp_path)]) == 0
    fig = json.loads((tmp_path / "scaling.json").read_text())
    png = (tmp_path / "scaling.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert [p["users"] for p in fig["points"]] == [32, 64]
    for p in fig["points"]:
        assert p["seconds"] > 0 and p["peak_rss_bytes"] > 0
        assert p["per_user_seconds"] == pytest.approx(p["seconds"] / p["users"])
        assert p["user_steps_per_second"] == pytest.approx(p["users"] * fig["steps_per_user"] / p["seconds"])
    assert fig["steps_per_user"] == QUICK.classifier_steps + 3 * QUICK.finetune_steps
    assert fig["engine_compile_seconds"] > 0 and fig["engine_compiles"] >= 1
    assert fig["matmul"]["flops_per_second"] > 0
    engine = fig["engine_at_ratio_point"]["per_user_seconds"]
    assert set(fig["contenders"]) >= {"user_loop", "step_loop"}
    for name, c in fig["contenders"].items():
        # same users, same draws: every contender's test logits and AUCs are the engine's
        assert c["logit_max_abs_difference"] < 1e-4 and c["auc_max_abs_difference"] < 1e-4, name
        assert c["extrapolated"] and c["users_timed"] == fig["subset_users"]
        assert c["engine_speedup"] == pytest.approx(c["per_user_seconds"] / engine)
    f = fig["flops"]
    # the loop-free pieces are parts of the one-step program, and the steps add to it
    assert f["one_step_program"] >= f["classifier_step"] + f["finetune_step"] > 0
    assert f["per_user"] > f["one_step_program"]
    assert f["fraction_of_matmul"] == pytest.approx(f["achieved_flops_per_second"] / fig["matmul"]["flops_per_second"])
    r = fig["retrieval"]
    assert r["pool_rows"] == 5000 and r["k"] == 30 and 0.9 <= r["recall_at_k"] <= 1   # calibrated to 0.95
    assert r["speedup"] == pytest.approx(r["exact"]["seconds"] / r["scann"]["seconds"])
    printed = capsys.readouterr().out
    assert "bars:" in printed and "extrapolated" in printed and "FLOP/s" in printed
