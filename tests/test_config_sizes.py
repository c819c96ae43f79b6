"""Sizes bounded in the config check and the memory estimate against the machine's (coda_jax.config_sizes)."""

from __future__ import annotations

import dataclasses

import pytest

from coda_jax.config import Config, ConfigError, check_memory, with_overrides
from coda_jax.config_sizes import SIZE_LIMITS, estimate_memory, machine_memory_bytes


@pytest.mark.parametrize("item,key", [
    ("finetune.steps=100000000", "finetune.steps"),
    ("finetune.steps=1000000000000", "finetune.steps"),
    ("finetune.steps=1000000000000000000000000000000", "finetune.steps"),
    ("engine.min_bucket=1073741824", "engine.min_bucket"),
    ("classifier.steps=100000000", "classifier.steps"),
    ("retrieval.max_candidates=10000000", "retrieval.max_candidates"),
    ("model.hidden=[64,100000000]", "model.hidden"),
    ("eval.repeats=100000", "eval.repeats"),
])
def test_a_size_above_its_bound_names_the_key_and_the_bound(item, key):
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), [item])
    assert f"--set: {key}: " in str(exc.value) and "must be <=" in str(exc.value)


def test_every_bounded_key_is_a_config_field_and_its_bound_is_accepted():
    for key, limit in SIZE_LIMITS.items():
        section, name = key.split(".")
        assert hasattr(getattr(Config(), section), name), key
    # at the bound itself nothing is refused by the bounds (memory is checked apart)
    with_overrides(Config(), ["finetune.steps=1000000", "engine.min_bucket=65536", "eval.repeats=1000"])


def test_steps_times_rows_per_step_stay_below_uint32():
    with pytest.raises(ConfigError, match="finetune.steps: .*2\\^32"):
        with_overrides(Config(), ["finetune.steps=1000000", "finetune.batch_size=5000"])


def test_memory_refusal_names_the_key_and_the_estimate():
    cfg = with_overrides(Config(), ["synthetic.num_users=100000000"])
    with pytest.raises(ConfigError) as exc:
        check_memory(cfg, available=8 << 30)
    msg = str(exc.value)
    assert msg.startswith("config: synthetic.num_users: 100,000,000 makes the run need about ")
    assert "GiB of memory" in msg and "more than this machine's 8.0 GiB" in msg and "sample table" in msg
    cfg = with_overrides(Config(), ["retrieval.max_candidates=100000", "engine.chunk_users=100000"])
    with pytest.raises(ConfigError, match="retrieval.max_candidates: .*padded chunk arrays.*lower "
                                          "retrieval.max_candidates or engine.chunk_users"):
        check_memory(cfg, available=8 << 30)
    with pytest.raises(ConfigError, match="engine.min_bucket: 65,536 makes"):
        check_memory(with_overrides(Config(), ["engine.min_bucket=65536"]), available=4 << 30)


def test_the_default_run_fits_and_step_arrays_do_not_grow_with_steps():
    assert machine_memory_bytes() is None or machine_memory_bytes() > 0
    check_memory(Config(), available=1 << 30)                   # the default needs well under 1 GiB
    few = estimate_memory(with_overrides(Config(), ["finetune.steps=128"]))
    many = estimate_memory(with_overrides(Config(), ["finetune.steps=1000000"]))
    assert few == many
    # the chunk estimate follows its widths: twice the candidates, more bytes
    wide = estimate_memory(dataclasses.replace(Config(), retrieval=dataclasses.replace(
        Config().retrieval, max_candidates=600)))
    assert wide["padded chunk arrays"][0] > few["padded chunk arrays"][0]


def test_the_engine_check_on_the_data_widths_names_chunk_users():
    from coda_jax.config_sizes import chunk_memory_error

    widths = {"local": 4096, "test": 64, "candidates": 304, "matched": 0}
    assert chunk_memory_error(Config(), 64, widths, genres=1, vector=64, available=8 << 30) is None
    msg = chunk_memory_error(Config(), 1 << 20, widths, genres=1, vector=64, available=8 << 30)
    assert msg.startswith("engine.chunk_users: 1,048,576 devices per chunk with padded rows (local 4,096, test 64, "
                          "candidates 304, matched 0) need about ")
    assert "more than this machine's 8.0 GiB; lower engine.chunk_users" in msg
