"""overhead.finetune_flops against a hand computation (no simulation)."""

from __future__ import annotations

import dataclasses

import numpy as np

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

