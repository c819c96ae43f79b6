"""Orchestrate one simulation run: data -> cloud pretrain -> sample vectors -> coarse matching -> vmapped
device stage in chunks -> per-user AUC -> results. Python loops here go over stages and chunks only."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from coda_jax import overhead
from coda_jax.cloud.pretrain import init_params, pretrain, sample_vectors
from coda_jax.cloud.matching import candidates_from_users, match_users, pool_by_user, users_from_candidates
from coda_jax.cloud.retrieval import Candidates, coarse_match, make_searcher
from coda_jax.cloud.search import report_line, search_report
from coda_jax.config import Config, ConfigError, to_dict
from coda_jax.data.dataset import Dataset, make_dataset
from coda_jax.data.packing import csr_from_owner
from coda_jax.device.chunk import UserRows
from coda_jax.device.engine import run_chunks
from coda_jax.device.settings import TRACED_FIELDS, StageNumbers, structure
from coda_jax.evaluate import paired_bootstrap
from coda_jax.models import make_model, param_group
from coda_jax.planted import add_references


@dataclasses.dataclass
class Results:
    """What a run produced.

    Attributes:
      config: the run's config as a dict.
      methods: method name -> ``{"auc": user-averaged AUC, "users": users evaluated,
        "per_user": {dataset user id: AUC}}``.
      comparisons: other method -> paired ``coda - other`` difference ``{"mean", "low", "high"}``.
      augmentation: method -> mean augmented rows per simulated user; plus ``local_rows`` (mean local rows).
      retrieval: ScaNN / exact recall and candidate counts.
      timings: stage name -> seconds.
      overhead: per-device bytes down / up, storage and FLOPs (means over simulated users).
      data: dataset counts.
      diagnostics: figures of runs with a known answer (planted world, two-cutoff split; see
        :mod:`coda_jax.planted`): own-group shares of augmented rows, the share of the global-to-group-oracle gap
        coda closes. Reference rows (``"reference": True``) are in ``methods``.
    """

    config: dict
    methods: dict
    comparisons: dict
    augmentation: dict
    retrieval: dict
    timings: dict
    overhead: dict
    data: dict
    diagnostics: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, out_dir: str | Path) -> Path:
        """Write ``results.json`` into ``out_dir`` (created if needed) atomically, as strict JSON (NaN and
        infinities as ``null``); returns its path. A failed write leaves an earlier ``results.json`` intact."""
        from coda_jax.results_io import write_json_atomic  # noqa: PLC0415

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        return write_json_atomic(out / "results.json", self.to_json())

    def table(self) -> str:
        """The terminal summary: per-method AUC, users, mean local and augmented rows, and coda's paired
        differences with bootstrap intervals."""
        lines = [f"{'method':<14}{'AUC':>8}{'users':>7}{'local rows':>12}{'aug rows':>10}   coda - method [95% CI]"]
        flag = {name: "  <- diverged" for name, m in self.methods.items() if m.get("diverged_users")}
        for name, m in self.methods.items():
            cmp = self.comparisons.get(name)
            diff = "" if cmp is None else f"   {cmp['mean']:+.4f} [{cmp['low']:+.4f}, {cmp['high']:+.4f}]"
            if m.get("reference"):
                lines.append(f"{name:<14}{m['auc']:>8.4f}{m['users']:>7d}{'reference':>22}{diff}")
                continue
            lines.append(f"{name:<14}{m['auc']:>8.4f}{m['users']:>7d}{self.augmentation['local_rows']:>12.1f}"
                         f"{self.augmentation.get(name, 0.0):>10.1f}{diff}{flag.get(name, '')}")
        repeats = self.config.get("eval", {}).get("repeats", 1)
        if repeats > 1:
            lines.append(f"each user's AUC is the mean over {repeats} device-stage repeats; user-averaged AUC per "
                         "repeat: " + "; ".join(f"{name} {min(m['per_repeat_auc']):.4f}-{max(m['per_repeat_auc']):.4f}"
                                               for name, m in self.methods.items()))
        share = self.diagnostics.get("own_group_share")
        if share:
            lines.append("own-group share of augmented rows: " + ", ".join(
                f"{k} {v:.3f}" for k, v in share.items()))
        if self.diagnostics.get("gap_closed") is not None:
            lines.append(f"coda closes {self.diagnostics['gap_closed']:.1%} of the global to group-oracle gap")
        r = self.retrieval
        if report_line(r):
            lines.append(report_line(r))
        diverged = [f"{name} ({m['diverged_users']} users)" for name, m in self.methods.items()
                    if m.get("diverged_users")]
        if diverged:
            lines.append("DIVERGED: non-finite test scores (those users are not scored): " + ", ".join(diverged))
        lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in self.timings.items()))
        return "\n".join(lines)


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Span:
            def __enter__(self):
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.timings[name] = timer.timings.get(name, 0.0) + time.perf_counter() - self.t

        return _Span()


def random_rows(pool_rows: np.ndarray, row_user: np.ndarray, users: np.ndarray, count: int,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random pool rows per simulated user, none of them its own, in random order.

    Returns a CSR ``(offsets [S + 1], rows)``; a user keeps fewer than ``count`` only when the redraws keep
    hitting its own rows (a pool dominated by that user).
    """
    rng = np.random.default_rng(seed)
    draw = pool_rows[rng.integers(0, len(pool_rows), size=(len(users), count))]
    for _ in range(8):                                   # redraw own rows; rare
        own = row_user[draw] == users[:, None]
        if not own.any():
            break
        draw[own] = pool_rows[rng.integers(0, len(pool_rows), size=int(own.sum()))]
    keep = row_user[draw] != users[:, None]
    owner = np.broadcast_to(np.arange(len(users))[:, None], draw.shape)[keep]
    return csr_from_owner(owner, draw[keep], len(users))


