"""The scaling benchmark's workload: a synthetic population packed directly as device chunks.

The benchmark measures the device stage, so its users skip the data pipeline (generator, split, cloud
stage, matching, packing): every chunk of users is drawn straight into a :class:`DeviceChunk` of numpy
arrays, reproducibly from ``(seed, chunk index)``, so a population of any size costs one chunk of host
memory at a time and every contender sees the same users.

Each user has a local vocabulary of ``vocab - 1`` items (drawn from ``num_items``), 32-64 local rows
(``local_width`` padded), ``candidates`` coarse candidates and as many random pool rows, and 8-32 test rows.
A row's label follows a hidden item score plus a user offset (so the cloud model's copy is informative and
per-user AUCs are defined); its sample vector is the item's hidden vector plus noise (so the sample
classifier has something to learn). The model is LR (:class:`coda_jax.models.lr.LR`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax.config import ClassifierConfig, Config, EngineConfig, FinetuneConfig, ModelConfig
from coda_jax.device.chunk import DeviceChunk, Rows
from coda_jax.models import make_model

METHODS = ("local", "local+random", "coda")
"""The benchmark's methods: three fine-tuned lanes per user."""


@dataclasses.dataclass(frozen=True)
class Workload:
    """The per-user workload of the scaling benchmark (light, so 128k users fit in minutes on a CPU)."""

    num_items: int = 27_000         # MovieLens-20M-shaped item catalogue
    num_genres: int = 20
    vocab: int = 128                # local item vocabulary per device (slot 0 = padding)
    local_min: int = 32
    local_width: int = 64           # local rows: 32-64 real, padded to 64
    candidates: int = 64            # coarse candidates (and random rows) per user
    test_min: int = 8
    test_width: int = 32
    genres: int = 2                 # genre slots per row
    history: int = 10               # liked / disliked history slots per row
    dim: int = 16                   # sample-vector width (what the sample classifier sees)
    classifier_steps: int = 10
    finetune_steps: int = 10
    batch_size: int = 32

    def config(self, chunk_users: int = 256, lockstep_users: int = 0) -> Config:
        """The run config whose device stage this workload exercises: LR, the three :data:`METHODS`, the
        whole model copy fine-tuned with Adam, the classifier on sample vectors against the candidates."""
        cfg = Config()
        return dataclasses.replace(
            cfg, methods=METHODS, model=ModelConfig(name="lr"),
            classifier=dataclasses.replace(ClassifierConfig(), steps=self.classifier_steps, keep_fraction=0.5),
            finetune=dataclasses.replace(FinetuneConfig(), steps=self.finetune_steps, batch_size=self.batch_size,
                                         learning_rate=0.05, trainable=("dense", "user", "item", "genre")),
            engine=dataclasses.replace(EngineConfig(), chunk_users=chunk_users, lockstep_users=lockstep_users))


QUICK = Workload(num_items=500, vocab=32, local_min=8, local_width=16, candidates=16, test_min=6, test_width=16,
                 history=4, dim=8, classifier_steps=3, finetune_steps=3, batch_size=8)
"""A tiny workload for tests (``--quick``)."""


def _world(w: Workload, seed: int) -> dict:
    """The hidden world every chunk draws from: item scores [I + 1], item genres [I + 1, G], item vectors
    [I + 1, D] (item 0 = padding)."""
    rng = np.random.default_rng([seed, 0])
    n = w.num_items + 1
    genres = rng.integers(1, w.num_genres + 1, size=(n, w.genres))
    genres[:, 1:] *= rng.random((n, w.genres - 1)) < 0.5              # a second genre half the time
    return {"score": rng.normal(size=n).astype(np.float32), "genres": genres.astype(np.int32),
            "vector": rng.normal(size=(n, w.dim)).astype(np.float32) / np.sqrt(w.dim)}


