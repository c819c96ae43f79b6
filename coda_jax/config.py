"""Run configuration: frozen dataclasses, YAML loading and validation with errors that name the field.

The defaults are the embedded default run (synthetic data, no download). ``configs/*.yaml`` override any
subset of fields; an unknown key, a key given twice, a wrong type, a non-finite float or an out-of-range
value raises :class:`ConfigError` naming the file and the dotted key (and the line, for YAML problems).

Command-line overrides (``--set KEY=VALUE``, see :func:`with_overrides`) are not YAML: each value is read by
its field's declared type (see :func:`parse_value`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any

import yaml

METHODS = ("global", "local", "local+random", "local+coarse", "coda", "mpda")   # built in (coda_jax.methods)
DEFAULT_METHODS = METHODS[:5]      # mpda (a scan over matched users per device) is opt-in: it costs the most
MATCHINGS = ("sample", "user_embedding", "item_overlap", "random_users")
MODEL_NAMES = ("din", "lr", "deepfm", "wide_deep", "pnn")
DATA_SOURCES = ("synthetic", "movielens100k", "movielens1m", "movielens_csv", "amazon", "taobao", "csv")
DIR_SOURCES = ("movielens100k", "movielens1m", "movielens_csv")  # read from data.data_dir
FILE_SOURCES = ("amazon", "taobao", "csv")                        # read from data.path
TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")
SPLITS = ("auto", "user_fraction", "global_time", "two_cutoff")
MATCH_FROM = ("before_t0", "before_t1", "fresh")
WORLDS = ("planted", "groups")
IMPLICIT_LABELS = ("behaviors", "sampled_negatives")
CSV_TARGETS = ("rating", "label")
TRAINABLE_GROUPS = ("dense", "user", "item", "genre")
CLASSIFIER_FEATURES = ("vector", "vector+label", "vector+residual")
SEED_LIMIT = 2 ** 32               # seeds are in [0, SEED_LIMIT): jax.random.PRNGKey keeps 32 bits (without x64)


class ConfigError(ValueError):
    """A configuration problem; the message names the file (if any) and the dotted key."""


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic dataset with user groups whose tastes over item clusters differ.

    ``world: planted`` (the default; :mod:`coda_jax.data.synthetic`) plants a known answer: click logit =
    ``base_logit + b_item + theta[group, cluster] + delta[user, cluster] + shift[group, cluster] * [t >= shift_time]``
    with ``b ~ N(0, item_scale^2)``, ``theta ~ N(0, taste_scale^2)``, ``delta ~ N(0, personal_scale^2)``,
    ``shift ~ N(0, shift_scale^2)``; every row's true logit is stored, and the run adds reference rows
    (oracle, group-oracle, ...). ``world: groups`` is the older generator (``drift`` applies there only).
    """

    world: str = "planted"
    num_users: int = 2000
    num_items: int = 1000
    num_genres: int = 20           # planted: cluster c has genre c % num_genres + 1 (one genre per cluster)
    num_user_groups: int = 8
    num_item_clusters: int = 20
    min_rows_per_user: int = 60    # planted: times uniform on [0, 1), so ~60% before T0 = 0.6, ~20% local, ~20% test
    max_rows_per_user: int = 100
    taste_scale: float = 1.0       # spread of group tastes over clusters (logit units)
    personal_scale: float = 0.3    # spread of each user's own deviation from its group
    shift_scale: float = 1.5       # planted: spread of each group's taste shift, switched on at shift_time
    shift_time: float = 0.6        # planted: T_s in [0, 1] (the two-cutoff split's T0 by default)
    exposure: float = 1.0          # planted: exposure ~ exp(exposure * taste + b_item) (Gumbel top-k)
    item_scale: float = 0.5        # spread of item popularity
    drift: float = 0.5             # groups world: how much a user's taste moves from its first to its last row
    base_logit: float = 0.0