def cloud_stage(cfg: Config, data: Dataset, show_progress: bool = True):
    """Pretrain the global model and run coarse matching for every simulated user.

    Returns ``(model, params, vectors [N, D], UserRows, report)``; ``report`` holds retrieval figures and
    ``timings`` of the cloud's stages.
    """
    timer = _Timer()
    table = data.table
    model = make_model(cfg.model, table.num_users, table.num_items, table.num_genres)
    pool = np.flatnonzero(data.pool)
    with timer("cloud_pretrain"):
        params, losses = pretrain(model, table, np.flatnonzero(data.cloud_rows), cfg.cloud, cfg.seed, show_progress)
    with timer("sample_vectors"):
        vectors = sample_vectors(model, params, table, center_rows=pool)
    sim_index = np.full(table.num_users, -1)
    sim_index[data.users] = np.arange(len(data.users))
    local_rows = np.flatnonzero(data.train & (sim_index[table.user] >= 0))
    r_cfg = cfg.retrieval
    pool_lists = pool_by_user(table.user, pool, table.num_users)
    report = {"backend": None, "matching": r_cfg.matching, "k": min(r_cfg.neighbors, len(pool)),
              "recall_at_k": None, "recall_queries": 0, "pool_rows": int(len(pool)),
              "queries": int(len(local_rows)), "cloud_train_loss": losses}
    if r_cfg.matching == "sample":
        with timer("index_build"):
            searcher = make_searcher(vectors[pool], r_cfg, cfg.seed, queries=len(local_rows))
        with timer("coarse_match"):
            cands: Candidates = coarse_match(searcher, vectors, pool, table.user, local_rows,
                                             sim_index[table.user[local_rows]], len(data.users), r_cfg,
                                             row_item=table.item)
            matched, _ = users_from_candidates(cands, table.user, r_cfg.matched_users)
        with timer("recall_check"):
            report.update(search_report(searcher, vectors, report["k"], r_cfg.recall_queries, cfg.seed, local_rows))
    else:
        with timer("coarse_match"):
            matched, sim = match_users(r_cfg, params, vectors, table.item, table.num_items, pool_lists,
                                       data.users, r_cfg.matched_users, cfg.seed + 3, report=report)
            cands = candidates_from_users(matched, sim, pool_lists, r_cfg.max_candidates)
    report["mean_candidates"] = float(cands.counts().mean())
    report["mean_matched_users"] = float((matched >= 0).sum(axis=1).mean())
    heldout_rows = np.flatnonzero(data.heldout & (sim_index[table.user] >= 0))
    rows = UserRows(
        local=csr_from_owner(sim_index[table.user[local_rows]], local_rows, len(data.users)),
        candidates=(cands.offsets, cands.rows),
        random=random_rows(pool, table.user, data.users, cfg.retrieval.max_candidates, cfg.seed + 1),
        test=csr_from_owner(sim_index[table.user[heldout_rows]], heldout_rows, len(data.users)),
        matched_users=matched, pool=pool_lists)
    report["timings"] = timer.timings
    return model, params, vectors, rows, report