def global_model(w: Workload, num_users: int, seed: int = 0):
    """The cloud model and its parameters: ``(model, params)``. Item biases are the hidden item scores
    plus noise (an informative but imperfect global model); the other tables small random values."""
    model = make_model(ModelConfig(name="lr"), num_users, w.num_items, w.num_genres)
    dummy = {"user": jnp.zeros(1, jnp.int32), "item": jnp.zeros(1, jnp.int32),
             "genres": jnp.zeros((1, w.genres), jnp.int32), "hist_pos": jnp.zeros((1, w.history), jnp.int32),
             "hist_neg": jnp.zeros((1, w.history), jnp.int32)}
    params = model.init(jax.random.PRNGKey(seed), dummy)["params"]
    rng = np.random.default_rng([seed, 1])
    world = _world(w, seed)
    out = {}
    for name, table in params.items():
        if name == "item_bias":
            value = (world["score"][:, None] + 0.8 * rng.normal(size=table["embedding"].shape)).astype(np.float32)
            out[name] = {"embedding": value}
        elif isinstance(table, dict):
            out[name] = {k: (0.1 * rng.normal(size=v.shape)).astype(np.float32) for k, v in table.items()}
        else:
            out[name] = np.float32(0.0)
    return model, jax.tree_util.tree_map(jnp.asarray, out)


def _rows(rng, w: Workload, world: dict, vocab: np.ndarray, user_bias: np.ndarray, width: int,
          least: int) -> Rows:
    """``width`` padded rows per user (``least``..``width`` real), features over the local vocabulary."""
    u = vocab.shape[0]
    count = rng.integers(least, width + 1, size=u)
    mask = np.arange(width)[None, :] < count[:, None]
    local_item = rng.integers(1, w.vocab, size=(u, width))
    item = np.take_along_axis(vocab, local_item, axis=1)                               # global ids [U, N]
    hist = rng.integers(1, w.vocab, size=(u, width, 2, w.history))
    hist *= rng.random(hist.shape) < 0.8                                               # some empty slots
    logit = world["score"][item] + user_bias[:, None] + 0.7 * rng.normal(size=(u, width))
    label = (logit > 0).astype(np.float32)
    vector = world["vector"][item] + 0.3 * rng.normal(size=(u, width, w.dim)).astype(np.float32)
    m = mask.astype(np.int32)
    return Rows(features={"user": m, "item": local_item * m, "genres": world["genres"][item] * m[..., None],
                          "hist_pos": hist[:, :, 0] * m[..., None], "hist_neg": hist[:, :, 1] * m[..., None]},
                label=label * mask, mask=mask, vector=(vector * mask[..., None]).astype(np.float32),
                row=np.where(mask, 0, -1).astype(np.int32), own=np.zeros(mask.shape, bool),
                fresh=np.zeros(mask.shape, bool))


def synthetic_chunk(w: Workload, chunk_index: int, chunk_users: int, seed: int = 0,
                    world: dict | None = None) -> DeviceChunk:
    """Users ``chunk_index * chunk_users ..`` of the synthetic population as one packed chunk.

    Returns a :class:`DeviceChunk` of numpy arrays with leading user axis [U = chunk_users]: local [U, Nl],
    candidates and random [U, Nc], test [U, Nt], matched [U, 0] (no mpda), vocab [U, V], user_vocab [U, 2]
    (padding slot, the device's own user; ``row_users: own``). The same ``(seed, chunk_index)`` gives the same
    users.
    """
    world = _world(w, seed) if world is None else world
    rng = np.random.default_rng([seed, 2, chunk_index])
    u = chunk_users
    first = chunk_index * chunk_users
    vocab = np.concatenate([np.zeros((u, 1), np.int64), rng.integers(1, w.num_items + 1, size=(u, w.vocab - 1))],
                           axis=1)
    user_bias = 0.5 * rng.normal(size=u)
    local = _rows(rng, w, world, vocab, user_bias, w.local_width, w.local_min)
    candidates = _rows(rng, w, world, vocab, user_bias, w.candidates, w.candidates // 2)
    random = _rows(rng, w, world, vocab, user_bias, w.candidates, w.candidates)
    test = _rows(rng, w, world, vocab, user_bias, w.test_width, w.test_min)
    matched = jax.tree_util.tree_map(lambda x: x[:, :0], test)
    index = np.arange(first, first + u, dtype=np.int32)
    return DeviceChunk(user_index=index, user_mask=np.ones(u, bool), vocab=vocab.astype(np.int32),
                       user_vocab=np.stack([np.zeros(u, np.int32), index], axis=1),
                       local=local, candidates=candidates, random=random, test=test, matched=matched)


def chunk_bytes(chunk: DeviceChunk) -> int:
    """Host bytes of one packed chunk."""
    return int(sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(chunk)))
