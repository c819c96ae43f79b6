"""The registries: methods, models, classifiers and matchings registered from research code, checked when
registered (each error names the register function and the entry), resolved to values once when a run's
settings are built, so registering a name again runs the new value in the same process."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

from coda_jax.cloud.matching import MatchInputs
from coda_jax.cloud.matchings import REGISTRY as MATCHINGS, check_matching, register_matching
from coda_jax.cloud.output import CloudOutput
from coda_jax.config import ConfigError, from_dict, to_dict
from coda_jax.device.methods import BUILT_IN, check_augment, get_method, register_method
from coda_jax.device.settings import StageSettings
from coda_jax.models.registry import (CLASSIFIERS, MODELS, check_classifier, check_model, register_classifier,
                                      register_model)
from coda_jax.registry import RegistryError
from coda_jax.simulate import simulate


def test_every_built_in_passes_the_check_its_register_function_makes():
    for m in BUILT_IN:
        if m.augment is not None:
            check_augment(m.name, m.augment)
    for name, factory in MODELS.entries.items():
        check_model(name, factory)
    for name, factory in CLASSIFIERS.entries.items():
        check_classifier(name, factory)
    for name, entry in MATCHINGS.entries.items():
        if entry.match is not None:
            check_matching(name, entry.match)


def test_a_method_registered_again_runs_the_new_function_in_the_same_process(tiny_cloud):
    """The compiled stage is keyed by the method's entry (function identity), not its name: the same name,
    re-registered with replace=True, gives the new function's results (every candidate, then none)."""
    cfg, data, model, params, vectors, rows = tiny_cloud
    cloud = CloudOutput(model, params, vectors, rows, retrieval={})

    def every_candidate(x):
        return x.candidates, x.candidates.mask * x.finetune.aug_weight

    def no_candidate(x):
        return x.candidates, jnp.zeros(x.candidates.mask.shape, jnp.float32)

    register_method("test:swapped", every_candidate, replace=True)
    first = simulate(dataclasses.replace(cfg, methods=("local", "local+coarse", "test:swapped")), data=data,
                     show_progress=False, cloud=cloud)
    register_method("test:swapped", no_candidate, replace=True)
    assert StageSettings.from_config(dataclasses.replace(cfg, methods=("test:swapped",))).methods[0].augment \
        is no_candidate
    second = simulate(dataclasses.replace(cfg, methods=("local", "local+coarse", "test:swapped")), data=data,
                      show_progress=False, cloud=cloud)
    per_user = {k: [r.methods[m]["per_user"] for m in ("local", "local+coarse", "test:swapped")]
                for k, r in (("first", first), ("second", second))}
    assert per_user["first"][0] == per_user["second"][0] and per_user["first"][1] == per_user["second"][1]
    assert per_user["first"][2] == per_user["first"][1]           # first: the coarse candidates
    assert per_user["second"][2] == per_user["second"][0]         # then: local rows only
    assert first.augmentation["test:swapped"] == pytest.approx(rows.counts("candidates").mean())
    assert second.augmentation["test:swapped"] == 0.0


class TinyMLP(nn.Module):
    """A model of one's own: user and item embeddings through a small MLP (the documented interface)."""

    num_users: int
    num_items: int
    num_genres: int
    dim: int = 4

    @nn.compact
    def __call__(self, f):
        u = nn.Embed(self.num_users, self.dim, name="user_embed")(f["user"])
        i = nn.Embed(self.num_items + 1, self.dim, name="item_embed")(f["item"])
        rep = nn.tanh(nn.Dense(8, name="dense")(jnp.concatenate([u, i], axis=-1)))
        return nn.Dense(1, name="out")(rep)[..., 0], rep


class TanhClassifier(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(self.width)(x)))[..., 0]


def _next_users(x: MatchInputs):
    """Each simulated user's next two users by index (a matching whose answer is known)."""
    n = len(x.pool[0]) - 1
    users = (np.asarray(x.sim_users)[:, None] + np.arange(1, x.count + 1)[None, :]) % n
    return users.astype(np.int64), np.zeros(users.shape, np.float32)


