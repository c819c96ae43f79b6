"""overhead.finetune_flops against a hand computation (no simulation)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coda_jax import overhead
from coda_jax.config import Config


def _cfg(**finetune) -> Config:
    cfg = Config()
    return dataclasses.replace(cfg, finetune=dataclasses.replace(cfg.finetune, **finetune))


def test_finetune_flops_are_three_forward_passes_per_minibatch_row():
    cfg = _cfg(steps=20, batch_size=8)
    n_local = np.array([1, 5, 40])
    # 20 steps x 8 rows x (1 forward + 2 backward) x 100 FLOPs, whatever the user's row count
    assert overhead.finetune_flops(cfg, n_local, 100.0).tolist() == [48_000.0] * 3


def test_finetune_flops_add_one_pass_over_the_heldout_rows_per_check():
    cfg = _cfg(steps=20, batch_size=8, select="holdout", holdout_fraction=0.3, check_every=5)
    n_local = np.array([1, 2, 5, 10, 40])
    # held out: max(1, round(0.3 n)) and never all of them (none with one row) -> 0, 1, 2, 3, 12;
    # checks: at the start, then every 5 of 20 steps -> 5
    held = np.array([0, 1, 2, 3, 12])
    expected = 48_000.0 + 5 * held * 100.0
    assert overhead.finetune_flops(cfg, n_local, 100.0) == pytest.approx(expected)
