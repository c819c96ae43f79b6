"""What a config may hold: the known values of its fields, :class:`ConfigError`, and :func:`validate`, which
checks every value's range and names the dotted key.

This module sits below :mod:`coda_jax.config` (which re-exports every name here): :func:`validate` reads a
config's attributes only, so it needs neither the dataclasses nor the YAML reading.
"""

from __future__ import annotations

from coda_jax.config_sizes import memory_error, size_errors

METHODS = ("global", "local", "local+random", "local+coarse", "coda", "mpda")   # built in (coda_jax.device.methods)
DEFAULT_METHODS = METHODS[:5]      # mpda (a scan over matched users per device) is opt-in: it costs the most
MATCHINGS = ("sample", "user_embedding", "item_overlap", "random_users", "planted_purity")
MODEL_NAMES = ("din", "lr", "deepfm", "wide_deep", "pnn")
DATA_SOURCES = ("synthetic", "movielens100k", "movielens1m", "movielens_csv", "amazon", "taobao", "csv")
DIR_SOURCES = ("movielens100k", "movielens1m", "movielens_csv")  # read from data.data_dir
FILE_SOURCES = ("amazon", "taobao", "csv")                        # read from data.path
TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")
SPLITS = ("auto", "user_fraction", "global_time", "two_cutoff")
MATCH_FROM = ("before_t0", "before_t1", "fresh")
WORLDS = ("planted", "groups")
IMPLICIT_LABELS = ("behaviors", "sampled_negatives")
CLASSIFIER_INPUTS = ("vector", "vector_label", "fields", "din")   # coda_jax.device.inputs
KEEP_RULES = ("top_fraction", "threshold", "expected_purity")     # coda_jax.device.train.keep_mask
CSV_TARGETS = ("rating", "label")
TRAINABLE_GROUPS = ("dense", "user", "item", "genre")
DEFAULT_ANCHOR = "coda"           # eval.anchor: the method the paired differences start from (none where absent)
SEED_LIMIT = 2 ** 32               # seeds are in [0, SEED_LIMIT): jax.random.PRNGKey keeps 32 bits (without x64)


class ConfigError(ValueError):
    """A configuration problem; the message names the file (if any) and the dotted key."""


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


CLASSIFIER_KINDS = ("logreg", "mlp")
_NAMES: dict[str, dict[str, None]] = {
    "methods": dict.fromkeys(METHODS), "model.name": dict.fromkeys(MODEL_NAMES),
    "classifier.kind": dict.fromkeys(CLASSIFIER_KINDS), "retrieval.matching": dict.fromkeys(MATCHINGS)}
"""Config key -> every name it may hold: the built-ins, then those registered since (in order)."""


def add_name(key: str, name: str) -> None:
    """Let configs name ``name`` under ``key`` (``methods``, ``model.name``, ``classifier.kind``,
    ``retrieval.matching``); called by the registries (:mod:`coda_jax.registry`), which hold the values
    themselves: the config sits below them and never imports them."""
    _NAMES[key][name] = None


def add_method_name(name: str) -> None:
    """Let configs list the method ``name`` (see :func:`add_name`)."""
    add_name("methods", name)


def known_names(key: str) -> tuple[str, ...]:
    """The built-in names and any a researcher registered under config key ``key``."""
    return tuple(_NAMES[key])


def _check_profile_world(s, ck) -> None:
    """The planted world's antithetic pairs and profile attribute (``synthetic.antithetic`` / ``profile*``)."""
    ck("synthetic.antithetic", not s.antithetic or (s.world == "planted" and s.num_user_groups % 2 == 0),
       f"needs synthetic.world: planted and an even synthetic.num_user_groups, got {s.world!r} and "
       f"{s.num_user_groups}")
    ck("synthetic.profile", not s.profile or s.world == "planted", "needs synthetic.world: planted")
    ck("synthetic.profile_signal", 0.0 <= s.profile_signal <= 1.0, f"must be in [0, 1], got {s.profile_signal}")
    ck("synthetic.profile_effect", s.profile_effect >= 0, f"must be >= 0, got {s.profile_effect}")


