"""Run configuration: frozen dataclasses, loaded from YAML and validated with errors that name the field.

The defaults are the embedded default run (synthetic data, no download). ``configs/*.yaml`` override any
subset of fields; an unknown key, a key given twice, a wrong type, a non-finite float or an out-of-range
value raises :class:`ConfigError` naming the file and the dotted key (and the line, for YAML problems).

Command-line overrides (``--set KEY=VALUE``, see :func:`with_overrides`) are not YAML: each value is read by
its field's declared type (see :func:`parse_value`). Config files compose (:func:`load_all`: later files
override earlier ones key by key).

The value checks live in :mod:`coda_jax.config_check`, the YAML and ``--set`` reading in
:mod:`coda_jax.config_io`; this module re-exports their public names.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from coda_jax.config_check import (CSV_TARGETS, DATA_SOURCES, DEFAULT_ANCHOR, DEFAULT_METHODS, DIR_SOURCES,
                                   FILE_SOURCES, IMPLICIT_LABELS, MATCH_FROM, MATCHINGS, METHODS, MODEL_NAMES,
                                   SEED_LIMIT, SPLITS, TAOBAO_BEHAVIORS, TRAINABLE_GROUPS, WORLDS, ConfigError,
                                   add_method_name, check_memory, validate)
from coda_jax.config_io import (RETIRED, apply_overrides, apply_values, build, drop_retired, merge, parse_value, parse_yaml,
                                read_yaml_file, to_dict)

__all__ = [
    "CSV_TARGETS", "DATA_SOURCES", "DEFAULT_METHODS", "DIR_SOURCES", "FILE_SOURCES",
    "IMPLICIT_LABELS", "MATCHINGS", "MATCH_FROM", "METHODS", "MODEL_NAMES", "RETIRED", "SEED_LIMIT", "SPLITS",
    "TAOBAO_BEHAVIORS", "TRAINABLE_GROUPS", "WORLDS", "ClassifierConfig", "CloudConfig", "Config",
    "ConfigError", "DataConfig", "EngineConfig", "EvalConfig", "FinetuneConfig", "ModelConfig", "MpdaConfig",
    "RetrievalConfig", "SyntheticConfig", "add_method_name", "check_memory", "data_seed", "drop_retired",
    "from_dict", "from_dict_unchecked", "load", "load_all", "merge", "parse_value", "parse_yaml", "to_dict",
    "validate", "with_overrides"
]


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
    rows_per_user: str = "uniform"  # "uniform" on [min, max], or "lognormal" (heavy-tailed; planted world only)
    median_rows_per_user: int = 68  # lognormal: median and mean (MovieLens 20M: 68 and 144), clipped to [min, max]
    mean_rows_per_user: int = 144
    taste_scale: float = 1.0       # spread of group tastes over clusters (logit units)
    personal_scale: float = 0.3    # spread of each user's own deviation from its group
    shift_scale: float = 1.5       # planted: spread of each group's taste shift, switched on at shift_time
    shift_time: float = 0.6        # planted: T_s in [0, 1] (the two-cutoff split's T0 by default)
    exposure: float = 1.0          # planted: exposure ~ exp(exposure * taste + b_item) (Gumbel top-k)
    item_scale: float = 0.5        # spread of item popularity
    drift: float = 0.5             # groups world: how much a user's taste moves from its first to its last row
    base_logit: float = 0.0
    # planted: groups in antithetic pairs (group 2k+1's cluster tastes and shifts are minus group 2k's), each group's
    # logits offset so that every group has the same click rate under its exposure before any shift (nothing but
    # the taste's sign tells a pair apart); needs an even num_user_groups
    antithetic: bool = False
    profile: bool = False          # planted: every user carries a profile attribute (a row field and a model feature)
    profile_signal: float = 0.9    # planted, profile: P(attribute = the user's group) = q + (1 - q) / groups
                                   # (the attribute is the group with probability q, uniform over groups otherwise)
    profile_effect: float = 0.0    # planted, profile: the attribute's own click-logit effect, +e / -e for the
                                   # first / second attribute of each pair (a base rate the cloud model can learn)


@dataclasses.dataclass(frozen=True)
class CsvConfig:
    """``data.csv``: the options of the ``csv`` source (any delimited interactions file)."""

    columns: tuple[str, ...] = ()  # user, item, rating (or label), time [, genres] column names
                                   # (0-based numbers as strings, e.g. "0", without a header)
    target: str = "rating"         # the third column is a "rating" (>= data.like_threshold) or a 0/1 "label"
    has_header: bool = True        # the first line names the columns
    delimiter: str = ","           # one character


@dataclasses.dataclass(frozen=True)
class TaobaoConfig:
    """``data.taobao``: the options of the ``taobao`` source (UserBehavior.csv, no explicit ratings)."""

    # "sampled_negatives" makes every interaction a positive and adds `negatives` items the user never touched, at
    # the same time, as negatives (as MPDA does for Amazon; see coda_jax/data/implicit.py); "behaviors" labels rows
    # by label_behaviors (close to unlearnable on samples).
    implicit_labels: str = "sampled_negatives"
    negatives: int = 4
    label_behaviors: tuple[str, ...] = ("buy", "cart", "fav")  # behaviors labelled 1 (the rest 0)


@dataclasses.dataclass(frozen=True)
class AmazonConfig:
    """``data.amazon``: the options of the ``amazon`` source."""

    meta_path: str | None = None   # optional metadata JSON lines (categories -> genres)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``data``: the dataset and its splits. Options shared by every file source are here (``data_dir`` /
    ``path``, ``like_threshold``, ``skip_bad_rows``); a source's own options are in its block (``csv``,
    ``taobao``, ``amazon``)."""

    MOVED: typing.ClassVar[dict[str, str]] = {  # an old flat key -> where it lives now (an error names it)
        "meta_path": "data.amazon.meta_path", "label_behaviors": "data.taobao.label_behaviors",
        "implicit_labels": "data.taobao.implicit_labels", "negatives": "data.taobao.negatives",
        "columns": "data.csv.columns", "csv_target": "data.csv.target", "has_header": "data.csv.has_header",
        "delimiter": "data.csv.delimiter"}

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
    skip_bad_rows: bool = False    # drop and count malformed / duplicate rows instead of failing on the first
    # the seed of the data: the synthetic world and any sampling of the data (a reader's sampled negatives); unset
    # (null): the run's seed. Runs with one data.seed and different seeds are repeats of one world (coda-sim combine)
    seed: int | None = None
    csv: CsvConfig = CsvConfig()
    taobao: TaobaoConfig = TaobaoConfig()
    amazon: AmazonConfig = AmazonConfig()


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
    MOVED: typing.ClassVar[dict[str, str]] = {   # the ScaNN knobs gave way to derived settings (docs/retrieval.md)
        "scann_leaves_to_search": "retrieval.target_recall (ScaNN's settings are derived from the pool)",
        "scann_reorder": "retrieval.target_recall (ScaNN's settings are derived from the pool)"}
    backend: str = "auto"          # "auto" (exact or ScaNN by pool, width, queries, platform), "scann" or "exact"
    neighbors: int = 30            # neighbours retrieved per local sample
    max_candidates: int = 300      # candidates kept per user after dedupe
    recall_queries: int = 2000     # queries used to measure an approximate search's recall@k against exact (0 = skip)
    target_recall: float = 0.95    # ScaNN: search more leaves until recall@k on 500 pool rows reaches it (0 = derived
                                   # settings as they are); see docs/retrieval.md
    # "sample": nearest pool samples of each local sample (ScaNN / exact); user-level: "user_embedding",
    # "item_overlap", "random_users" (candidates = the matched users' rows). See coda_jax.cloud.matching.
    matching: str = "item_overlap"
    matched_users: int = 10        # users matched per user (user-level matching; the users mpda goes through)
    purity: float = 0.5            # planted_purity: round(purity * matched_users) users from the own group, the rest
                                   # from its antithetic partner group (a set own-group share of the candidates)


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
    kind: str = "logreg"           # "logreg" or "mlp"
    inputs: str = "vector"         # "vector" (sample vector), "vector_label", "fields" (genre one-hot, label, time
                                   # since T0, profile one-hot), "din" (DIN's representation); coda_jax.device.inputs
    negatives: str = "candidates"  # "candidates" (the coarse set) or "random" (rows drawn from the whole pool)
    keep_rule: str = "top_fraction"  # "top_fraction" (keep_fraction), "threshold" (score >= threshold; the classes
                                   # are balanced) or "expected_purity" (the largest top set of estimated own share
                                   # >= purity_target); coda_jax.device.train.keep_mask
    hidden: int = 32
    steps: int = 100
    learning_rate: float = 0.05
    l2: float = 1e-3
    keep_fraction: float = 0.9
    threshold: float = -1.0        # if in [0, 1]: keep candidates scored >= threshold instead of a fraction
    purity_target: float = 0.9     # keep_rule expected_purity: the estimated own share the kept set must reach


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    steps: int = 100
    batch_size: int = 32
    learning_rate: float = 0.1
    optimizer: str = "adam"        # "adam" or "sgd" (plain gradient steps: a parameter moves with its gradient,
                                   # so weights the few local rows say little about stay near the cloud's)
    trainable: tuple[str, ...] = ("genre",)  # groups (dense, user, item, genre) or parameter names
    aug_weight: float = 1.0        # sampling weight of one augmented row relative to one local row
    row_users: str = "own"         # augmented rows keep their own users ("original") or act as the device's ("own")
    # "pooled": each step draws batch_size rows from local + augmented rows by weight. "stratified": batch_size
    # local rows and aug_batch_size augmented rows, weighted so the objective is the same weighted mean; every
    # method then draws the same local rows (common random numbers). Pooled did better on the MovieLens
    # validation split (see README).
    sampling: str = "pooled"
    aug_batch_size: int = 0        # augmented rows per step with stratified sampling (0 = batch_size)


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
    max_shapes: int = 1            # local-row widths per run (chunk shapes, so compiled programs; see docs/engine.md):
                                   # 1 = one program per run (padding local rows costs little; a compile costs much)
    lockstep_users: int = 0        # users vmapped together inside a chunk, groups in turn (0 = auto: 8 on CPU,
                                   # the whole chunk on a GPU / TPU); results do not depend on it


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    bootstrap: int = 2000
    confidence: float = 0.95
    repeats: int = 1               # device-stage runs per user with independent device keys; each user's AUC is
                                   # the mean over them (same cloud model, candidates and test rows)
    anchor: str = DEFAULT_ANCHOR   # the method every other one is compared with: paired anchor - method differences
                                   # (a method of the run; with the default coda absent, no differences)


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