@dataclasses.dataclass(frozen=True)
class DataConfig:
    source: str = "synthetic"
    data_dir: str | None = None
    like_threshold: float = 4.0    # explicit ratings: label = rating >= like_threshold
    history_len: int = 10
    test_fraction: float = 0.2
    # "user_fraction": each user's latest rows; "global_time": one global timestamp; "two_cutoff": the cloud model
    # trains on rows before T0, a device's local rows are its rows in [T0, T1), its test rows those after T1;
    # "auto": two_cutoff on the planted synthetic world, user_fraction elsewhere.
    split: str = "auto"
    cutoff_t0: float = 0.6         # two_cutoff: T0, a global time quantile in (0, 1) or a timestamp (cutoff_by)
    cutoff_t1: float = 0.8         # two_cutoff: T1 > T0
    cutoff_by: str = "quantile"    # "quantile" of all rows' timestamps, or "timestamp" (the data's time unit,
                                   # e.g. unix seconds for MovieLens: a date)
    match_from: str = "before_t1"  # two_cutoff: what the cloud matches from: "before_t0" (its own rows), "before_t1"
                                   # (also the fresh rows devices uploaded before T1) or "fresh" (only those)
    fresh_reference: bool = True   # two_cutoff: also report global-fresh, a cloud model retrained on rows before T1
    min_rows_per_user: int = 5
    min_test_rows: int = 1         # simulate only users with at least this many held-out rows (others stay in the pool)
    eval_on: str = "test"          # "test", or "validation": hold out the last rows of each user's training rows
    validation_fraction: float = 0.2
    device_only_fraction: float = 0.0  # each user's latest training rows that only its device holds (not in the
                                   # cloud model's data or the pool: gathered since the last upload); 0 = none
    max_users: int = 0             # simulate only the first N users (0 = all); the pool keeps everyone
    path: str | None = None        # single-file sources (amazon, taobao, csv): the interactions file
    meta_path: str | None = None   # amazon: optional metadata JSON lines (categories -> genres)
    skip_bad_rows: bool = False    # drop and count malformed / duplicate rows instead of failing on the first
    label_behaviors: tuple[str, ...] = ("buy", "cart", "fav")  # taobao: behaviors labelled 1 (the rest 0)
    # Readers without explicit ratings (taobao): "sampled_negatives" makes every interaction a positive and adds
    # `negatives` items the user never touched, at the same time, as negatives (as MPDA does for Amazon; see
    # coda_jax/data/implicit.py); "behaviors" labels rows by label_behaviors (close to unlearnable on samples).
    implicit_labels: str = "sampled_negatives"
    negatives: int = 4
    columns: tuple[str, ...] = ()  # csv: user, item, rating (or label), time [, genres] column names
                                   # (0-based numbers as strings, e.g. "0", without a header)
    csv_target: str = "rating"     # csv: the third column is a "rating" (>= like_threshold) or a 0/1 "label"
    has_header: bool = True        # csv: the first line names the columns
    delimiter: str = ","           # csv: one character


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str = "lr"               # the planted default: a model without user x genre terms, fine-tuned per device
    embed_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)
    attention_hidden: int = 32     # DIN only (its attention unit's width)


@dataclasses.dataclass(frozen=True)
class CloudConfig:
    epochs: int = 3
    batch_size: int = 256
    learning_rate: float = 1e-3


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    backend: str = "auto"          # "auto" (exact or ScaNN by pool, width, queries, platform), "scann" or "exact"
    neighbors: int = 30            # neighbours retrieved per local sample
    max_candidates: int = 300      # candidates kept per user after dedupe
    exclude_seen_items: bool = False   # sample matching: drop candidates about items the user's local rows hold
    candidate_order: str = "score" # which max_candidates (sample matching): "score" (most similar to any local
                                   # sample) or "rank" (each local sample's nearest, then each one's 2nd, ...)
    recall_queries: int = 2000     # queries used to measure an approximate search's recall@k against exact (0 = skip)
    target_recall: float = 0.95    # ScaNN: search more leaves until recall@k on 500 pool rows reaches it (0 = derived
                                   # settings as they are); see docs/retrieval.md
    # "sample": nearest pool samples of each local sample (ScaNN / exact); user-level: "user_embedding",
    # "item_overlap", "random_users" (candidates = the matched users' rows). See coda_jax.cloud.matching.
    matching: str = "item_overlap"
    matched_users: int = 10        # users matched per user (user-level matching; the users mpda goes through)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    kind: str = "logreg"           # "logreg" or "mlp"
    negatives: str = "candidates"  # "candidates" (the coarse set) or "random" (random pool rows)
    # What the classifier sees of a row: "vector" (the cloud's sample vector); "vector+label" (and its label,
    # as +-1); "vector+residual" (and label - the cloud model's predicted probability: how the row's owner
    # departs from the cloud model, so kept rows are those whose owners depart from it as this user does).
    features: str = "vector"
    hidden: int = 32
    steps: int = 100
    learning_rate: float = 0.05
    l2: float = 1e-3
    keep_fraction: float = 0.9
    threshold: float = -1.0        # if in [0, 1]: keep candidates scored >= threshold instead of a fraction


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 100
    batch_size: int = 32
    learning_rate: float = 0.1
    optimizer: str = "adam"        # "adam" or "sgd" (plain gradient steps: a parameter moves with its gradient,
                                   # so weights the few local rows say little about stay near the cloud's)
    trainable: tuple[str, ...] = ("genre",)  # groups (dense, user, item, genre) or parameter names
    aug_weight: float = 1.0        # sampling weight of one augmented row relative to one local row
    weight_by_score: bool = False  # coda: also scale each kept row's weight by its classifier score
    row_users: str = "own"         # augmented rows keep their own users ("original") or act as the device's ("own")
    # "pooled": each step draws batch_size rows from local + augmented rows by weight. "stratified": batch_size
    # local rows and aug_batch_size augmented rows, weighted so the objective is the same weighted mean; every
    # method then draws the same local rows (common random numbers). Pooled did better on the MovieLens
    # validation split (see README).
    sampling: str = "pooled"
    aug_batch_size: int = 0        # augmented rows per step with stratified sampling (0 = batch_size)
    # "holdout": the device holds out its latest holdout_fraction of local rows (at least 1, never all),
    # fine-tunes on the rest, scores the held-out rows (their AUC; minus their cross-entropy if one class) at
    # the start and every check_every steps, and keeps the best checkpoint (possibly the cloud model itself).
    # "none": the last step.
    select: str = "none"
    holdout_fraction: float = 0.2
    check_every: int = 10
    interpolate: float = 1.0       # keep this fraction of the move fine-tuning made: start + a * (end - start)
                                   # (1 = the fine-tuned parameters; weight-space interpolation as in WiSE-FT)