def device_keys(cfg: Config) -> jax.Array:
    """The device keys of a run, one per repeat: [R] (repeat 0 is the key a single-repeat run uses)."""
    key = jax.random.PRNGKey(cfg.seed + 2)
    return jnp.stack([key] + [jax.random.fold_in(key, r) for r in range(1, cfg.eval.repeats)])


def run_device_stage(cfg: Config | list[Config], data: Dataset, model, params, vectors: np.ndarray, rows: UserRows,
                     show_progress: bool = True, compiler=None, devices: list | None = None) -> dict:
    """Run the compiled device stage over all simulated users (see :func:`coda_jax.device.engine.run_chunks`).

    ``cfg`` may be a list of P configs that differ only in traced numbers (:data:`~coda_jax.device.settings.
    TRACED_FIELDS`): they run as the sweep-point lanes of one program. Each repeat (``eval.repeats``, R) uses
    an independent device key. ``devices``: the devices the user axis is split over (default: all JAX sees;
    ``jax.local_devices()`` for one process of a multi-host run).

    Returns :func:`~coda_jax.device.engine.run_chunks`'s dict (arrays [P, R, M, S] over simulated users in
    ``data.users`` order) plus ``auc_mean`` [P, M, S] (the mean over repeats).
    """
    cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg]
    base = structure(cfgs[0])
    for i, c in enumerate(cfgs[1:], start=1):
        if structure(c) != base:
            raise ValueError(f"run_device_stage: config {i} differs from config 0 in more than the traced numbers "
                             f"({', '.join(TRACED_FIELDS)})")
    dev = run_chunks(cfgs[0], data, model, params, vectors, rows, StageNumbers.stack(cfgs), device_keys(cfgs[0]),
                     show_progress, compiler, devices)
    dev["auc_mean"] = dev["auc"].mean(axis=1)
    return dev


def check_trainable(cfg: Config, data: Dataset) -> None:
    """Every ``finetune.trainable`` entry must name a parameter group or a top-level parameter of the model
    (checked on parameter shapes only, before any training)."""
    table = data.table
    model = make_model(cfg.model, table.num_users, table.num_items, table.num_genres)
    params = jax.eval_shape(lambda: init_params(model, table, cfg.seed))
    names = set(params) | {param_group(k) for k in params}
    for entry in cfg.finetune.trainable:
        if entry not in names:
            raise ConfigError(f"finetune.trainable: {entry!r} is neither a parameter group nor a top-level "
                              f"parameter of model {cfg.model.name!r}; known: {', '.join(sorted(names))}")


CLOUD_SECTIONS = ("seed", "data", "synthetic", "model", "cloud", "retrieval")
"""Config sections the dataset and the cloud stage depend on; runs that differ elsewhere can share them."""


def cloud_key(cfg: Config) -> str:
    """A key equal for two configs exactly when their dataset and cloud stage are the same."""
    d = to_dict(cfg)
    return json.dumps({k: d[k] for k in CLOUD_SECTIONS}, sort_keys=True)


def simulate(cfg: Config, data: Dataset | None = None, show_progress: bool = True,
             cloud: tuple | None = None) -> Results:
    """Run CoDA and the baselines end to end and return the :class:`Results`.

    Args:
      cfg: the run configuration (``Config()`` is the embedded synthetic default).
      data: an already built dataset (otherwise built from ``cfg.data``).
      show_progress: show progress bars on stderr.
      cloud: the output of :func:`cloud_stage` for this dataset and config, to reuse across runs that
        differ only in device-side settings (see :func:`cloud_key`).
    """
    return simulate_points([cfg], data, show_progress, cloud)[0]


