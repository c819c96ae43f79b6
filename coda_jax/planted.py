"""Reference rows and diagnostics of a run whose answer is (partly) known.

* Planted synthetic world (:mod:`coda_jax.data.synthetic`): per-user AUC of the reference scorers ``oracle``,
  ``group-oracle``, ``stale-oracle``, ``mixture``, ``popularity`` on the same held-out rows and users as the
  methods, and the share of each user's augmented rows that come from its own group, for random rows, coarse
  candidates and the candidates the sample classifier kept (this checks the classifier directly).
* Two-cutoff split (any dataset): ``global-fresh``, a cloud model retrained on every row before T1 (a ceiling a
  real system cannot have at that moment; ``global`` is the stale, deployed model).

Every reference row in ``Results.methods`` carries ``"reference": True``; it is not a method a device can run.
"""

from __future__ import annotations

import dataclasses
import time
import warnings

import numpy as np

from coda_jax.cloud.pretrain import predict, pretrain
from coda_jax.cloud.stage import cloud_key
from coda_jax.config import Config
from coda_jax.data.dataset import Dataset
from coda_jax.data.packing import pad_rows
from coda_jax.data.profile import bayes_filter_auc
from coda_jax.data.synthetic import REFERENCES, reference_logits
from coda_jax.device.methods import anchor
from coda_jax.evaluate import grouped_auc, paired_bootstrap


