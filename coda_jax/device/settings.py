"""The device stage's settings, split as gymnax splits env structure from ``EnvParams``.

- :class:`StageSettings` (static, hashable): shapes and step counts, the model's trainable groups, the
  optimizer kind, the method list. A change here compiles a new program.
- :class:`StageNumbers` (traced, a pytree of float32 scalars, or of [P] vectors for P sweep points): every
  float the method reads: learning rates, l2, keep fraction or threshold, augmented-row weight. A sweep over these compiles once; its points run as lanes.

Inside the compiled stage :meth:`StageSettings.classifier_config` / :meth:`StageSettings.finetune_config`
put the numbers back into the config dataclasses, so the per-user functions read ``cfg.learning_rate`` and
friends whether they are Python floats (called directly) or tracers (inside the stage).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from coda_jax.config import ClassifierConfig, Config, FinetuneConfig, MpdaConfig
from coda_jax.device.methods import Method, get_method
from coda_jax.models.classifier import SampleClassifier
from coda_jax.models.registry import make_classifier

CLASSIFIER_NUMBERS = {"classifier_learning_rate": "learning_rate", "classifier_l2": "l2",
                      "keep_fraction": "keep_fraction", "threshold": "threshold",
                      "purity_target": "purity_target"}
FINETUNE_NUMBERS = {"finetune_learning_rate": "learning_rate", "aug_weight": "aug_weight"}
TRACED_FIELDS = tuple(f"classifier.{v}" for v in CLASSIFIER_NUMBERS.values()) + \
    tuple(f"finetune.{v}" for v in FINETUNE_NUMBERS.values())
"""The dotted config keys that travel as traced numbers (a sweep over them shares one compiled program)."""


@flax.struct.dataclass
class StageNumbers:
    """The traced numbers of the device stage: each a float32 scalar, or [P] for P sweep points (lanes)."""

    classifier_learning_rate: jnp.ndarray
    classifier_l2: jnp.ndarray
    keep_fraction: jnp.ndarray
    threshold: jnp.ndarray          # in [0, 1]: keep candidates scored >= threshold; negative: keep_fraction
    purity_target: jnp.ndarray      # keep_rule expected_purity: the kept set's estimated own share
    finetune_learning_rate: jnp.ndarray
    aug_weight: jnp.ndarray

    @staticmethod
    def from_config(cfg: Config) -> "StageNumbers":
        """The scalar numbers of one config."""
        return StageNumbers(**{
            **{k: np.float32(getattr(cfg.classifier, v)) for k, v in CLASSIFIER_NUMBERS.items()},
            **{k: np.float32(getattr(cfg.finetune, v)) for k, v in FINETUNE_NUMBERS.items()}})

    @staticmethod
    def stack(cfgs: list[Config]) -> "StageNumbers":
        """The numbers of P configs as [P] vectors (the sweep-point lanes of one program)."""
        ones = [StageNumbers.from_config(c) for c in cfgs]
        return jax.tree_util.tree_map(lambda *xs: np.stack(xs).astype(np.float32), *ones)

    @property
    def points(self) -> int:
        """P, the number of sweep points (1 for scalar numbers)."""
        shape = np.shape(self.finetune_learning_rate)
        return int(shape[0]) if shape else 1


def structure(cfg: Config) -> Config:
    """``cfg`` with every traced number set to a fixed placeholder: two configs that differ only in numbers
    have equal structures, and so share one compiled device stage (and may run as lanes of it)."""
    return dataclasses.replace(
        cfg, classifier=dataclasses.replace(cfg.classifier, **{v: 0.0 for v in CLASSIFIER_NUMBERS.values()}),
        finetune=dataclasses.replace(cfg.finetune, **{v: 0.0 for v in FINETUNE_NUMBERS.values()}))


@dataclasses.dataclass(frozen=True)
class StageSettings:
    """The static (hashable) structure of the device stage; numbers are zeroed placeholders (see
    :class:`StageNumbers`). The registry names of the config are resolved here, once: ``methods`` holds the
    :class:`~coda_jax.device.methods.Method` entries and ``classifier_model`` the sample classifier module,
    so the compiled program is keyed by them (a name registered again compiles anew)."""

    classifier: ClassifierConfig
    finetune: FinetuneConfig
    methods: tuple[Method, ...]
    classifier_model: nn.Module = SampleClassifier()
    mpda: MpdaConfig = MpdaConfig()
    matched_users: int = 10        # the chunk's matched rows are matched_users blocks of equal width
    lockstep_users: int = 0        # users vmapped together; groups run one after another (0 = the whole chunk)
    with_logits: bool = False      # the stage also returns test logits and candidate scores
    mesh: Mesh | None = None       # the user axis is split over this mesh's "users" axis (None: one device)

    @staticmethod
    def from_config(cfg: Config) -> "StageSettings":
        """The settings of a run config, its method and classifier names resolved through the registries."""
        s = structure(cfg)
        return StageSettings(classifier=s.classifier, finetune=s.finetune,
                             methods=tuple(get_method(m) for m in cfg.methods),
                             classifier_model=make_classifier(s.classifier),
                             mpda=cfg.mpda, matched_users=cfg.retrieval.matched_users,
                             lockstep_users=lockstep_users(cfg.engine.lockstep_users))

    def classifier_config(self, numbers: StageNumbers) -> ClassifierConfig:
        """The classifier config with the (traced) numbers filled in."""
        return dataclasses.replace(self.classifier, **{v: getattr(numbers, k) for k, v in CLASSIFIER_NUMBERS.items()})

    def finetune_config(self, numbers: StageNumbers) -> FinetuneConfig:
        """The fine-tuning config with the (traced) numbers filled in."""
        return dataclasses.replace(self.finetune, **{v: getattr(numbers, k) for k, v in FINETUNE_NUMBERS.items()})


def lockstep_users(configured: int, backend: str | None = None) -> int:
    """The number of users vmapped in lockstep: ``configured`` if > 0; for 0 (auto), 8 on a CPU backend
    (small batched products run faster there in groups of 2-16 than 64 or more wide) and the whole chunk (0)
    on an accelerator."""
    if configured > 0:
        return configured
    return 8 if (backend or jax.default_backend()) == "cpu" else 0
