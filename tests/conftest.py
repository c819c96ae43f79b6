"""Shared tiny fixtures: a small synthetic run's dataset, cloud model and packed chunks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from coda_jax.config import Config


@pytest.fixture(scope="session", autouse=True)
def _session_compile_cache(tmp_path_factory):
    """The CLI turns on JAX's persistent compilation cache (``$CODA_JAX_CACHE``) for the rest of the process when
    a test calls it in-process. Point it at a folder of this session, so a compile count a test asserts never
    depends on programs cached by earlier sessions in the user's ``~/.cache``."""
    import os

    old = os.environ.get("CODA_JAX_CACHE")
    os.environ["CODA_JAX_CACHE"] = str(tmp_path_factory.mktemp("xla-cache"))
    yield
    if old is None:
        os.environ.pop("CODA_JAX_CACHE", None)
    else:
        os.environ["CODA_JAX_CACHE"] = old


def tiny_config(**overrides) -> Config:
    """A config small enough for unit tests on a 2-core CPU."""
    cfg = Config()
    # The groups world, user-fraction split, DIN, sample matching and the device settings the default had before
    # the planted world became the default (the unit tests were written against them).
    cfg = dataclasses.replace(
        cfg,
        synthetic=dataclasses.replace(cfg.synthetic, world="groups", num_users=40, num_items=80, min_rows_per_user=10,
                                      max_rows_per_user=24, num_user_groups=3, num_item_clusters=6, num_genres=12,
                                      taste_scale=2.0, personal_scale=1.0, base_logit=-1.0),
        data=dataclasses.replace(cfg.data, history_len=4, split="user_fraction"),
        model=dataclasses.replace(cfg.model, name="din", embed_dim=8, hidden=(16, 8), attention_hidden=8),
        cloud=dataclasses.replace(cfg.cloud, epochs=2, batch_size=64),
        retrieval=dataclasses.replace(cfg.retrieval, neighbors=5, max_candidates=20, recall_queries=50,
                                      matching="sample"),
        classifier=dataclasses.replace(cfg.classifier, steps=20),
        finetune=dataclasses.replace(cfg.finetune, steps=8, batch_size=8, learning_rate=1e-3,
                                     trainable=("dense", "user"), row_users="original"),
        engine=dataclasses.replace(cfg.engine, chunk_users=8, min_bucket=8),
        eval=dataclasses.replace(cfg.eval, bootstrap=200),
    )
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


@pytest.fixture(scope="session")
def tiny_cfg() -> Config:
    return tiny_config()


@pytest.fixture(scope="session")
def tiny_data(tiny_cfg):
    """The tiny synthetic run's :class:`~coda_jax.data.dataset.Dataset`, built once per session."""
    from coda_jax.data.dataset import make_dataset

    return make_dataset(tiny_cfg)


@pytest.fixture(scope="session")
def tiny_cloud_output(tiny_cfg, tiny_data):
    """The tiny run's :class:`~coda_jax.cloud.output.CloudOutput`, computed once per session (reuse it rather than
    running the cloud stage again: ``simulate(cfg, data=tiny_data, cloud=tiny_cloud_output)``)."""
    from coda_jax.cloud.stage import cloud_stage

    return cloud_stage(tiny_cfg, tiny_data, show_progress=False)


@pytest.fixture(scope="session")
def tiny_cloud(tiny_cfg, tiny_data, tiny_cloud_output):
    """``(cfg, data, model, params, vectors, rows)`` of the tiny synthetic run, computed once per session."""
    c = tiny_cloud_output
    return tiny_cfg, tiny_data, c.model, c.params, c.vectors, c.rows


@pytest.fixture(scope="session")
def make_tiny_chunk(tiny_cloud):
    """Pack the given simulated users (``-1`` = padding slot) into a chunk of the tiny run."""
    from coda_jax.device.chunk import ChunkSpec, make_chunk

    cfg, data, model, params, vectors, rows = tiny_cloud

    def make(owners):
        return make_chunk(data.table, vectors, rows, np.asarray(owners), data.users, ChunkSpec.from_config(cfg))

    return make