def data_seed(cfg: Config) -> int:
    """The seed that draws the data (``data.seed``, or the run's ``seed`` when it is unset)."""
    return cfg.seed if cfg.data.seed is None else cfg.data.seed


def from_dict(data: dict, source: str = "config") -> Config:
    """Build and validate a :class:`Config` from a nested dict (missing keys keep their defaults)."""
    return validate(from_dict_unchecked(data, source), source)


def from_dict_unchecked(data: dict, source: str = "config") -> Config:
    """A :class:`Config` from a nested dict, keys and value types checked (naming ``source``), ranges not."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        return build(Config, data, "")
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def load(path: str | Path) -> Config:
    """Load a YAML config file; unknown or repeated keys, YAML syntax errors and bad values raise
    :class:`ConfigError` naming the file (and the line, for YAML problems)."""
    return from_dict(read_yaml_file(path), str(path))


def load_all(paths: list[str | Path]) -> Config:
    """Compose config files: each later file overrides the earlier ones key by key (a dataset config, then a
    model overlay such as ``configs/models/din.yaml``); one file is :func:`load`.

    Each file is checked on its own first (YAML, unknown keys, value types: the error names that file); the
    merged config is then validated as a whole (naming the files joined by ``+``)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return load(paths[0])
    merged: dict = {}
    for path in paths:
        data = read_yaml_file(path)
        from_dict_unchecked(data, str(path))
        merged = merge(merged, data or {})
    return from_dict(merged, " + ".join(str(p) for p in paths))