@pytest.mark.slow
def test_a_run_of_a_registered_model_classifier_and_matching(tiny_cfg):
    """A model, a classifier and a matching of one's own, named by a config, run end to end: the cloud stage
    builds the registered model and matches by the registered function (its known answer), the device stage
    trains the registered classifier, results.json names them."""
    register_model("test:tiny-mlp", lambda cfg, u, i, g: TinyMLP(u, i, g), replace=True)
    register_classifier("test:tanh", lambda cfg: TanhClassifier(width=cfg.hidden), replace=True)
    register_matching("test:next-users", _next_users, description="the next users by index", replace=True)
    d = to_dict(tiny_cfg)
    d.update(methods=["global", "local", "coda"])
    d["model"]["name"], d["classifier"]["kind"], d["retrieval"]["matching"] = "test:tiny-mlp", "test:tanh", \
        "test:next-users"
    d["retrieval"]["matched_users"] = 2
    cfg = from_dict(d)
    from coda_jax.cloud.stage import cloud_stage
    from coda_jax.data.dataset import make_dataset

    data = make_dataset(cfg)
    cloud = cloud_stage(cfg, data, show_progress=False)
    assert isinstance(cloud.model, TinyMLP)
    np.testing.assert_array_equal(cloud.matched_users, (data.users[:, None] + [1, 2]) % data.table.num_users)
    settings = StageSettings.from_config(cfg)
    assert settings.classifier_model == TanhClassifier(width=cfg.classifier.hidden)
    res = simulate(cfg, data=data, show_progress=False, cloud=cloud)
    assert res.config["model"]["name"] == "test:tiny-mlp" and res.to_json()["config"]["classifier"]["kind"] == \
        "test:tanh"
    assert res.methods["coda"]["users"] > 0 and 0.0 < res.methods["coda"]["auc"] < 1.0
    # classifier FLOPs come from the registered module's matrices: 2 per weight of [D, 32] and [32, 1]
    fwd = 2 * (cloud.vectors.shape[1] * cfg.classifier.hidden + cfg.classifier.hidden)
    n_rows = cloud.rows.counts("local") + cloud.rows.counts("candidates")      # local rows + negatives
    assert res.overhead["flops_classifier"] == pytest.approx(cfg.classifier.steps * 3.0 * fwd * n_rows.mean())


@pytest.mark.parametrize("call, message", [
    (lambda: register_method("test:bad", 3), r"register_method\('test:bad'\): augment must be callable"),
    (lambda: register_method("test:bad", lambda a, b: a),
     r"register_method\('test:bad'\): augment must take 1 positional argument"),
    (lambda: register_method("test:bad", lambda x: x.candidates),
     r"register_method\('test:bad'\): augment must return \(rows, weights\)"),
    (lambda: register_method("test:bad", lambda x: (x.local, x.local.mask)),
     r"register_method\('test:bad'\): augment's rows must have the candidates' width"),
    (lambda: register_method("test:bad", lambda x: (x.candidates, jnp.ones(3))),
     r"register_method\('test:bad'\): augment's weights must be \[Nc\]"),
    (lambda: register_method("test:bad", lambda x: (x.candidates, x.nothing)),
     r"register_method\('test:bad'\): augment fails on a tiny input: AttributeError"),
    (lambda: register_method("test:bad", None, start=lambda m: m),
     r"register_method\('test:bad'\): start must take 6 positional argument"),
    (lambda: register_method("coda", None), r"register_method\('coda'\): registered already"),
    (lambda: register_method("", None), r"register_method: the name must be a non-empty string"),
    (lambda: register_model("test:bad", "DIN"), r"register_model\('test:bad'\): the model factory must be callable"),
    (lambda: register_model("test:bad", lambda cfg: None),
     r"register_model\('test:bad'\): the model factory must take 4"),
    (lambda: register_model("test:bad", lambda cfg, u, i, g: 7),
     r"register_model\('test:bad'\): the model factory must return a flax module"),
    (lambda: register_model("test:bad", lambda cfg, u, i, g: TanhClassifier(3)),
     r"register_model\('test:bad'\): the model must have a 'num_users' field"),
    (lambda: register_classifier("test:bad", lambda cfg: TinyMLP(3, 3, 3)),
     r"register_classifier\('test:bad'\): the classifier fails on a tiny input"),
    (lambda: register_classifier("test:bad", lambda cfg: nn.Dense(2)),
     r"register_classifier\('test:bad'\): the classifier must map vectors \[N, D\] to float logits \[N\]"),
    (lambda: register_matching("test:bad", lambda x: (x.sim_users, x.sim_users)),
     r"register_matching\('test:bad'\): match must return users and scores of shape \[S, count\]"),
    (lambda: register_matching("test:bad", lambda x: (np.full((3, 2), 99), np.zeros((3, 2)))),
     r"register_matching\('test:bad'\): match's users must be integer global user indices"),
])
def test_registration_checks_what_it_is_given_and_names_itself(call, message):
    with pytest.raises(RegistryError, match=message):
        call()
    assert "test:bad" not in MODELS.entries and "test:bad" not in CLASSIFIERS.entries


def test_a_wrong_model_output_is_refused_at_registration():
    class NoRepresentation(nn.Module):
        num_users: int
        num_items: int

        @nn.compact
        def __call__(self, f):
            return nn.Embed(self.num_items + 1, 1, name="item_bias")(f["item"])[..., 0]

    with pytest.raises(RegistryError, match=r"register_model\('test:bad'\): the model must return \(logit, "):
        register_model("test:bad", lambda cfg, u, i, g: NoRepresentation(u, i))


@pytest.mark.parametrize("key, value", [("model.name", "nope"), ("classifier.kind", "nope"),
                                        ("retrieval.matching", "nope"), ("methods", ["global", "nope"])])
def test_a_config_naming_something_unregistered_fails_naming_the_key_and_the_known_names(key, value):
    section, _, field = key.partition(".")
    d = {section: {field: value}} if field else {section: value}
    with pytest.raises(ConfigError, match=rf"{key}: ") as err:
        from_dict(d)
    assert "'nope'" in str(err.value) and ("known" in str(err.value) or "one of" in str(err.value))
    with pytest.raises(ConfigError, match="methods: unknown method 'nope'"):
        get_method("nope")
