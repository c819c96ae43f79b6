"""What the device stage hands on: :class:`DeviceOutput`, every simulated user's numbers from the compiled
device stage (host numpy arrays), and :class:`CompileReport`, what running it cost in compiles."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import numpy as np


@dataclasses.dataclass(frozen=True)
class CompileReport:
    """How the device stage ran.

    Attributes:
      compiles: programs XLA really compiled (persistent-cache hits and in-memory reuse not counted).
      cache_hits: programs loaded from JAX's persistent compilation cache.
      seconds: time spent lowering and compiling (or loading).
      shapes: distinct chunk shapes.
      lanes: ``{"sweep_points", "repeats", "methods", "users_in_lockstep", "devices"}``.
    """

    compiles: int = 0
    cache_hits: int = 0
    seconds: float = 0.0
    shapes: int = 0
    lanes: dict = dataclasses.field(default_factory=dict)


@flax.struct.dataclass
class DeviceOutput:
    """The device stage's results for ``S`` simulated users (in ``data.users`` order), ``P`` sweep points,
    ``R`` repeats and ``M`` methods (in the order of the run's ``methods``).

    Attributes:
      auc: float [P, R, M, S] each user's test AUC (NaN where undefined or a test logit was not finite).
      aug_rows: float [P, R, M, S] augmented rows each method trained on beside the local ones.
      nonfinite: int [P, R, M, S] non-finite test logits.
      kept_mask: bool [P, R, S, Nc] which of each user's candidates (in ``rows.candidates`` order) its sample
        classifier kept.
      valid: bool [S] the user's test rows hold both classes.
      vocab_size: int [S] item rows of each device's model copy; user_rows: int [S] its user rows.
      aug_own: float [P, R, M, S] the own-group share of each method's augmented rows (NaN for none; planted
        worlds only, NaN elsewhere).
      classifier_auc: float [P, R, 2, S] the sample classifier's own AUC on each user's candidates, own- vs
        other-group and fresh vs stale (NaN where undefined, e.g. without a planted world).
      compile: the :class:`CompileReport` (static).
      settings: the :class:`~coda_jax.device.settings.StageSettings` that ran (static): its ``methods`` are
        the registry entries behind the M axis, its ``classifier_model`` the sample classifier.
    """

    auc: np.ndarray
    aug_rows: np.ndarray
    nonfinite: np.ndarray
    kept_mask: np.ndarray
    valid: np.ndarray
    vocab_size: np.ndarray
    user_rows: np.ndarray
    aug_own: np.ndarray
    classifier_auc: np.ndarray
    compile: CompileReport = flax.struct.field(pytree_node=False, default_factory=CompileReport)
    settings: Any = flax.struct.field(pytree_node=False, default=None)

    @property
    def methods(self) -> tuple:
        """The :class:`~coda_jax.device.methods.Method` entries of the M axis, in order."""
        return self.settings.methods

    @property
    def classifier(self):
        """The sample classifier module that ran."""
        return self.settings.classifier_model

    @property
    def auc_mean(self) -> np.ndarray:
        """float [P, M, S] each user's AUC averaged over the repeats."""
        return self.auc.mean(axis=1)

    @property
    def kept(self) -> np.ndarray:
        """float [P, R, S] candidates each user's classifier kept."""
        return self.kept_mask.sum(axis=-1).astype(np.float64)

    @property
    def points(self) -> int:
        """P, the number of sweep points."""
        return int(self.auc.shape[0])

    def point(self, p: int) -> "DeviceOutput":
        """Sweep point ``p`` alone (a leading axis of size 1 on the per-point arrays)."""
        return self.replace(auc=self.auc[p:p + 1], aug_rows=self.aug_rows[p:p + 1],
                            nonfinite=self.nonfinite[p:p + 1], kept_mask=self.kept_mask[p:p + 1],
                            aug_own=self.aug_own[p:p + 1], classifier_auc=self.classifier_auc[p:p + 1])