def simulate_points(cfgs: list[Config], data: Dataset | None = None, show_progress: bool = True,
                    cloud: tuple | None = None, compiler=None) -> list[Results]:
    """Run several configs that differ only in traced numbers (learning rates, weights, keep fraction, ...)
    as the lanes of one compiled device stage, on one dataset and cloud stage; one :class:`Results` each.

    The shared stages' timings are reported in every result; ``timings["device_stage"]`` is the one
    program's time for all points together.
    """
    cfg = cfgs[0]
    timer = _Timer()
    with timer("data"):
        data = data if data is not None else make_dataset(cfg)
    check_trainable(cfg, data)
    if cloud is None:
        cloud = cloud_stage(cfg, data, show_progress)
    model, params, vectors, rows, retrieval = cloud
    retrieval = dict(retrieval)
    timer.timings.update(retrieval.pop("timings", {}))
    with timer("device_stage"):
        dev = run_device_stage(cfgs, data, model, params, vectors, rows, show_progress, compiler)
    timer.timings.update({"device_stage_compile": dev["compile_seconds"], "device_stage_compiles": dev["compiles"],
                          "device_stage_cache_hits": dev["cache_hits"]})
    out = []
    for p, c in enumerate(cfgs):
        point = {k: dev[k][p] for k in ("auc", "auc_mean", "aug_rows", "nonfinite", "kept", "kept_mask")}
        out.append(assemble_results(c, data, model, params, vectors, rows, retrieval, dict(timer.timings), dev,
                                    point))
    return out


def assemble_results(cfg: Config, data: Dataset, model, params, vectors, rows: UserRows, retrieval: dict,
                     timings: dict, dev: dict, point: dict) -> Results:
    """The :class:`Results` of one config from its device-stage arrays ``point`` (``auc`` [R, M, S],
    ``auc_mean`` / ``aug_rows`` [M, S] or [R, M, S], ``nonfinite`` [R, M, S], ``kept`` [R, S])."""
    methods_list = tuple(cfg.methods)
    has_labels = dev["valid"]
    user_ids = data.table.user_ids[data.users]
    auc = point["auc_mean"]
    valid = has_labels[None, :] & np.isfinite(auc)                     # [M, S]: a diverged user is not valid
    methods = {}
    for i, name in enumerate(methods_list):
        a, v = auc[i], valid[i]
        methods[name] = {"auc": float(np.mean(a[v])) if v.any() else float("nan"), "users": int(v.sum()),
                         "per_user": {str(uid): float(x) for uid, x in zip(user_ids[v], a[v])},
                         "nonfinite_logits": int(point["nonfinite"][:, i].sum()),
                         "diverged_users": int((has_labels & (point["nonfinite"][:, i] > 0).any(axis=0)).sum())}
        if cfg.eval.repeats > 1:       # the user-averaged AUC of each repeat: the spread the mean removes
            methods[name]["per_repeat_auc"] = [float(np.mean(r[i][valid[i] & np.isfinite(r[i])]))
                                               if (valid[i] & np.isfinite(r[i])).any() else float("nan")
                                               for r in point["auc"]]
    comparisons = {}
    if "coda" in methods_list:
        ci = methods_list.index("coda")
        for i, name in enumerate(methods_list):
            if name != "coda":
                both = valid[ci] & valid[i]
                comparisons[name] = paired_bootstrap(auc[ci][both], auc[i][both], cfg.eval.bootstrap,
                                                     cfg.eval.confidence, cfg.seed)
    kept = point["kept"].mean(axis=0)
    augmentation = {"local_rows": float(rows.counts("local").mean())}
    augmentation.update({name: float(point["aug_rows"][:, i].mean()) for i, name in enumerate(methods_list)})
    retrieval = dict(retrieval, device_stage_compiles=dev["compiles"], device_stage_shapes=dev["shapes"],
                     lanes=dev["lanes"])
    ovh = overhead.estimate(cfg, data, model, params, vectors, rows, kept, dev["vocab_size"], dev["user_rows"])
    # Known answers (planted world / two-cutoff split): reference rows and diagnostics, see coda_jax.planted.
    diagnostics = add_references(cfg, data, model, params, vectors, rows, has_labels, methods, comparisons,
                                 kept=point["kept_mask"][0])
    return Results(config=to_dict(cfg), methods=methods, comparisons=comparisons, augmentation=augmentation,
                   retrieval=retrieval, timings=timings, overhead=ovh, data=data.info, diagnostics=diagnostics)