def validate(cfg, source: str = "config"):
    """Check every value's range of ``cfg`` (a :class:`coda_jax.config.Config`) and return it; raise
    :class:`ConfigError` naming ``source`` and the dotted key."""

    def ck(key: str, cond: bool, msg: str) -> None:
        _check(cond, f"{source}: {key}", msg)

    ck("seed", 0 <= cfg.seed < SEED_LIMIT,
       f"must be in [0, 2^32) (JAX keys take 32 bits: seeds s and s + 2^32 would share keys), got {cfg.seed}")
    ck("data.seed", cfg.data.seed is None or 0 <= cfg.data.seed < SEED_LIMIT,
       f"must be unset (the run's seed) or in [0, 2^32), got {cfg.data.seed}")
    ck("methods", len(cfg.methods) > 0, "must name at least one method")
    ck("methods", len(set(cfg.methods)) == len(cfg.methods), f"lists a method twice: {list(cfg.methods)}")
    for m in cfg.methods:
        known = known_names("methods")
        ck("methods", m in known, f"unknown method {m!r}; known: {', '.join(known)}")
    d = cfg.data
    ck("data.source", d.source in DATA_SOURCES, f"unknown source {d.source!r}; known: {', '.join(DATA_SOURCES)}")
    ck("data.history_len", 1 <= d.history_len <= 200, f"must be in [1, 200], got {d.history_len}")
    ck("data.test_fraction", 0.0 < d.test_fraction < 1.0, f"must be in (0, 1), got {d.test_fraction}")
    ck("data.validation_fraction", 0.0 < d.validation_fraction < 1.0,
       f"must be in (0, 1), got {d.validation_fraction}")
    ck("data.device_only_fraction", 0.0 <= d.device_only_fraction < 1.0,
       f"must be in [0, 1), got {d.device_only_fraction}")
    ck("data.min_rows_per_user", d.min_rows_per_user >= 2, f"must be >= 2, got {d.min_rows_per_user}")
    ck("data.min_test_rows", d.min_test_rows >= 1, f"must be >= 1, got {d.min_test_rows}")
    ck("data.eval_on", d.eval_on in ("test", "validation"), f"must be 'test' or 'validation', got {d.eval_on!r}")
    ck("data.split", d.split in SPLITS, f"must be one of {', '.join(SPLITS)}, got {d.split!r}")
    ck("data.cutoff_by", d.cutoff_by in ("quantile", "timestamp"),
       f"must be 'quantile' or 'timestamp', got {d.cutoff_by!r}")
    if d.cutoff_by == "quantile":
        ck("data.cutoff_t0", 0.0 < d.cutoff_t0 < 1.0, f"must be in (0, 1) (a time quantile), got {d.cutoff_t0}")
        ck("data.cutoff_t1", 0.0 < d.cutoff_t1 < 1.0, f"must be in (0, 1) (a time quantile), got {d.cutoff_t1}")
    ck("data.cutoff_t1", d.cutoff_t1 > d.cutoff_t0, f"must be > data.cutoff_t0 ({d.cutoff_t0}), got {d.cutoff_t1}")
    ck("data.match_from", d.match_from in MATCH_FROM, f"must be one of {', '.join(MATCH_FROM)}, got {d.match_from!r}")
    ck("data.max_users", d.max_users >= 0, f"must be >= 0, got {d.max_users}")
    t = d.taobao
    ck("data.taobao.implicit_labels", t.implicit_labels in IMPLICIT_LABELS,
       f"must be one of {', '.join(IMPLICIT_LABELS)}, got {t.implicit_labels!r}")
    ck("data.taobao.negatives", 1 <= t.negatives <= 100, f"must be in [1, 100], got {t.negatives}")
    for b in t.label_behaviors:
        ck("data.taobao.label_behaviors", b in TAOBAO_BEHAVIORS,
           f"unknown behavior {b!r}; known: {', '.join(TAOBAO_BEHAVIORS)}")
    ck("data.taobao.label_behaviors", 0 < len(set(t.label_behaviors)) < len(TAOBAO_BEHAVIORS),
       f"must name at least one and not every behavior, got {list(t.label_behaviors)}")
    ck("data.taobao.label_behaviors", len(set(t.label_behaviors)) == len(t.label_behaviors),
       f"names a behavior twice: {list(t.label_behaviors)}")
    c = d.csv
    ck("data.csv.target", c.target in CSV_TARGETS, f"must be 'rating' or 'label', got {c.target!r}")
    ck("data.csv.delimiter", len(c.delimiter) == 1 and c.delimiter not in "\"\r\n",
       f"must be one character other than a quote or line break, got {c.delimiter!r}")
    if c.columns or d.source == "csv":
        ck("data.csv.columns", len(c.columns) in (4, 5),
           f"must list 4 or 5 columns: user, item, {c.target}, time [, genres], got {list(c.columns)}")
        ck("data.csv.columns", all(x.strip() for x in c.columns), f"must not hold empty names, got {list(c.columns)}")
        ck("data.csv.columns", len(set(c.columns)) == len(c.columns), f"names a column twice: {list(c.columns)}")
        ck("data.csv.columns", c.has_header or all(x.isdigit() for x in c.columns),
           f"without a header (data.csv.has_header: false) must be 0-based column numbers, got {list(c.columns)}")
        ck("data.csv.delimiter", len(c.columns) < 5 or c.delimiter != "|",
           "must not be '|' with a genres column (genres are '|'-separated)")
    s = cfg.synthetic
    ck("synthetic.world", s.world in WORLDS, f"must be one of {', '.join(WORLDS)}, got {s.world!r}")
    for key in ("num_users", "num_items", "num_genres", "num_user_groups", "num_item_clusters"):
        ck(f"synthetic.{key}", getattr(s, key) >= 1, f"must be >= 1, got {getattr(s, key)}")
    ck("synthetic.min_rows_per_user", s.min_rows_per_user >= 2, f"must be >= 2, got {s.min_rows_per_user}")
    ck("synthetic.max_rows_per_user", s.max_rows_per_user >= s.min_rows_per_user,
       f"must be >= synthetic.min_rows_per_user ({s.min_rows_per_user}), got {s.max_rows_per_user}")
    ck("synthetic.max_rows_per_user", s.max_rows_per_user <= s.num_items,
       f"must be <= synthetic.num_items ({s.num_items}), got {s.max_rows_per_user}")
    ck("synthetic.rows_per_user", s.rows_per_user in ("uniform", "lognormal"),
       f"must be 'uniform' or 'lognormal', got {s.rows_per_user!r}")
    ck("synthetic.rows_per_user", s.rows_per_user == "uniform" or s.world == "planted",
       "lognormal needs synthetic.world: planted (the groups world draws uniform counts)")
    ck("synthetic.median_rows_per_user", s.median_rows_per_user >= 1, f"must be >= 1, got {s.median_rows_per_user}")
    ck("synthetic.mean_rows_per_user", s.mean_rows_per_user >= s.median_rows_per_user,
       f"must be >= synthetic.median_rows_per_user ({s.median_rows_per_user}), got {s.mean_rows_per_user}")
    for key in ("taste_scale", "personal_scale", "item_scale", "drift", "shift_scale", "exposure"):
        ck(f"synthetic.{key}", getattr(s, key) >= 0, f"must be >= 0, got {getattr(s, key)}")
    ck("synthetic.shift_time", 0.0 <= s.shift_time <= 1.0, f"must be in [0, 1], got {s.shift_time}")
    _check_profile_world(s, ck)
    m = cfg.model
    models = known_names("model.name")
    ck("model.name", m.name in models, f"unknown model {m.name!r}; known: {', '.join(models)}")
    ck("model.embed_dim", 1 <= m.embed_dim <= 1024, f"must be in [1, 1024], got {m.embed_dim}")
    ck("model.hidden", len(m.hidden) >= 1 and all(h >= 1 for h in m.hidden),
       f"must be a non-empty list of positive widths, got {list(m.hidden)}")
    ck("model.attention_hidden", m.attention_hidden >= 1, f"must be >= 1, got {m.attention_hidden}")
    c = cfg.cloud
    ck("cloud.epochs", c.epochs >= 1, f"must be >= 1, got {c.epochs}")
    ck("cloud.batch_size", c.batch_size >= 1, f"must be >= 1, got {c.batch_size}")
    ck("cloud.learning_rate", c.learning_rate > 0, f"must be > 0, got {c.learning_rate}")
    r = cfg.retrieval
    ck("retrieval.backend", r.backend in ("auto", "scann", "exact"),
       f"must be 'auto', 'scann' or 'exact', got {r.backend!r}")
    ck("retrieval.neighbors", r.neighbors >= 1, f"must be >= 1, got {r.neighbors}")
    ck("retrieval.max_candidates", r.max_candidates >= 1, f"must be >= 1, got {r.max_candidates}")
    ck("retrieval.recall_queries", r.recall_queries >= 0, f"must be >= 0, got {r.recall_queries}")
    ck("retrieval.target_recall", 0.0 <= r.target_recall <= 1.0, f"must be in [0, 1], got {r.target_recall}")
    matchings = known_names("retrieval.matching")
    ck("retrieval.matching", r.matching in matchings, f"must be one of {', '.join(matchings)}, got {r.matching!r}")
    ck("retrieval.matched_users", r.matched_users >= 1, f"must be >= 1, got {r.matched_users}")
    ck("retrieval.purity", 0.0 <= r.purity <= 1.0, f"must be in [0, 1], got {r.purity}")
    if r.matching == "planted_purity":
        ck("retrieval.matching", d.source == "synthetic" and s.world == "planted" and s.antithetic,
           "planted_purity needs a planted world with antithetic group pairs (data.source: synthetic, "
           "synthetic.world: planted, synthetic.antithetic: true)")
    ck("mpda.rows_per_user", cfg.mpda.rows_per_user >= 1, f"must be >= 1, got {cfg.mpda.rows_per_user}")
    ck("mpda.steps", cfg.mpda.steps >= 1, f"must be >= 1, got {cfg.mpda.steps}")
    k = cfg.classifier
    kinds = known_names("classifier.kind")
    ck("classifier.kind", k.kind in kinds, f"must be one of {', '.join(kinds)}, got {k.kind!r}")
    ck("classifier.negatives", k.negatives in ("candidates", "random"),
       f"must be 'candidates' or 'random', got {k.negatives!r}")
    ck("classifier.hidden", k.hidden >= 1, f"must be >= 1, got {k.hidden}")
    ck("classifier.steps", k.steps >= 1, f"must be >= 1, got {k.steps}")
    ck("classifier.learning_rate", k.learning_rate > 0, f"must be > 0, got {k.learning_rate}")
    ck("classifier.l2", k.l2 >= 0, f"must be >= 0, got {k.l2}")
    ck("classifier.keep_fraction", 0.0 < k.keep_fraction <= 1.0, f"must be in (0, 1], got {k.keep_fraction}")
    ck("classifier.threshold", k.threshold < 0 or k.threshold <= 1.0,
       f"must be in [0, 1] (or negative to use keep_fraction), got {k.threshold}")
    ck("classifier.inputs", k.inputs in CLASSIFIER_INPUTS,
       f"must be one of {', '.join(CLASSIFIER_INPUTS)}, got {k.inputs!r}")
    ck("classifier.inputs", k.inputs != "din" or cfg.model.name == "din",
       f"'din' needs model.name: din (the model is {cfg.model.name!r})")
    ck("classifier.keep_rule", k.keep_rule in KEEP_RULES,
       f"must be one of {', '.join(KEEP_RULES)}, got {k.keep_rule!r}")
    ck("classifier.purity_target", 0.0 < k.purity_target <= 1.0, f"must be in (0, 1], got {k.purity_target}")
    f = cfg.finetune
    ck("finetune.steps", f.steps >= 1, f"must be >= 1, got {f.steps}")
    ck("finetune.batch_size", f.batch_size >= 1, f"must be >= 1, got {f.batch_size}")
    ck("finetune.learning_rate", f.learning_rate > 0, f"must be > 0, got {f.learning_rate}")
    ck("finetune.optimizer", f.optimizer in ("adam", "sgd"), f"must be adam or sgd, got {f.optimizer!r}")
    ck("finetune.trainable", len(f.trainable) > 0 and all(isinstance(g, str) and g for g in f.trainable),
       f"must list parameter groups ({', '.join(TRAINABLE_GROUPS)}) or top-level parameter names, "
       f"got {list(f.trainable)}")
    ck("finetune.aug_weight", f.aug_weight > 0, f"must be > 0, got {f.aug_weight}")
    ck("finetune.row_users", f.row_users in ("own", "original"),
       f"must be 'own' or 'original', got {f.row_users!r}")
    ck("finetune.sampling", f.sampling in ("stratified", "pooled"),
       f"must be 'stratified' or 'pooled', got {f.sampling!r}")
    ck("finetune.aug_batch_size", f.aug_batch_size >= 0, f"must be >= 0, got {f.aug_batch_size}")
    e = cfg.engine
    ck("engine.chunk_users", e.chunk_users >= 1, f"must be >= 1, got {e.chunk_users}")
    ck("engine.min_bucket", e.min_bucket >= 1, f"must be >= 1, got {e.min_bucket}")
    ck("engine.lockstep_users", e.lockstep_users >= 0, f"must be >= 0, got {e.lockstep_users}")
    ck("engine.max_shapes", e.max_shapes >= 1, f"must be >= 1, got {e.max_shapes}")
    v = cfg.eval
    ck("eval.bootstrap", v.bootstrap >= 0, f"must be >= 0, got {v.bootstrap}")
    ck("eval.confidence", 0.0 < v.confidence < 1.0, f"must be in (0, 1), got {v.confidence}")
    ck("eval.repeats", v.repeats >= 1, f"must be >= 1, got {v.repeats}")
    ck("eval.anchor", v.anchor in cfg.methods or v.anchor == DEFAULT_ANCHOR,   # the default may be absent
       f"must be one of the run's methods ({', '.join(cfg.methods)}), got {v.anchor!r}")
    for key, msg in size_errors(cfg):         # upper bounds (coda_jax.config_sizes.SIZE_LIMITS)
        ck(key, False, msg)
    return cfg


def check_memory(cfg, source: str = "config", available: int | None = None, matched_rows: int = 0):
    """Refuse (:class:`ConfigError` naming ``source``, the key and the estimate) a run of ``cfg`` whose memory
    estimate (:func:`coda_jax.config_sizes.estimate_memory`) exceeds the machine's memory (or ``available``
    bytes); returns ``cfg``. Called where a run starts (:func:`coda_jax.simulate.simulate_points`, the sweep),
    not by :func:`validate`: a config read back from a results.json is not refused on a smaller machine.
    ``matched_rows``: as :func:`coda_jax.config_sizes.estimate_memory`."""
    err = memory_error(cfg, available, matched_rows)
    if err is not None:
        _check(False, f"{source}: {err[0]}", err[1])
    return cfg
