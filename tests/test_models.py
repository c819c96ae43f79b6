"""Tests for the CTR models (:mod:`coda_jax.models`): every model learns a known signal, its device copy over a
local vocabulary computes the same logits, it vmaps over per-user parameters, and its parameters follow the
naming convention the device copy relies on."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree
from sklearn.metrics import roc_auc_score

from coda_jax.config import MODEL_NAMES, ConfigError, ModelConfig, from_dict
from coda_jax.device.submodel import local_model, local_vocab, localize_params
from coda_jax.models import make_model
from coda_jax.models.features import param_group

SMALL = ModelConfig(embed_dim=8, hidden=(16, 8), attention_hidden=8)


def small_model(name: str, num_users: int, num_items: int, num_genres: int, **kw):
    return make_model(dataclasses.replace(SMALL, name=name, **kw), num_users, num_items, num_genres)


def random_features(rng: np.random.Generator, n: int, num_items: int, num_genres: int, user: int | np.ndarray,
                    genre_slots: int = 3, hist_len: int = 4) -> dict:
    """``n`` rows of random ids with random amounts of 0-padding (some histories empty)."""
    def padded(high, width):
        ids = rng.integers(1, high + 1, (n, width))
        keep = np.arange(width)[None, :] < rng.integers(0, width + 1, (n, 1))
        return np.where(keep, ids, 0).astype(np.int32)

    genres = padded(num_genres, genre_slots)
    genres[:, 0] = rng.integers(1, num_genres + 1, n)          # every item has at least one genre
    return {"user": np.broadcast_to(np.asarray(user, np.int32), (n,)).copy(),
            "item": rng.integers(1, num_items + 1, n).astype(np.int32),
            "genres": genres, "hist_pos": padded(num_items, hist_len), "hist_neg": padded(num_items, hist_len)}


def random_params(model, f: dict, seed: int, table_std: float = 0.3, bias_std: float = 0.3) -> dict:
    """Random numpy parameters of the model's shapes: tables (``item_*``, ``user_*``, ``genre_*``) ~
    N(0, table_std^2), dense kernels ~ N(0, 1 / fan_in) (LeCun normal), other dense leaves ~ N(0, bias_std^2).

    Built in numpy from ``eval_shape``, so nothing is compiled: on a CPU, compiling flax's ``init`` (its many
    random initialisers) costs more than training these models, and :func:`localize_params` on numpy
    parameters is plain indexing.
    """
    rng = np.random.default_rng(seed)

    def draw(path, x):
        if param_group(path[0].key) != "dense":
            std = table_std
        else:
            std = 1.0 / np.sqrt(x.shape[0]) if len(x.shape) == 2 else bias_std
        return (std * rng.standard_normal(x.shape)).astype(x.dtype)

    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), f)["params"]
    return jax.tree_util.tree_map_with_path(draw, shapes)


def remap_rows(f: dict, extra_ids: np.ndarray) -> tuple[np.ndarray, dict, int]:
    """Local vocabulary (0-padded) of the rows' item ids plus ``extra_ids``, the rows with item ids remapped to
    it and user 0, and the number of distinct ids (0 included)."""
    n, length = f["hist_pos"].shape
    ids = np.concatenate([f["item"], f["hist_pos"].ravel(), f["hist_neg"].ravel(), extra_ids])[None]
    vocab, remapped, size = local_vocab(ids)
    r = remapped[0]
    local = {"user": np.zeros(n, np.int32), "item": r[:n], "genres": f["genres"],
             "hist_pos": r[n:n + n * length].reshape(n, length),
             "hist_neg": r[n + n * length:n + 2 * n * length].reshape(n, length)}
    return vocab[0], local, int(size[0])


def test_model_names_registered():
    assert set(MODEL_NAMES) == {"din", "lr", "deepfm", "wide_deep", "pnn"}
    for name in MODEL_NAMES:
        cfg = from_dict({"model": {"name": name}})
        model = make_model(cfg.model, 5, 9, 3)
        assert (model.num_users, model.num_items, model.num_genres) == (5, 9, 3)
    with pytest.raises(ConfigError, match="model.name"):
        from_dict({"model": {"name": "fm"}})


# ---------------------------------------------------------------- learning a known signal


def signal_dataset(seed: int = 0, num_users: int = 60, num_items: int = 100, rows_per_user: int = 40,
                   hist_len: int = 5) -> tuple[dict, np.ndarray, np.ndarray]:
    """Rows whose label depends on user group x item cluster, item popularity and a user bias.

    Genres carry the item cluster (first genre = cluster, second = random); the liked / disliked histories
    are drawn from clusters the user's group likes / dislikes. Returns ``(features, labels, true_logits)``.
    """
    rng = np.random.default_rng(seed)
    groups, clusters, num_genres = 3, 4, 6
    group = rng.integers(0, groups, num_users)
    cluster = rng.integers(0, clusters, num_items + 1)
    taste = rng.normal(0.0, 1.5, (groups, clusters))
    popularity = rng.normal(0.0, 1.0, num_items + 1)
    user_bias = rng.normal(0.0, 0.5, num_users)
    item_genres = np.stack([cluster + 1, rng.integers(0, num_genres + 1, num_items + 1)], axis=1).astype(np.int32)

    n = num_users * rows_per_user
    user = np.repeat(np.arange(num_users), rows_per_user).astype(np.int32)
    item = rng.integers(1, num_items + 1, n).astype(np.int32)
    logit = taste[group[user], cluster[item]] + popularity[item] + user_bias[user]
    label = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)

    all_items = np.arange(1, num_items + 1)
    hist = {"hist_pos": np.zeros((n, hist_len), np.int32), "hist_neg": np.zeros((n, hist_len), np.int32)}
    for u in range(num_users):
        likes = taste[group[u], cluster[all_items]] > 0
        rows = slice(u * rows_per_user, (u + 1) * rows_per_user)
        for key, pool in (("hist_pos", all_items[likes]), ("hist_neg", all_items[~likes])):
            if pool.size == 0:
                continue
            ids = rng.choice(pool, (rows_per_user, hist_len))
            keep = np.arange(hist_len)[None, :] < rng.integers(0, hist_len + 1, (rows_per_user, 1))
            hist[key][rows] = np.where(keep, ids, 0)
    features = {"user": user, "item": item, "genres": item_genres[item], **hist}
    return features, label, logit


TRAIN_STEPS, BATCH = 300, 128


@pytest.fixture(scope="module")
def signal_data():
    f, y, true_logit = signal_dataset(num_users=40, num_items=40, rows_per_user=80)
    perm = np.random.default_rng(1).permutation(y.shape[0])
    cut = int(0.8 * y.shape[0])
    train, test = perm[:cut], perm[cut:]
    sub = lambda rows: {k: v[rows] for k, v in f.items()}  # noqa: E731
    batches = np.random.default_rng(0).integers(0, cut, (TRAIN_STEPS, BATCH))
    return sub(train), y[train], sub(test), y[test], batches, roc_auc_score(y[test], true_logit[test])


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_learns_known_signal(name, signal_data):
    f_train, y_train, f_test, y_test, batches, bayes_auc = signal_data
    model = small_model(name, 40, 40, 6)
    flat, unravel = ravel_pytree(random_params(model, f_test, seed=0, table_std=0.05, bias_std=0.0))
    opt = optax.adam(1e-2)

    @jax.jit
    def train(flat, f_train, y_train, f_test, batches):
        """Test logits of the untrained model, and (logits, representation) after ``len(batches)`` Adam steps.

        One compiled program (the scanned training steps and both evaluations; Adam on the flattened
        parameter vector): compiling is what dominates on a CPU, and this compiles about three times faster
        than jitting init, step and predict apart."""
        untrained = model.apply({"params": unravel(flat)}, f_test)[0]

        def step(carry, rows):
            flat, state = carry
            batch = jax.tree_util.tree_map(lambda v: v[rows], f_train)

            def loss_fn(p):
                logit = model.apply({"params": unravel(p)}, batch)[0]
                return optax.sigmoid_binary_cross_entropy(logit, y_train[rows]).mean()

            updates, state = opt.update(jax.grad(loss_fn)(flat), state, flat)
            return (optax.apply_updates(flat, updates), state), None

        (flat, _), _ = jax.lax.scan(step, (flat, opt.init(flat)), batches)
        return untrained, model.apply({"params": unravel(flat)}, f_test)

    untrained, (logit, rep) = train(flat, f_train, y_train, f_test, batches)
    assert logit.shape == y_test.shape and rep.ndim == 2 and rep.shape[0] == y_test.shape[0] and rep.shape[1] >= 2
    assert jnp.issubdtype(rep.dtype, jnp.floating) and np.all(np.isfinite(rep))
    auc = roc_auc_score(y_test, np.asarray(logit))
    untrained_auc = roc_auc_score(y_test, np.asarray(untrained))
    assert auc > 0.72, (name, auc, bayes_auc)
    assert untrained_auc < auc - 0.1, (name, untrained_auc, auc)


# ---------------------------------------------------------------- device copy over a local vocabulary


@functools.lru_cache(maxsize=None)
def device_copies(name: str) -> dict:
    """A random global model, three users' rows, and each user's device copy (local vocabulary = the item ids
    of its rows plus a few random others; user feature 0) evaluated three ways: the global model on the
    original rows, the device copy one user at a time, and ``jax.vmap`` of the device copy over users.
    Shared by the two tests below (one compile each of global, per-user and vmapped apply)."""
    num_users, num_items, num_genres, rows = 7, 40, 5, 6
    rng = np.random.default_rng(0)
    model = small_model(name, num_users, num_items, num_genres)
    users = np.array([0, 3, 6])
    per_user = [random_features(rng, rows, num_items, num_genres, u) for u in users]
    params = random_params(model, per_user[0], seed=0)
    stack = lambda trees: jax.tree_util.tree_map(lambda *ts: np.stack(ts), *trees)  # noqa: E731

    original = {k: np.concatenate([f[k] for f in per_user]) for k in per_user[0]}
    global_logit, global_rep = jax.jit(model.apply)({"params": params}, original)

    vocabs, local_fs, sizes = zip(*(remap_rows(f, extra_ids=rng.integers(1, num_items + 1, 5)) for f in per_user))
    local = local_model(model, vocabs[0].shape[0])            # equal widths: same number of ids per user
    copies = [localize_params(params, v, u) for v, u in zip(vocabs, users)]
    apply_one = jax.jit(local.apply)
    loop = [apply_one({"params": c}, lf) for c, lf in zip(copies, local_fs)]
    vmapped = jax.jit(jax.vmap(lambda p, b: local.apply({"params": p}, b)))(stack(copies), stack(local_fs))
    return {"num_items": num_items, "sizes": sizes, "users": users,
            "global": (np.asarray(global_logit).reshape(len(users), rows),
                       np.asarray(global_rep).reshape(len(users), rows, -1)),
            "loop": (np.stack([np.asarray(l) for l, _ in loop]), np.stack([np.asarray(r) for _, r in loop])),
            "vmap": (np.asarray(vmapped[0]), np.asarray(vmapped[1]))}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_local_copy_matches_global(name):
    c = device_copies(name)
    assert max(c["sizes"]) < c["num_items"] + 1               # real sub-vocabularies
    (logit, rep), (want_logit, want_rep) = c["loop"], c["global"]
    np.testing.assert_allclose(logit, want_logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rep, want_rep, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_vmap_over_users_matches_loop(name):
    c = device_copies(name)
    (logit, rep), (want_logit, want_rep) = c["vmap"], c["loop"]
    assert logit.shape == want_logit.shape and rep.shape == want_rep.shape
    np.testing.assert_allclose(logit, want_logit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rep, want_rep, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- parameter naming convention


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_parameter_naming_convention(name):
    # Sizes chosen so no dense-layer dimension equals a table's leading dimension (embed 4, hidden 16/8).
    num_users, num_items, num_genres = 7, 11, 5
    rows = {"item": num_items + 1, "user": num_users, "genre": num_genres + 1}
    model = small_model(name, num_users, num_items, num_genres, embed_dim=4)
    f = random_features(np.random.default_rng(2), 4, num_items, num_genres, 2)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), f)["params"]     # shapes only

    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        top = path[0].key
        group = param_group(top)
        where = f"{name}: {jax.tree_util.keystr(path)} {leaf.shape}"
        if group != "dense":
            assert len(path) == 2 and len(leaf.shape) >= 1 and leaf.shape[0] == rows[group], where
        elif len(leaf.shape) >= 1:
            # a table the device copy would not localize (wrong name, or nested in a submodule)
            assert leaf.shape[0] not in rows.values(), where

    # The device copy's parameters have exactly the shapes its model definition expects.
    vocab = np.array([0, 2, 3, 7, 11, 0], np.int32)
    local = local_model(model, vocab.shape[0])
    local_f = dict(f, user=np.zeros(4, np.int32), item=np.array([1, 2, 3, 4], np.int32),
                   hist_pos=np.minimum(f["hist_pos"], 4), hist_neg=np.minimum(f["hist_neg"], 4))
    want = jax.eval_shape(local.init, jax.random.PRNGKey(0), local_f)["params"]
    got = jax.eval_shape(localize_params, params, jnp.asarray(vocab), jnp.asarray(2))
    assert got == want
