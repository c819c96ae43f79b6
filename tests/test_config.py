"""Tests for :mod:`coda_jax.config`: loading, validation errors that name the file and key, overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from coda_jax import config as C
from coda_jax.config import Config, ConfigError, from_dict, load, to_dict, validate, with_overrides

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _load_error(tmp_path: Path, text: str) -> tuple[Path, str]:
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load(p)
    return p, str(exc.value)


# ----------------------------------------------------------------------------- shipped files


def test_default_yaml_is_embedded_default():
    cfg = load(REPO / "configs" / "default.yaml")
    assert cfg == Config()
    # Types are exactly those of the embedded default (tuples, floats), not just equal values.
    assert isinstance(cfg.model.hidden, tuple) and isinstance(cfg.finetune.trainable, tuple)
    assert isinstance(cfg.cloud.learning_rate, float)


def test_movielens_yaml_loads():
    cfg = load(REPO / "configs" / "movielens100k.yaml")
    raw = yaml.safe_load((REPO / "configs" / "movielens100k.yaml").read_text())
    assert cfg.data.source == "movielens100k"
    assert cfg.finetune.steps == raw["finetune"]["steps"]
    assert cfg.data.like_threshold == raw["data"]["like_threshold"]
    assert cfg.data.min_rows_per_user == raw["data"]["min_rows_per_user"]
    # keys not in the file keep their defaults
    assert cfg.eval == C.EvalConfig()
    assert cfg.synthetic == C.SyntheticConfig()


def test_shipped_configs_load_and_cover_every_model_and_source():
    paths = sorted((REPO / "configs").glob("*.yaml"))
    cfgs = [load(p) for p in paths]
    assert {c.model.name for c in cfgs} >= {"din", "lr"}
    assert {c.data.source for c in cfgs} == set(C.DATA_SOURCES)
    # every model through its overlay (configs/models/) laid over the MovieLens 100K config
    base = REPO / "configs" / "movielens100k.yaml"
    overlays = sorted((REPO / "configs" / "models").glob("*.yaml"))
    ml100k = [load(base)] + [C.load_all([base, p]) for p in overlays]
    assert {p.stem for p in overlays} == set(C.MODEL_NAMES)
    assert {c.model.name for c in ml100k} == set(C.MODEL_NAMES)
    assert all(set(c.methods) == set(C.METHODS) and c.data.source == "movielens100k" for c in ml100k)


def test_empty_file_is_default(tmp_path):
    assert load(_write(tmp_path, "")) == Config()


def test_partial_file_overrides_only_its_keys(tmp_path):
    cfg = load(_write(tmp_path, "seed: 3\nfinetune:\n  steps: 9\n  trainable: [dense, item]\n"))
    expected = dataclasses.replace(
        Config(), seed=3,
        finetune=dataclasses.replace(C.FinetuneConfig(), steps=9, trainable=("dense", "item")))
    assert cfg == expected


# ----------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize("text, key", [
    ("sed: 1\n", "sed"),
    ("cloud:\n  epoch: 3\n", "cloud.epoch"),
    ("retrieval:\n  neighbours: 3\n", "retrieval.neighbours"),
    ("data:\n  eval: test\n", "data.eval"),
])
def test_unknown_key_names_file_and_dotted_key(tmp_path, text, key):
    p, msg = _load_error(tmp_path, text)
    assert str(p) in msg
    assert f"{key}: unknown key" in msg


def test_unknown_key_from_dict_names_source():
    with pytest.raises(ConfigError) as exc:
        from_dict({"cloud": {"epoch": 3}}, source="my-source")
    assert "my-source" in str(exc.value) and "cloud.epoch" in str(exc.value)


# ----------------------------------------------------------------------------- wrong types


@pytest.mark.parametrize("text, key", [
    ("seed: '3'\n", "seed"),                                 # string for an int
    ("cloud:\n  epochs: 'three'\n", "cloud.epochs"),        # string for an int
    ("cloud:\n  epochs: true\n", "cloud.epochs"),           # bool for an int
    ("cloud:\n  epochs: 2.5\n", "cloud.epochs"),            # float for an int
    ("cloud:\n  learning_rate: true\n", "cloud.learning_rate"),  # bool for a float
    ("cloud:\n  learning_rate: fast\n", "cloud.learning_rate"),  # string for a float
    ("methods: coda\n", "methods"),                          # scalar for a list
    ("model:\n  hidden: 64\n", "model.hidden"),             # scalar for a list
    ("finetune:\n  trainable: dense\n", "finetune.trainable"),   # string for a list
    ("model:\n  hidden: [64, x]\n", "model.hidden"),        # bad list element
    ("data:\n  skip_bad_rows: 1\n", "data.skip_bad_rows"),  # int for a bool
    ("data:\n  source: 5\n", "data.source"),                # int for a string
    ("cloud: 5\n", "cloud"),                                 # scalar for a section
    ("cloud: [1, 2]\n", "cloud"),                            # list for a section
])
def test_wrong_type_names_key(tmp_path, text, key):
    p, msg = _load_error(tmp_path, text)
    assert str(p) in msg
    assert key in msg


def test_top_level_not_a_mapping(tmp_path):
    p, msg = _load_error(tmp_path, "- 1\n- 2\n")
    assert str(p) in msg


def test_int_accepted_for_float_and_none_for_optional(tmp_path):
    cfg = load(_write(tmp_path, "cloud:\n  learning_rate: 1\ndata:\n  data_dir: null\n"))
    assert cfg.cloud.learning_rate == 1.0 and isinstance(cfg.cloud.learning_rate, float)
    assert cfg.data.data_dir is None
    cfg = load(_write(tmp_path, "data:\n  data_dir: /some/where\n"))
    assert cfg.data.data_dir == "/some/where"


# ----------------------------------------------------------------------------- out-of-range values


@pytest.mark.parametrize("text, key", [
    ("data:\n  test_fraction: 1.5\n", "data.test_fraction"),
    ("data:\n  test_fraction: 0\n", "data.test_fraction"),
    ("data:\n  test_fraction: 1.0\n", "data.test_fraction"),
    ("data:\n  validation_fraction: -0.1\n", "data.validation_fraction"),
    ("data:\n  eval_on: train\n", "data.eval_on"),
    ("data:\n  source: netflix\n", "data.source"),
    ("data:\n  history_len: 0\n", "data.history_len"),
    ("data:\n  min_rows_per_user: 1\n", "data.min_rows_per_user"),
    ("data:\n  min_test_rows: 0\n", "data.min_test_rows"),
    ("data:\n  split: random\n", "data.split"),
    ("finetune:\n  sampling: mixed\n", "finetune.sampling"),
    ("data:\n  max_users: -1\n", "data.max_users"),
    ("classifier:\n  keep_fraction: 0\n", "classifier.keep_fraction"),
    ("classifier:\n  keep_fraction: 1.5\n", "classifier.keep_fraction"),
    ("classifier:\n  threshold: 1.5\n", "classifier.threshold"),
    ("classifier:\n  kind: tree\n", "classifier.kind"),
    ("finetune:\n  trainable: []\n", "finetune.trainable"),
    ("methods: [local, coda, local]\n", "methods"),
    ("finetune:\n  trainable: ['']\n", "finetune.trainable"),
    ("finetune:\n  steps: 0\n", "finetune.steps"),
    ("finetune:\n  learning_rate: 0\n", "finetune.learning_rate"),
    ("methods: [nope]\n", "methods"),
    ("methods: [coda, nope]\n", "methods"),
    ("methods: []\n", "methods"),
    ("seed: -1\n", "seed"),
    ("model:\n  hidden: []\n", "model.hidden"),
    ("model:\n  hidden: [64, 0]\n", "model.hidden"),
    ("model:\n  name: gru\n", "model.name"),
    ("retrieval:\n  backend: faiss\n", "retrieval.backend"),
    ("retrieval:\n  target_recall: 1.5\n", "retrieval.target_recall"),
    ("retrieval:\n  target_recall: -0.1\n", "retrieval.target_recall"),
    ("synthetic:\n  max_rows_per_user: 5\n", "synthetic.max_rows_per_user"),    # < min (20)
    ("synthetic:\n  num_items: 50\n", "synthetic.max_rows_per_user"),           # max (80) > num_items
    ("eval:\n  confidence: 1.0\n", "eval.confidence"),
    ("engine:\n  chunk_users: 0\n", "engine.chunk_users"),
    ("engine:\n  lockstep_users: -1\n", "engine.lockstep_users"),
    ("eval:\n  repeats: 0\n", "eval.repeats"),
    ("finetune:\n  optimizer: rmsprop\n", "finetune.optimizer"),
    ("cloud:\n  learning_rate: .nan\n", "cloud.learning_rate"),
])
def test_out_of_range_names_key(tmp_path, text, key):
    p, msg = _load_error(tmp_path, text)
    assert str(p) in msg
    assert key in msg


def test_boundary_values_accepted(tmp_path):
    cfg = load(_write(tmp_path, "classifier:\n  keep_fraction: 1.0\n  threshold: 0.0\n"
                                "retrieval:\n  target_recall: 1.0\n  neighbors: 100\n"))
    assert cfg.classifier.keep_fraction == 1.0 and cfg.classifier.threshold == 0.0
    assert cfg.retrieval.neighbors == 100 and cfg.retrieval.target_recall == 1.0


def test_validate_direct_names_source_and_key():
    bad = dataclasses.replace(Config(), data=dataclasses.replace(C.DataConfig(), test_fraction=1.5))
    with pytest.raises(ConfigError) as exc:
        validate(bad, source="somewhere.yaml")
    assert "somewhere.yaml" in str(exc.value) and "data.test_fraction" in str(exc.value)
    assert validate(Config()) == Config()


def test_config_error_is_value_error():
    assert issubclass(ConfigError, ValueError)


# ----------------------------------------------------------------------------- file problems


def test_missing_file_names_path(tmp_path):
    p = tmp_path / "nope" / "missing.yaml"
    with pytest.raises(ConfigError) as exc:
        load(p)
    assert str(p) in str(exc.value)


def test_invalid_yaml_names_file(tmp_path):
    p, msg = _load_error(tmp_path, "data: [1, 2\nseed: : :\n")
    assert str(p) in msg


# ----------------------------------------------------------------------------- overrides and round trip


def test_with_overrides_sets_values():
    cfg = with_overrides(Config(), ["finetune.steps=7"])
    assert cfg.finetune.steps == 7
    assert cfg == dataclasses.replace(Config(), finetune=dataclasses.replace(C.FinetuneConfig(), steps=7))
    cfg = with_overrides(Config(), ["seed=5", "model.hidden=[8, 4]", "methods=[coda]",
                                    "classifier.keep_fraction=0.5"])
    assert cfg.seed == 5 and cfg.model.hidden == (8, 4) and cfg.methods == ("coda",)
    assert cfg.classifier.keep_fraction == 0.5
    # the input config is not modified
    assert Config().finetune.steps == C.FinetuneConfig().steps


@pytest.mark.parametrize("item, key", [
    ("cloud.epoch=3", "cloud.epoch"),
    ("bogus=1", "bogus"),
    ("nosuch.steps=1", "nosuch"),
    ("finetune.steps.x=1", "finetune.steps"),
])
def test_with_overrides_unknown_key_errors(item, key):
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), [item])
    assert key in str(exc.value)


def test_with_overrides_bad_value_and_syntax():
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), ["finetune.steps=0"])
    assert "finetune.steps" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), ["finetune.steps=abc"])
    assert "finetune.steps" in str(exc.value)
    with pytest.raises(ConfigError):
        with_overrides(Config(), ["finetune.steps"])      # no '='


def test_to_dict_round_trip():
    assert from_dict(to_dict(Config())) == Config()
    cfg = with_overrides(Config(), ["seed=11", "model.hidden=[5]", "finetune.trainable=[item, genre]",
                                    "data.data_dir=/x", "methods=[local, coda]"])
    d = to_dict(cfg)
    assert d["model"]["hidden"] == [5] and isinstance(d["finetune"]["trainable"], list)
    assert from_dict(d) == cfg
    # to_dict output survives a YAML dump / load as well
    assert from_dict(yaml.safe_load(yaml.safe_dump(d))) == cfg
    # and it lists every field of every section
    for f in dataclasses.fields(Config):
        assert f.name in d
        sub = getattr(Config(), f.name)
        if dataclasses.is_dataclass(sub):
            assert set(d[f.name]) == {g.name for g in dataclasses.fields(sub)}


def test_from_dict_none_is_default():
    assert from_dict(None) == Config()
    assert from_dict({}) == Config()


# ----------------------------------------------------------------------------- YAML problems: repeated keys, syntax


@pytest.mark.parametrize("text, key, line, first", [
    ("seed: 1\nseed: 2\n", "seed", 2, 1),
    ("finetune:\n  steps: 5\n  batch_size: 8\n  steps: 9\n", "finetune.steps", 4, 2),
    ("cloud:\n  epochs: 2\nseed: 1\ncloud:\n  epochs: 3\n", "cloud", 4, 1),
    ("finetune:\n  trainable: [dense]\n  'trainable': [user]\n", "finetune.trainable", 3, 2),  # quoted twin
])
def test_duplicate_key_names_file_key_and_line(tmp_path, text, key, line, first):
    p, msg = _load_error(tmp_path, text)
    assert msg == (f"{p}: line {line}: {key} is given twice (first on line {first}); "
                   "YAML would keep only the last")


def test_same_key_in_different_sections_is_not_a_duplicate(tmp_path):
    cfg = load(_write(tmp_path, "cloud:\n  learning_rate: 0.01\nfinetune:\n  learning_rate: 0.02\n"))
    assert cfg.cloud.learning_rate == 0.01 and cfg.finetune.learning_rate == 0.02


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    p, msg = _load_error(tmp_path, "seed: 1\ncloud:\n  epochs: [1, 2\nfinetune:\n  steps: 3\n")
    assert msg.startswith(f"{p}: line ")
    line = int(msg[len(f"{p}: line "):].split(",")[0])
    assert 3 <= line <= 5                           # PyYAML reports where it noticed the unclosed '['
    assert "not valid YAML" in msg
    p, msg = _load_error(tmp_path, "seed: 1\nmodel: {name: din\n")
    assert msg.startswith(f"{p}: line ") and "not valid YAML" in msg


def test_yaml_unknown_tag_is_a_config_error(tmp_path):
    p, msg = _load_error(tmp_path, "seed: !!python/object:os.system 1\n")
    assert msg.startswith(f"{p}: line 1, column 7: not valid YAML")


# ----------------------------------------------------------------------------- non-finite floats, seed range

FLOAT_KEYS = [f"{sec}.{f.name}" for sec in ("data", "synthetic", "cloud", "retrieval", "classifier", "finetune",
                                            "eval")
              for f in dataclasses.fields(getattr(Config(), sec)) if f.type in ("float", float)]


def test_float_keys_cover_the_issue_fields():
    assert {"data.like_threshold", "synthetic.taste_scale", "synthetic.base_logit",
            "synthetic.drift"} <= set(FLOAT_KEYS)


@pytest.mark.parametrize("key", FLOAT_KEYS)
@pytest.mark.parametrize("text", [".nan", ".inf", "-.inf", "1e400"])
def test_non_finite_float_in_file_names_key(tmp_path, key, text):
    sec, name = key.split(".")
    p, msg = _load_error(tmp_path, f"{sec}:\n  {name}: {text}\n")
    assert msg.startswith(f"{p}: {key}: must be a finite number, got ")


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "Infinity", "1e400"])
def test_non_finite_float_override_names_key(value):
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), [f"data.like_threshold={value}"])
    assert str(exc.value).startswith(f"--set 'data.like_threshold={value}': data.like_threshold: must be a finite")


def test_huge_int_for_a_float_field_is_rejected_not_overflowing():
    with pytest.raises(ConfigError, match=r"^x: synthetic\.drift: must be a finite number"):
        from_dict({"synthetic": {"drift": 10 ** 400}}, source="x")


@pytest.mark.parametrize("seed", [2 ** 32, 2 ** 32 + 5, 2 ** 63, 2 ** 64, -1])
def test_seed_out_of_range_names_seed_and_range(tmp_path, seed):
    p, msg = _load_error(tmp_path, f"seed: {seed}\n")
    assert msg.startswith(f"{p}: seed: must be in [0, 2^32)") and msg.endswith(f"got {seed}")
    with pytest.raises(ConfigError, match=r"^--set: seed: must be in \[0, 2\^32\)"):
        with_overrides(Config(), [f"seed={seed}"])


def test_seed_range_edges_accepted(tmp_path):
    assert load(_write(tmp_path, f"seed: {2 ** 32 - 1}\n")).seed == 2 ** 32 - 1
    assert with_overrides(Config(), ["seed=0"]).seed == 0


# ----------------------------------------------------------------------------- typed override values (not YAML)


@pytest.mark.parametrize("item, attr, expected", [
    ("data.data_dir=runs/x #1", ("data", "data_dir"), "runs/x #1"),       # YAML: 'runs/x' (a comment)
    ("data.data_dir=2024", ("data", "data_dir"), "2024"),                 # YAML: int
    ("data.data_dir=yes", ("data", "data_dir"), "yes"),                   # YAML: bool
    ("data.path=*x", ("data", "path"), "*x"),                             # YAML: alias error
    ("data.path=%x", ("data", "path"), "%x"),                             # YAML: directive error
    ("data.path=[x", ("data", "path"), "[x"),                             # YAML: unclosed flow sequence
    ("data.path=a=b: c", ("data", "path"), "a=b: c"),                     # only the first '=' splits
    ("data.amazon.meta_path=null", ("data", "amazon", "meta_path"), "null"),               # a str field keeps the text
    ("data.amazon.meta_path=", ("data", "amazon", "meta_path"), None),                     # empty: unset an optional path
    ("data.csv.delimiter=;", ("data", "csv", "delimiter"), ";"),
    ("finetune.learning_rate=1e-3", ("finetune", "learning_rate"), 0.001),  # YAML 1.1: a string
    ("finetune.learning_rate=.5", ("finetune", "learning_rate"), 0.5),
    ("finetune.learning_rate=1E-2", ("finetune", "learning_rate"), 0.01),
    ("classifier.threshold=-1", ("classifier", "threshold"), -1.0),
    ("finetune.steps=1_000", ("finetune", "steps"), 1000),
    ("finetune.steps= 40 ", ("finetune", "steps"), 40),
    ("data.skip_bad_rows=yes", ("data", "skip_bad_rows"), True),
    ("data.skip_bad_rows=TRUE", ("data", "skip_bad_rows"), True),
    ("data.skip_bad_rows=0", ("data", "skip_bad_rows"), False),
    ("data.skip_bad_rows=no", ("data", "skip_bad_rows"), False),
    ("finetune.trainable=[dense, user, genre]", ("finetune", "trainable"), ("dense", "user", "genre")),
    ("finetune.trainable=dense,item", ("finetune", "trainable"), ("dense", "item")),
    ("finetune.trainable=item", ("finetune", "trainable"), ("item",)),
    ("model.hidden=[8,4]", ("model", "hidden"), (8, 4)),
    ("data.csv.columns=[0, 1, 2, 3]", ("data", "csv", "columns"), ("0", "1", "2", "3")),   # strings, not ints
    ("data.csv.columns=['u, id', item, r, t]", ("data", "csv", "columns"), ("u, id", "item", "r", "t")),
    ("data.csv.columns=[]", ("data", "csv", "columns"), ()),
])
def test_override_values_are_typed_by_field(item, attr, expected):
    got = with_overrides(Config(), [item])
    for part in attr:
        got = getattr(got, part)
    assert got == expected and type(got) is type(expected)


def test_override_section_as_flow_mapping_keeps_other_keys():
    base = with_overrides(Config(), ["cloud.learning_rate=0.5"])
    cfg = with_overrides(base, ["cloud={epochs: 7}"])
    assert cfg.cloud == C.CloudConfig(epochs=7, batch_size=C.CloudConfig().batch_size, learning_rate=0.5)


@pytest.mark.parametrize("item, message", [
    ("finetune.learning_rate=abc", "finetune.learning_rate: expected a number, got 'abc'"),
    ("finetune.learning_rate=", "finetune.learning_rate: expected a number, got ''"),
    ("finetune.steps=2.5", "finetune.steps: expected an integer, got '2.5'"),
    ("seed=*x", "seed: expected an integer, got '*x'"),
    ("seed=%x", "seed: expected an integer, got '%x'"),
    ("seed=[x", "seed: expected an integer, got '[x'"),
    ("data.skip_bad_rows=maybe", "data.skip_bad_rows: expected true or false"),
    ("model.hidden=[8, x]", "model.hidden[1]: expected an integer, got 'x'"),
    ("model.hidden=[8, 4", "model.hidden: a list starting with '[' must end with ']'"),
    ("finetune.trainable=[dense,,user]", "finetune.trainable: empty list item"),
    ("data.csv.columns=['a, b]", "data.csv.columns: unclosed '"),
    ("cloud=[1", "cloud: line 1, column 3: not valid YAML"),
    ("cloud={epochs: 1, epochs: 2}", "cloud: line 1: cloud.epochs is given twice (first on line 1)"),
    ("cloud=*x", "cloud: line 1, column 1: not valid YAML"),
    ("cloud=5", "cloud: expected a mapping, got int 5"),
])
def test_malformed_override_names_item_and_key(item, message):
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), [item])
    assert str(exc.value).startswith(f"--set {item!r}: {message}")


def test_override_into_a_value_names_the_value():
    with pytest.raises(ConfigError) as exc:
        with_overrides(Config(), ["seed.x=1"])
    assert str(exc.value) == "--set 'seed.x=1': unknown key seed.x: seed is a value, not a section"


def test_exponent_floats_without_a_dot_load_as_numbers(tmp_path):
    # YAML 1.1 (PyYAML's default) reads 1e-3 as the string '1e-3'; the config loader reads it as YAML 1.2 does
    cfg = load(_write(tmp_path, "finetune:\n  learning_rate: 1e-3\ncloud:\n  learning_rate: 2E-4\n"))
    assert cfg.finetune.learning_rate == 0.001 and cfg.cloud.learning_rate == 0.0002
    assert yaml.safe_load("x: 1e-3") == {"x": "1e-3"}      # the global SafeLoader is left as it was


def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    p, msg = _load_error(tmp_path, "seed: " + "[" * 5000 + "\n")
    assert msg == f"{p}: not valid YAML: nested too deeply"
