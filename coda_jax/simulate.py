"""One simulation run, stage by stage: data -> cloud stage (:mod:`coda_jax.cloud.stage`: pretrain, sample vectors,
coarse matching, random rows) -> compiled device stage over chunks of users (:mod:`coda_jax.device.engine`) ->
:class:`~coda_jax.results.Results` (per-user AUC, paired differences, overhead, known-answer references).
This module only orders the stages and assembles the results."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from coda_jax import overhead
from coda_jax.cloud.output import CloudOutput
from coda_jax.cloud.pretrain import init_params
from coda_jax.cloud.stage import CLOUD_SECTIONS, cloud_key, cloud_stage, random_rows
from coda_jax.config import Config, ConfigError, check_memory, to_dict
from coda_jax.config_points import check_configs
from coda_jax.data.dataset import Dataset, make_dataset
from coda_jax.device.engine import device_keys, run_device_stage
from coda_jax.device.methods import anchor, get_method, matched_rows_per_user, run_methods
from coda_jax.device.multihost import run_device_stage_processes
from coda_jax.device.output import DeviceOutput
from coda_jax.evaluate import paired_bootstrap
from coda_jax.models import make_model, param_group
from coda_jax.planted import references
from coda_jax.provenance import provenance, utc_now
from coda_jax.resources import memory_report
from coda_jax.results import Results
from coda_jax.timing import Timer

__all__ = ["CLOUD_SECTIONS", "CloudOutput", "Results", "assemble_results", "check_trainable", "cloud_key",
           "cloud_stage", "device_keys", "random_rows", "run_device_stage", "simulate", "simulate_points"]


def run_matched_rows(cfg: Config) -> int:
    """Rows per matched user the chunks of a run of ``cfg`` carry (its methods' registry entries say; for
    :func:`~coda_jax.config.check_memory`)."""
    return matched_rows_per_user(cfg, tuple(get_method(m) for m in cfg.methods))


def check_trainable(cfg: Config, data: Dataset) -> None:
    """Every ``finetune.trainable`` entry must name a parameter group or a top-level parameter of the model
    (checked on parameter shapes only, before any training), and a group the data can move: genre weights on
    data without genres are only the padding row, so fine-tuning them would change nothing and every method
    would score as the cloud model."""
    table = data.table
    model = make_model(cfg.model, table.num_users, table.num_items, table.num_genres, table.num_profiles)
    params = jax.eval_shape(lambda: init_params(model, table, cfg.seed))
    names = set(params) | {param_group(k) for k in params}
    for entry in cfg.finetune.trainable:
        if entry not in names:
            raise ConfigError(f"finetune.trainable: {entry!r} is neither a parameter group nor a top-level "
                              f"parameter of model {cfg.model.name!r}; known: {', '.join(sorted(names))}")
        if table.num_genres == 0 and (entry == "genre" or (entry in params and param_group(entry) == "genre")):
            raise ConfigError(f"finetune.trainable: {entry!r} names genre weights, but the data ({table.name}) has "
                              "no genres, so fine-tuning them changes nothing (every method would score as "
                              "global); train other groups (dense, user, item) or give the items genres")


def with_run_methods(cfg: Config, data: Dataset) -> Config:
    """``cfg`` with the lanes its run has (:func:`coda_jax.methods.run_methods`): the listed methods, the
    ``coarse-subset`` control when coda runs, and the ``oracle-filter`` (``-fresh``) reference lanes a planted
    world (with a shift) supports."""
    world = data.table.planted
    shift = world is not None and bool(np.any(np.asarray(world.shift) != 0))
    try:
        methods = run_methods(tuple(cfg.methods), world is not None, shift)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    return dataclasses.replace(cfg, methods=methods)


def simulate(cfg: Config, data: Dataset | None = None, show_progress: bool = True,
             cloud: CloudOutput | None = None) -> Results:
    """Run CoDA and the baselines end to end and return the :class:`Results`.

    Args:
      cfg: the run configuration (``Config()`` is the embedded synthetic default).
      data: an already built dataset (otherwise built from ``cfg.data``).
      show_progress: show progress bars on stderr.
      cloud: the :class:`~coda_jax.cloud.output.CloudOutput` of :func:`cloud_stage` for this dataset and config,
        to reuse across runs that differ only in device-side settings (see :func:`cloud_key`).
    """
    return simulate_points([cfg], data, show_progress, cloud)[0]


def simulate_points(cfgs: list[Config], data: Dataset | None = None, show_progress: bool = True,
                    cloud: CloudOutput | None = None, compiler=None) -> list[Results]:
    """Run several configs that differ only in traced numbers (learning rates, weights, keep fraction, ...)
    as the lanes of one compiled device stage, on one dataset and cloud stage; one :class:`Results` each.

    The shared stages' timings are reported in every result; ``timings["device_stage"]`` is the one
    program's time for all points together.
    """
    cfgs = check_configs(list(cfgs), "simulate_points" if len(cfgs) > 1 else "simulate")
    cfg = cfgs[0]
    for c in cfgs:                    # before any work: a run too big for this machine is refused, naming the key
        check_memory(c, matched_rows=run_matched_rows(c))
    started_at = utc_now()
    timer = Timer()
    with timer("data"):
        data = data if data is not None else make_dataset(cfg)
    check_trainable(cfg, data)
    given, cfgs = cfgs, [with_run_methods(c, data) for c in cfgs]
    cfg = cfgs[0]
    if cloud is None:
        cloud = cloud_stage(cfg, data, show_progress)
    timer.timings.update(cloud.timings)
    with timer("device_stage"):
        dev = run_device_stage_processes(cfgs, data, cloud, show_progress, compiler)
    timer.timings.update({"device_stage_compile": dev.compile.seconds,
                          "device_stage_execute": timer.timings["device_stage"] - dev.compile.seconds,
                          "device_stage_compiles": dev.compile.compiles,
                          "device_stage_cache_hits": dev.compile.cache_hits})
    out = []
    for p, c in enumerate(cfgs):
        start = time.perf_counter()
        res = assemble_results(c, data, cloud, dev.point(p), dict(timer.timings))
        res.config = to_dict(given[p])   # as given: a rerun or resumed sweep matches it (lanes added are in methods)
        res.timings["results"] = time.perf_counter() - start    # references, overhead, bootstrap intervals
        res.memory = memory_report()
        res.provenance = provenance(started_at)
        out.append(res)
    return out


def method_rows(cfg: Config, data: Dataset, dev: DeviceOutput) -> tuple[dict, dict]:
    """Every method's row of ``Results.methods`` and the anchor's (``eval.anchor``, coda by default) paired
    differences against the others, from one sweep point's device output ``dev`` (``auc`` [1, R, M, S])."""
    methods_list = tuple(m.name for m in dev.methods)
    has_labels = dev.valid
    user_ids = data.table.user_ids[data.users]
    auc, repeats, nonfinite = dev.auc_mean[0], dev.auc[0], dev.nonfinite[0]
    valid = has_labels[None, :] & np.isfinite(auc)                     # [M, S]: a diverged user is not valid
    methods = {}
    aug_rows = dev.aug_rows[0].mean(axis=0)                            # [M, S]: the mean over repeats
    for i, name in enumerate(methods_list):
        a, v = auc[i], valid[i]
        methods[name] = {"auc": float(np.mean(a[v])) if v.any() else float("nan"), "users": int(v.sum()),
                         "per_user": {str(uid): float(x) for uid, x in zip(user_ids[v], a[v])},
                         "per_user_aug_rows": {str(uid): float(x) for uid, x in zip(user_ids[v], aug_rows[i][v])},
                         "nonfinite_logits": int(nonfinite[:, i].sum()),
                         "diverged_users": int((has_labels & (nonfinite[:, i] > 0).any(axis=0)).sum())}
        if dev.methods[i].reference:     # reads the planted answer: a reference row, not a method
            methods[name].update(reference=True, what=dev.methods[i].description)
        if cfg.eval.repeats > 1:       # the user-averaged AUC of each repeat: the spread the mean removes
            methods[name]["per_repeat_auc"] = [float(np.mean(r[i][valid[i] & np.isfinite(r[i])]))
                                               if (valid[i] & np.isfinite(r[i])).any() else float("nan")
                                               for r in repeats]
    comparisons = {}
    first = anchor(dev.methods, cfg.eval.anchor)        # the paired differences are anchor - method
    if first is not None:
        ci = dev.methods.index(first)
        for i, name in enumerate(methods_list):
            if i != ci:
                both = valid[ci] & valid[i]
                comparisons[name] = paired_bootstrap(auc[ci][both], auc[i][both], cfg.eval.bootstrap,
                                                     cfg.eval.confidence, cfg.seed)
    return methods, comparisons


