"""What a run produced: :class:`Results`, its terminal table and its ``results.json`` (atomic, strict JSON;
the writing itself is :mod:`coda_jax.results_io`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from coda_jax.cloud.search import report_line
from coda_jax.evaluate import few_users_warning, format_difference
from coda_jax.provenance import RESULTS_SCHEMA_VERSION
from coda_jax.results_io import save_json


@dataclasses.dataclass
class Results:
    """What a run produced.

    Attributes:
      config: the run's config as a dict.
      methods: method name -> ``{"auc": user-averaged AUC, "users": users evaluated,
        "per_user": {dataset user id: AUC}}``.
      comparisons: other method -> paired ``anchor - other`` difference ``{"mean", "low", "high"}`` (the anchor:
        ``eval.anchor``, coda by default; :attr:`anchor`).
      augmentation: method -> mean augmented rows per simulated user; plus ``local_rows`` (mean local rows).
      retrieval: ScaNN / exact recall and candidate counts.
      timings: stage name -> seconds.
      overhead: per-device bytes down / up, storage and FLOPs (means over simulated users).
      data: dataset counts; ``per_user_test_rows``: {dataset user id: test rows} of the evaluated users.
      memory: peak host memory of the run's process (``peak_rss_gb``) and peak accelerator memory per device
        (``device_peak_gb``; None on the CPU backend), read when the run finished.
      diagnostics: figures of runs with a known answer (planted world, two-cutoff split; see
        :mod:`coda_jax.planted`): own-group shares of augmented rows, the share of the global-to-group-oracle gap
        coda closes. Reference rows (``"reference": True``) are in ``methods``.
      provenance: what produced the run (:func:`coda_jax.provenance.provenance`): versions of coda-jax, jax,
        jaxlib, flax, optax, numpy and scann, the git commit, the device kind and count, start time, command line.
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
    memory: dict = dataclasses.field(default_factory=dict)
    provenance: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        """The ``results.json`` object: ``schema_version`` (:data:`~coda_jax.provenance.RESULTS_SCHEMA_VERSION`)
        and every field."""
        return {"schema_version": RESULTS_SCHEMA_VERSION, **dataclasses.asdict(self)}

    def to_frame(self):
        """A pandas DataFrame, one row per (evaluated user, method): ``user_id`` (the dataset's id, as text),
        ``method``, ``auc``, ``test_rows`` (the user's held-out rows), ``local_rows``, ``aug_rows`` (augmented
        rows the method trained on; NaN for reference rows, which train nothing) and ``reference``. Needs pandas
        (``pip install pandas``)."""
        try:
            import pandas as pd  # noqa: PLC0415 - the library imports without pandas
        except ImportError as err:
            raise ImportError(f"Results.to_frame needs pandas ({err}); pip install pandas") from None
        test_rows = self.data.get("per_user_test_rows", {})
        local_rows = self.data.get("per_user_local_rows", {})
        rows = []
        for name, m in self.methods.items():
            aug = m.get("per_user_aug_rows", {})
            for uid, auc in m.get("per_user", {}).items():
                rows.append((uid, name, auc, test_rows.get(uid), local_rows.get(uid), aug.get(uid, float("nan")),
                             bool(m.get("reference", False))))
        frame = pd.DataFrame(rows, columns=["user_id", "method", "auc", "test_rows", "local_rows", "aug_rows",
                                            "reference"])
        return frame.astype({"auc": "float64", "test_rows": "Int64", "local_rows": "Int64", "aug_rows": "float64"})

    def save(self, out_dir: str | Path) -> Path:
        """Write ``results.json`` into ``out_dir`` (created if needed) atomically, as strict JSON (NaN and
        infinities as ``null``); returns its path. A failed write leaves an earlier ``results.json`` intact,
        writes the results to a fallback file and raises :class:`~coda_jax.results_io.SaveError` naming both
        (see :func:`~coda_jax.results_io.save_json`)."""
        return save_json(Path(out_dir) / "results.json", self.to_json())

    @property
    def anchor(self) -> str:
        """The method the paired differences in :attr:`comparisons` are taken from (``eval.anchor``)."""
        return str(self.config.get("eval", {}).get("anchor", "coda"))

    def table(self) -> str:
        """The terminal summary: per-method AUC, users, mean local and augmented rows, and the anchor's paired
        differences with bootstrap intervals."""
        anchor = self.anchor
        lines = [f"{'method':<14}{'AUC':>8}{'users':>7}{'local rows':>12}{'aug rows':>10}   {anchor} - method [95% CI]"]
        flag = {name: "  <- diverged" for name, m in self.methods.items() if m.get("diverged_users")}
        for name, m in self.methods.items():
            cmp = self.comparisons.get(name)
            diff = "" if cmp is None else f"   {format_difference(cmp)}"
            if m.get("reference"):
                lines.append(f"{name:<14}{m['auc']:>8.4f}{m['users']:>7d}{'reference':>22}{diff}")
                continue
            lines.append(f"{name:<14}{m['auc']:>8.4f}{m['users']:>7d}{self.augmentation['local_rows']:>12.1f}"
                         f"{self.augmentation.get(name, 0.0):>10.1f}{diff}{flag.get(name, '')}")
        users = [m["users"] for m in self.methods.values() if not m.get("reference")]
        warning = few_users_warning(min(users)) if users else None
        if warning:
            lines.append(warning)
        repeats = self.config.get("eval", {}).get("repeats", 1)
        if repeats > 1:
            lines.append(f"each user's AUC is the mean over {repeats} device-stage repeats; user-averaged AUC per "
                         "repeat: " + "; ".join(f"{name} {min(m['per_repeat_auc']):.4f}-{max(m['per_repeat_auc']):.4f}"
                                               for name, m in self.methods.items()))
        share = self.diagnostics.get("own_group_share")
        if share:
            lines.append("own-group share of augmented rows: " + ", ".join(
                f"{k} {v:.3f}" for k, v in share.items()))
        own = self.diagnostics.get("kept_own_share")
        if own:
            lines.append("own-group share of each method's augmented rows: " + ", ".join(
                f"{k} {v:.3f}" for k, v in own.items()))
        for what, a in self.diagnostics.get("classifier_auc", {}).items():
            lines.append(f"sample classifier AUC, {what.replace('_', ' ')} candidates: {a['mean']:.3f} "
                         f"[{a['low']:.3f}, {a['high']:.3f}] ({a['users']} users)"
                         + (f"; Bayes filter {a['bayes']:.3f}" if a.get("bayes") is not None else ""))
        if self.diagnostics.get("gap_closed") is not None:
            lines.append(f"coda closes {self.diagnostics['gap_closed']:.1%} of the global to group-oracle gap")
        r = self.retrieval
        if report_line(r):
            lines.append(report_line(r))
        diverged = [f"{name} ({m['diverged_users']} users)" for name, m in self.methods.items()
                    if m.get("diverged_users")]
        if diverged:
            lines.append("DIVERGED: non-finite test scores (those users are not scored): " + ", ".join(diverged))
        if self.memory.get("peak_rss_gb") is not None:
            dev = self.memory.get("device_peak_gb")
            lines.append(f"memory: peak host RSS {self.memory['peak_rss_gb']:.2f} GiB"
                         + ("" if not dev else f", peak device memory {max(dev):.2f} GiB"))
        lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" if isinstance(v, float) else f"{k} {v}"
                                             for k, v in self.timings.items()))
        return "\n".join(lines)