@dataclasses.dataclass(frozen=True)
class MpdaConfig:
    """The MPDA baseline: try each matched user's rows in turn, keep them if the local-data AUC improves."""

    rows_per_user: int = 64        # each matched user's latest pool rows sent to the device
    steps: int = 20                # fine-tuning steps on one matched user's rows (then finetune.* on local rows)


@dataclasses.dataclass(frozen=True)
class EngineConfig:
    chunk_users: int = 64          # users per compiled chunk (the last chunk is padded): 64 was fastest per user
                                   # on a 2-core CPU (vs 32, 128, 256); raise it on a GPU (e.g. 1024)
    min_bucket: int = 16           # smallest padded row / vocabulary size; buckets are powers of two
    max_shapes: int = 2            # local-row widths per run (chunk shapes, so compiled programs; see docs/engine.md)
    lockstep_users: int = 0        # users vmapped together inside a chunk, groups in turn (0 = auto: 8 on CPU,
                                   # the whole chunk on a GPU / TPU); results do not depend on it


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    bootstrap: int = 2000
    confidence: float = 0.95
    repeats: int = 1               # device-stage runs per user with independent device keys; each user's AUC is
                                   # the mean over them (same cloud model, candidates and test rows)


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything a run needs. ``Config()`` is the embedded default run."""

    seed: int = 0
    methods: tuple[str, ...] = DEFAULT_METHODS
    data: DataConfig = DataConfig()
    synthetic: SyntheticConfig = SyntheticConfig()
    model: ModelConfig = ModelConfig()
    cloud: CloudConfig = CloudConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    mpda: MpdaConfig = MpdaConfig()
    engine: EngineConfig = EngineConfig()
    eval: EvalConfig = EvalConfig()


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{where}: {msg}")


def _known_methods() -> tuple[str, ...]:
    """The built-in methods and any a researcher registered (coda_jax.methods.register_method)."""
    from coda_jax.methods import method_names  # noqa: PLC0415 - the registry imports the device code

    return method_names()


def validate(cfg: Config, source: str = "config") -> Config:
    """Check every value's range; raise :class:`ConfigError` naming ``source`` and the dotted key."""

    def ck(key: str, cond: bool, msg: str) -> None:
        _check(cond, f"{source}: {key}", msg)

    ck("seed", 0 <= cfg.seed < SEED_LIMIT,
       f"must be in [0, 2^32) (JAX keys take 32 bits: seeds s and s + 2^32 would share keys), got {cfg.seed}")
    ck("methods", len(cfg.methods) > 0, "must name at least one method")
    ck("methods", len(set(cfg.methods)) == len(cfg.methods), f"lists a method twice: {list(cfg.methods)}")
    for m in cfg.methods:
        known = _known_methods()
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
    ck("data.implicit_labels", d.implicit_labels in IMPLICIT_LABELS,
       f"must be one of {', '.join(IMPLICIT_LABELS)}, got {d.implicit_labels!r}")
    ck("data.negatives", 1 <= d.negatives <= 100, f"must be in [1, 100], got {d.negatives}")
    ck("data.max_users", d.max_users >= 0, f"must be >= 0, got {d.max_users}")
    for b in d.label_behaviors:
        ck("data.label_behaviors", b in TAOBAO_BEHAVIORS,
           f"unknown behavior {b!r}; known: {', '.join(TAOBAO_BEHAVIORS)}")
    ck("data.label_behaviors", 0 < len(set(d.label_behaviors)) < len(TAOBAO_BEHAVIORS),
       f"must name at least one and not every behavior, got {list(d.label_behaviors)}")
    ck("data.label_behaviors", len(set(d.label_behaviors)) == len(d.label_behaviors),
       f"names a behavior twice: {list(d.label_behaviors)}")
    ck("data.csv_target", d.csv_target in CSV_TARGETS, f"must be 'rating' or 'label', got {d.csv_target!r}")
    ck("data.delimiter", len(d.delimiter) == 1 and d.delimiter not in "\"\r\n",
       f"must be one character other than a quote or line break, got {d.delimiter!r}")
    if d.columns or d.source == "csv":
        ck("data.columns", len(d.columns) in (4, 5),
           f"must list 4 or 5 columns: user, item, {d.csv_target}, time [, genres], got {list(d.columns)}")
        ck("data.columns", all(c.strip() for c in d.columns), f"must not hold empty names, got {list(d.columns)}")
        ck("data.columns", len(set(d.columns)) == len(d.columns), f"names a column twice: {list(d.columns)}")
        ck("data.columns", d.has_header or all(c.isdigit() for c in d.columns),
           f"without a header (data.has_header: false) must be 0-based column numbers, got {list(d.columns)}")
        ck("data.delimiter", len(d.columns) < 5 or d.delimiter != "|",
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
    for key in ("taste_scale", "personal_scale", "item_scale", "drift", "shift_scale", "exposure"):
        ck(f"synthetic.{key}", getattr(s, key) >= 0, f"must be >= 0, got {getattr(s, key)}")
    ck("synthetic.shift_time", 0.0 <= s.shift_time <= 1.0, f"must be in [0, 1], got {s.shift_time}")
    m = cfg.model
    ck("model.name", m.name in MODEL_NAMES, f"unknown model {m.name!r}; known: {', '.join(MODEL_NAMES)}")
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
    ck("retrieval.candidate_order", r.candidate_order in ("score", "rank"),
       f"must be 'score' or 'rank', got {r.candidate_order!r}")
    ck("retrieval.max_candidates", r.max_candidates >= 1, f"must be >= 1, got {r.max_candidates}")
    ck("retrieval.recall_queries", r.recall_queries >= 0, f"must be >= 0, got {r.recall_queries}")
    ck("retrieval.target_recall", 0.0 <= r.target_recall <= 1.0, f"must be in [0, 1], got {r.target_recall}")
    ck("retrieval.matching", r.matching in MATCHINGS, f"must be one of {', '.join(MATCHINGS)}, got {r.matching!r}")
    ck("retrieval.matched_users", r.matched_users >= 1, f"must be >= 1, got {r.matched_users}")
    ck("mpda.rows_per_user", cfg.mpda.rows_per_user >= 1, f"must be >= 1, got {cfg.mpda.rows_per_user}")
    ck("mpda.steps", cfg.mpda.steps >= 1, f"must be >= 1, got {cfg.mpda.steps}")
    k = cfg.classifier
    ck("classifier.kind", k.kind in ("logreg", "mlp"), f"must be 'logreg' or 'mlp', got {k.kind!r}")
    ck("classifier.negatives", k.negatives in ("candidates", "random"),
       f"must be 'candidates' or 'random', got {k.negatives!r}")
    ck("classifier.features", k.features in CLASSIFIER_FEATURES,
       f"must be one of {', '.join(CLASSIFIER_FEATURES)}, got {k.features!r}")
    ck("classifier.hidden", k.hidden >= 1, f"must be >= 1, got {k.hidden}")
    ck("classifier.steps", k.steps >= 1, f"must be >= 1, got {k.steps}")
    ck("classifier.learning_rate", k.learning_rate > 0, f"must be > 0, got {k.learning_rate}")
    ck("classifier.l2", k.l2 >= 0, f"must be >= 0, got {k.l2}")
    ck("classifier.keep_fraction", 0.0 < k.keep_fraction <= 1.0, f"must be in (0, 1], got {k.keep_fraction}")
    ck("classifier.threshold", k.threshold < 0 or k.threshold <= 1.0,
       f"must be in [0, 1] (or negative to use keep_fraction), got {k.threshold}")
    f = cfg.finetune
    ck("finetune.steps", f.steps >= 1, f"must be >= 1, got {f.steps}")
    ck("finetune.batch_size", f.batch_size >= 1, f"must be >= 1, got {f.batch_size}")
    ck("finetune.learning_rate", f.learning_rate > 0, f"must be > 0, got {f.learning_rate}")
    ck("finetune.select", f.select in ("none", "holdout"), f"must be none or holdout, got {f.select!r}")
    ck("finetune.holdout_fraction", 0.0 < f.holdout_fraction < 1.0,
       f"must be in (0, 1), got {f.holdout_fraction}")
    ck("finetune.check_every", f.check_every >= 1 and (f.select == "none" or f.steps % f.check_every == 0),
       f"must be >= 1 and, with select: holdout, divide finetune.steps ({f.steps}), got {f.check_every}")
    ck("finetune.optimizer", f.optimizer in ("adam", "sgd"), f"must be adam or sgd, got {f.optimizer!r}")
    ck("finetune.trainable", len(f.trainable) > 0 and all(isinstance(g, str) and g for g in f.trainable),
       f"must list parameter groups ({', '.join(TRAINABLE_GROUPS)}) or top-level parameter names, "
       f"got {list(f.trainable)}")
    ck("finetune.aug_weight", f.aug_weight > 0, f"must be > 0, got {f.aug_weight}")
    ck("finetune.interpolate", 0.0 < f.interpolate <= 1.0, f"must be in (0, 1], got {f.interpolate}")
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
    return cfg


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert a YAML value to the dataclass field type ``tp`` or raise naming ``where``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        return _build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (elem,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple(_coerce(v, elem, f"{where}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            out = float(value)
        except OverflowError:
            out = math.inf
        if not math.isfinite(out):                  # no field means infinity (or NaN)
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
        return out
    if tp is str:
        if not isinstance(value, str):
            hint = f" (in YAML, quote it: '{value}')" if isinstance(value, (int, float)) else ""
            raise ConfigError(f"{where}: expected a string, got {value!r}{hint}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")  # pragma: no cover - programming error


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise ConfigError(f"{path}: unknown key; known keys here: {', '.join(sorted(names))}")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def from_dict(data: dict, source: str = "config") -> Config:
    """Build and validate a :class:`Config` from a nested dict (missing keys keep their defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = _build(Config, data, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    return validate(cfg, source)


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads exponent floats without a dot (``1e-3``, ``2E5``) as numbers, as YAML 1.2
    does (YAML 1.1 reads them as strings, so ``learning_rate: 1e-3`` was rejected as "expected a number")."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                              list("-+0123456789"))


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int, first: int):
        super().__init__(key, line, first)
        self.key, self.line, self.first = key, line, first


def _check_duplicate_keys(node: yaml.Node, where: str, seen_nodes: set[int]) -> None:
    """Raise :class:`_DuplicateKey` for a mapping key given twice anywhere under ``node`` (YAML keeps the last)."""
    if id(node) in seen_nodes:                     # an alias of a node already checked (or a cycle)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            path = f"{where}.{name}" if where else name
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                ident = (key_node.tag, key_node.value)
                line = key_node.start_mark.line + 1
                if ident in first:
                    raise _DuplicateKey(path, line, first[ident])
                first[ident] = line
            _check_duplicate_keys(value_node, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{where}[{i}]", seen_nodes)


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}not valid YAML: {problem}"


def parse_yaml(text: str, source: str, prefix: str = "") -> Any:
    """Parse YAML ``text`` (safe types only); a syntax error or a mapping key given twice (which YAML would
    silently resolve to the last value) raises :class:`ConfigError` naming ``source``, the line and the
    dotted key (``prefix`` + the keys above it)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_duplicate_keys(node, prefix, set())
        return loader.construct_document(node)
    except _DuplicateKey as dup:
        raise ConfigError(f"{source}: line {dup.line}: {dup.key} is given twice (first on line {dup.first}); "
                          "YAML would keep only the last") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: {_yaml_problem(err)}") from None
    except RecursionError:                         # PyYAML composes nested collections recursively
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def load(path: str | Path) -> Config:
    """Load a YAML config file; unknown or repeated keys, YAML syntax errors and bad values raise
    :class:`ConfigError` naming the file (and the line, for YAML problems)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the config file: {err}") from None
    return from_dict(parse_yaml(text, str(path)), str(path))


def to_dict(cfg: Config) -> dict:
    """The config as a plain nested dict (lists for tuples), as written to ``results.json``."""

    def conv(x: Any) -> Any:
        if isinstance(x, tuple):
            return [conv(v) for v in x]
        if isinstance(x, dict):
            return {k: conv(v) for k, v in x.items()}
        return x

    return conv(dataclasses.asdict(cfg))


_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def _split_list(raw: str, where: str) -> list[str]:
    """``[a, b]`` or ``a,b`` -> ``["a", "b"]``; whitespace around items dropped, one pair of '...' or "..."
    quotes around an item removed (a quoted item may hold commas); ``[]`` or nothing -> ``[]``."""
    text = raw.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise ConfigError(f"{where}: a list starting with '[' must end with ']', got {raw!r}")
        text = text[1:-1].strip()
    if not text:
        return []
    items, cur, quote = [], "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"" and not cur.strip():
            quote = ch
        elif ch == ",":
            items.append(cur)
            cur = ""
            continue
        cur += ch
    if quote:
        raise ConfigError(f"{where}: unclosed {quote} in {raw!r}")
    items.append(cur)
    out = []
    for item in items:
        item = item.strip()
        if not item:
            raise ConfigError(f"{where}: empty list item in {raw!r}")
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1]
        out.append(item)
    return out


def parse_value(raw: str, tp: Any, where: str) -> Any:
    """A command-line value as the field type ``tp`` (not YAML: paths such as ``runs/x #1`` or ``2024`` stay
    strings). str: the text as given; int: ``int()``; float: ``float()`` (``1e-3``, ``.5``; finiteness is
    checked when the config is built); bool: true/false, yes/no or 1/0 (any case); tuple: ``[a, b]`` or
    ``a,b`` (``[]`` or nothing: empty), items read by the element type; optional (``X | None``): nothing
    means None; a section: a YAML flow mapping (``{epochs: 5}``), as in a config file.
    Raises :class:`ConfigError` naming ``where``."""
    if dataclasses.is_dataclass(tp):
        return parse_yaml(raw, where, prefix=where)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if raw.strip() == "":
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return parse_value(raw, inner, where)
    if origin is tuple:
        (elem,) = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return tuple(parse_value(v, elem, f"{where}[{i}]") for i, v in enumerate(_split_list(raw, where)))
    if tp is str:
        return raw
    if tp is bool:
        low = raw.strip().lower()
        if low in _TRUE or low in _FALSE:
            return low in _TRUE
        raise ConfigError(f"{where}: expected true or false (or yes/no, 1/0), got {raw!r}")
    if tp is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    raise ConfigError(f"{where}: unsupported field type {tp}")  # pragma: no cover - programming error


def _field_type(key: str, item: str, source: str) -> Any:
    """The declared type of the dotted ``key`` of :class:`Config` (a section's dataclass for a section)."""
    tp: Any = Config
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(tp):
            raise ConfigError(f"{source} {item!r}: unknown key {key}: {'.'.join(parts[:i])} is a value, "
                              "not a section")
        names = sorted(f.name for f in dataclasses.fields(tp))
        if part not in names:
            raise ConfigError(f"{source} {item!r}: unknown key {'.'.join(parts[:i + 1])}; "
                              f"known keys here: {', '.join(names)}")
        tp = typing.get_type_hints(tp)[part]
    return tp


def with_overrides(cfg: Config, overrides: list[str], source: str = "--set") -> Config:
    """Apply ``key.sub=value`` overrides and re-validate (once, after all of them: later items win).

    Each value is read by its field's declared type with :func:`parse_value`, not as YAML; a malformed value
    raises :class:`ConfigError` naming ``source``, the item and the dotted key."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected KEY=VALUE, e.g. cloud.epochs=5")
        key, raw = item.split("=", 1)
        key = key.strip()
        tp = _field_type(key, item, source)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        try:
            value = parse_value(raw, tp, key)
            _coerce(value, tp, key)                # check the value alone now, so that the error names this item
        except ConfigError as err:
            raise ConfigError(f"{source} {item!r}: {err}") from None
        if dataclasses.is_dataclass(tp):          # a section: its keys given here replace those keys only
            node[parts[-1]] = {**node[parts[-1]], **value}
        else:
            node[parts[-1]] = value
    return from_dict(data, source)