def assemble_results(cfg: Config, data: Dataset, cloud: CloudOutput, dev: DeviceOutput, timings: dict) -> Results:
    """The :class:`Results` of one config from its dataset, cloud stage and one sweep point's device output
    (``dev.point(p)``: ``auc`` [1, R, M, S])."""
    rows, user_ids = cloud.rows, data.table.user_ids[data.users]
    methods, comparisons = method_rows(cfg, data, dev)
    augmentation = {"local_rows": float(rows.counts("local").mean())}
    augmentation.update({m.name: float(dev.aug_rows[0][:, i].mean()) for i, m in enumerate(dev.methods)})
    retrieval = dict(cloud.retrieval, device_stage_compiles=dev.compile.compiles,
                     device_stage_shapes=dev.compile.shapes, lanes=dev.compile.lanes)
    ovh = overhead.estimate(cfg, data, cloud, dev)
    # Known answers (planted world / two-cutoff split): reference rows and diagnostics, see coda_jax.planted.
    refs = references(cfg, data, cloud, dev, methods)
    methods.update(refs.rows)
    comparisons.update(refs.comparisons)
    has_labels = dev.valid
    return Results(config=to_dict(cfg), methods=methods, comparisons=comparisons, augmentation=augmentation,
                   retrieval=retrieval, timings=timings, overhead=ovh, diagnostics=refs.diagnostics,
                   data=dict(data.info, per_user_test_rows=_per_user(user_ids, rows.counts("test"), has_labels),
                             per_user_local_rows=_per_user(user_ids, rows.counts("local"), has_labels)))


def _per_user(user_ids: np.ndarray, counts: np.ndarray, keep: np.ndarray) -> dict[str, int]:
    """``{dataset user id: count}`` of the simulated users ``keep`` (bool [S]; ``counts`` int [S])."""
    return {str(uid): int(n) for uid, n in zip(user_ids[keep], counts[keep])}