def per_user_auc(scores: np.ndarray, table, test: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Per-user AUC of ``scores`` (float [N] over table rows) on each simulated user's test rows (CSR):
    float [S], NaN where undefined (:func:`coda_jax.evaluate.grouped_auc`: no padding to the longest user)."""
    offsets, flat = test
    owner = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    return grouped_auc(owner, scores[flat], table.label[flat], len(offsets) - 1)


def _reference_entry(auc: np.ndarray, valid: np.ndarray, user_ids: np.ndarray, what: str) -> dict:
    v = valid & np.isfinite(auc)
    return {"auc": float(np.mean(auc[v])) if v.any() else float("nan"), "users": int(v.sum()),
            "per_user": {str(uid): float(x) for uid, x in zip(user_ids[v], auc[v])},
            "reference": True, "what": what}


REFERENCE_WHAT = {
    "oracle": "the true click logit",
    "group-oracle": "the true logit without the personal offset (the best a group-level model can know)",
    "stale-oracle": "the group model before the shift (the best a cloud model trained before it can know)",
    "mixture": "the mean click probability over groups (a model that cannot tell groups apart)",
    "popularity": "item popularity only",
    "global-fresh": "the cloud model retrained on every row before T1 (not available to a real system then)",
}


def reference_scores(cfg: Config, data: Dataset, model, test_rows: np.ndarray, show_progress: bool = False) -> dict:
    """Scores of every reference that applies, on ``test_rows`` (int [n]): ``{name: float [N]}`` over table
    rows (rows outside ``test_rows`` hold 0)."""
    table = data.table
    out = {}
    if table.planted is not None:
        refs = reference_logits(table.planted, table.user_ids[table.user[test_rows]], table.item[test_rows],
                                table.time[test_rows])
        for name in REFERENCES:
            full = np.zeros(len(table))
            full[test_rows] = refs[name]
            out[name] = full
    if data.cloud_train is not None and cfg.data.fresh_reference:
        fresh_rows = np.flatnonzero(data.cloud_train | data.train)
        params, _ = pretrain(model, table, fresh_rows, cfg.cloud, cfg.seed, show_progress)
        logits, _ = predict(model, params, table.features(test_rows))
        full = np.zeros(len(table))
        full[test_rows] = logits
        out["global-fresh"] = full
    return out


# ----------------------------------------------------------------------------- own-group shares


def _padded(csr: tuple[np.ndarray, np.ndarray], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    offsets, flat = csr
    n = len(offsets) - 1
    w = width or max(int(np.diff(offsets).max()) if n else 1, 1)
    return pad_rows(offsets, flat, np.arange(n), w)


def own_group_shares(data: Dataset, rows, kept: np.ndarray | None = None) -> dict:
    """Mean over simulated users of the share of their random rows, coarse candidates and kept candidates whose
    owners are in the user's own planted group (users with none of a kind are skipped). ``1 / groups`` is
    chance. ``kept``: bool [S, >= candidate width], which candidates (in ``rows.candidates`` order) each
    user's classifier kept in the device stage (repeat 0); None: no kept share."""
    table = data.table
    world = table.planted
    group_of_row = world.group[table.user_ids[table.user]]
    own_group = world.group[table.user_ids[data.users]]

    def share(index, mask):
        same = (group_of_row[index] == own_group[:, None]) & mask
        n = mask.sum(axis=1)
        ok = n > 0
        return float(np.mean(same.sum(axis=1)[ok] / n[ok])) if ok.any() else float("nan")

    r_idx, r_mask = _padded(rows.random)
    c_idx, c_mask = _padded(rows.candidates)
    out = {"chance": 1.0 / world.num_groups, "random": share(r_idx, r_mask), "candidates": share(c_idx, c_mask)}
    if kept is not None:
        out["kept"] = share(c_idx, c_mask & kept[:, :c_idx.shape[1]])
    return out


def _nanmean(x: np.ndarray, axis=None):
    with warnings.catch_warnings():                 # an all-NaN slice (a user with no augmented row) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _summary(per_user: np.ndarray, cfg: Config) -> dict:
    ok = np.isfinite(per_user)
    out = paired_bootstrap(per_user[ok], np.zeros(int(ok.sum())), cfg.eval.bootstrap, cfg.eval.confidence, cfg.seed)
    return dict(out, users=int(ok.sum()))


def filter_diagnostics(cfg: Config, data: Dataset, dev) -> dict:
    """How well the fine filter worked, on a planted world (``{}`` elsewhere): ``kept_own_share`` {method:
    mean over valid users of the own-group share of its augmented rows} for every method that augments, and
    ``classifier_auc`` {``own_vs_other``, and ``fresh_vs_stale`` where the world has a shift: the mean over
    users of the classifier's per-user AUC on its candidates, with a bootstrap interval over users}.

    Args:
      dev: one sweep point's :class:`~coda_jax.device.output.DeviceOutput`: ``valid`` bool [S] the evaluated
        users, ``aug_own`` float [1, R, M, S] (NaN where a method used no row), ``classifier_auc`` float
        [1, R, 2, S] (NaN where a user's candidates are of one kind).
    """
    world = data.table.planted
    if world is None:
        return {}
    valid, aug_own, classifier_auc = dev.valid, dev.aug_own[0], dev.classifier_auc[0]
    share = _nanmean(np.where(valid[None, None], aug_own, np.nan), axis=0)               # [M, S] over repeats
    shares = {m.name: float(_nanmean(share[i])) for i, m in enumerate(dev.methods) if np.isfinite(share[i]).any()}
    auc = _nanmean(np.where(valid[None, None], classifier_auc, np.nan), axis=0)         # [2, S]
    out = {"kept_own_share": shares, "classifier_auc": {"own_vs_other": _summary(auc[0], cfg)}}
    if getattr(cfg.synthetic, "profile", False):        # the attribute-only Bayes filter's AUC (coda_jax.data.profile)
        out["classifier_auc"]["own_vs_other"]["bayes"] = bayes_filter_auc(cfg.synthetic.profile_signal,
                                                                          cfg.synthetic.num_user_groups)["mean"]
    if np.any(np.asarray(world.shift) != 0):
        out["classifier_auc"]["fresh_vs_stale"] = _summary(auc[1], cfg)
    return out


# ----------------------------------------------------------------------------- the hook

_LAST: dict = {}


def _cached_scores(cfg: Config, data: Dataset, model, test_rows: np.ndarray) -> dict:
    """:func:`reference_scores`, computed once for the sweep points of one dataset and cloud stage (the points of
    :func:`coda_jax.simulate.simulate_points` share both; ``global-fresh`` retrains a cloud model)."""

    key = (cloud_key(cfg), len(test_rows))
    if _LAST.get("data") is not data or _LAST.get("key") != key:
        _LAST.clear()
        _LAST.update(data=data, key=key, scores=reference_scores(cfg, data, model, test_rows))
    return _LAST["scores"]


@dataclasses.dataclass(frozen=True)
class References:
    """The reference step's output: ``rows`` (name -> a ``Results.methods`` row with ``"reference": True``),
    ``comparisons`` (name -> paired ``anchor - reference`` difference, when the run lists the anchor,
    ``eval.anchor``) and ``diagnostics``."""

    rows: dict = dataclasses.field(default_factory=dict)
    comparisons: dict = dataclasses.field(default_factory=dict)
    diagnostics: dict = dataclasses.field(default_factory=dict)


def references(cfg: Config, data: Dataset, cloud, dev, methods: dict) -> References:
    """The reference rows that apply to a run, their paired differences against coda, and the diagnostics
    (empty when nothing applies).

    Args:
      cloud: the run's :class:`~coda_jax.cloud.output.CloudOutput`; dev: one sweep point's
        :class:`~coda_jax.device.output.DeviceOutput` (``valid`` [S]: the methods' users; repeat 0's kept
        candidates go into the own-group shares).
      methods: the run's method rows (``Results.methods``), read for the anchor's (coda's) AUC and that of the
        method that does not fine-tune (global).
    """
    table, rows, valid = data.table, cloud.rows, dev.valid
    if table.planted is None and data.cloud_train is None:
        return References()
    t = time.perf_counter()
    user_ids = table.user_ids[data.users]
    scores = _cached_scores(cfg, data, cloud.model, rows.test[1])
    per_user, out, comparisons = {}, {}, {}
    for name, s in scores.items():
        auc = per_user_auc(s, table, rows.test)
        per_user[name] = auc
        out[name] = _reference_entry(auc, valid, user_ids, REFERENCE_WHAT[name])
    diagnostics: dict = {}
    first = anchor(dev.methods, cfg.eval.anchor)      # paired anchor - reference differences (eval.anchor)
    if first is not None and "per_user" in methods[first.name]:
        base = methods[first.name]["per_user"]
        anchor_auc = np.array([base.get(str(u), np.nan) for u in user_ids])
        for name, auc in per_user.items():
            both = np.isfinite(anchor_auc) & np.isfinite(auc) & valid
            comparisons[name] = paired_bootstrap(anchor_auc[both], auc[both], cfg.eval.bootstrap,
                                                 cfg.eval.confidence, cfg.seed)
    coda = anchor(dev.methods)                         # the method the registry marks as CoDA's own
    if coda is not None and "per_user" in methods[coda.name]:
        baseline = next((m.name for m in dev.methods if not m.finetunes), None)
        if baseline is not None and "group-oracle" in out:
            g, o, c = methods[baseline]["auc"], out["group-oracle"]["auc"], methods[coda.name]["auc"]
            # (coda - global) / (group-oracle - global); None where the gap is under 0.02 AUC (nothing to close)
            diagnostics["gap_closed"] = float((c - g) / (o - g)) if o - g >= 0.02 else None
    if table.planted is not None:
        kept = dev.kept_mask[0, 0] if any(m.keeps_candidates for m in dev.methods) else None
        diagnostics["own_group_share"] = own_group_shares(data, rows, kept)
        diagnostics.update(filter_diagnostics(cfg, data, dev))
    diagnostics["references_seconds"] = time.perf_counter() - t
    return References(rows=out, comparisons=comparisons, diagnostics=diagnostics)