def with_overrides(cfg: Config, overrides: Mapping[str, Any] | Sequence[str], source: str | None = None) -> Config:
    """A copy of ``cfg`` with dotted keys changed, validated as a whole (once, after every change; later items
    win). The library's way to change a config: ``dataclasses.replace`` skips validation.

    ``overrides`` is either a mapping of dotted keys to Python values, e.g.
    ``with_overrides(cfg, {"classifier.keep_fraction": 0.5, "finetune.trainable": ["dense", "user"]})``
    (each value checked against its field's type as a YAML value is; a mapping for a section changes the keys it
    names), or command-line items ``["finetune.steps=200", ...]`` (each value read by its field's declared type
    with :func:`parse_value`, not as YAML). An unknown key, a wrong type or an out-of-range value raises
    :class:`ConfigError` naming ``source`` (default ``with_overrides``, ``--set`` for items) and the key."""
    if isinstance(overrides, Mapping):
        where = source or "with_overrides"
        return from_dict(apply_values(Config, to_dict(cfg), overrides, where), where)
    if isinstance(overrides, str):
        raise ConfigError(f"{source or '--set'}: overrides must be a mapping or a list of KEY=VALUE items, "
                          f"got the string {overrides!r}")
    where = source or "--set"
    return from_dict(apply_overrides(Config, to_dict(cfg), list(overrides), where), where)
