"""coda-jax: a JAX-accelerated, vectorized simulator of CoDA device-cloud collaborative learning.

The public API, in pipeline order (each step usable on its own from research code; shapes in docs/api.md)::

    import coda_jax as cj
    cfg = cj.Config()                                   # or cj.load_config("configs/movielens100k.yaml")
    cfg = cj.with_overrides(cfg, {"finetune.steps": 50})   # validated (dataclasses.replace is not)
    data = cj.make_dataset(cfg)                         # load or generate, build samples, split per user
    #   (your own log: cj.make_dataset(cfg, cj.interactions_from_frame(df, user=, item=, label=, timestamp=)))
    cloud = cj.cloud_stage(cfg, data)                   # pretrain + coarse matching: a cj.CloudOutput
    #   (cloud.model, cloud.params, cloud.vectors [N, D], cloud.rows: cj.UserRows, cloud.retrieval)
    dev = cj.run_device_stage(cfg, data, cloud)         # every chunk, compiled once per shape: a cj.DeviceOutput
    #   (dev.auc [P, R, M, S], dev.aug_rows, dev.nonfinite, dev.kept_mask [P, R, S, Nc], dev.valid [S], ...)
    results = cj.simulate(cfg)                          # all of the above, every method, one cj.Results
    #   (the config validated first: a cj.ConfigError naming the key before any data is read)
    results = cj.simulate_points([cfg_a, cfg_b], data)  # configs differing in numbers: lanes of one program
    frame = results.to_frame()                          # pandas: one row per user and method
    cj.use_host_devices(); cj.enable_compile_cache()    # the CLI's host settings (before any JAX work)

One chunk by hand::

    chunk = cj.make_chunk(data.table, cloud.vectors, cloud.rows, owners, data.users, cj.ChunkSpec.from_config(cfg))
    out = cj.device_stage(cloud.model, cj.StageSettings.from_config(cfg), cloud.params, chunk,
                          cj.StageNumbers.stack([cfg]), cj.device_keys(cfg))   # out["auc"]: [U, P, R, M]
    auc, valid = cj.masked_auc(scores, labels, mask)    # per-user AUC, one jitted call

Your own parts, by name (a config then names them; each is checked on a tiny input when registered)::

    cj.register_method("my-method", augment)            # AugmentInputs -> (Rows [Nc], weights [Nc])
    cj.register_model("my-model", factory)              # (ModelConfig, users, items, genres) -> flax module
    cj.register_classifier("my-classifier", factory)    # ClassifierConfig -> flax module, vectors -> logits
    cj.register_matching("my-matching", match)          # MatchInputs -> (users [S, k], scores [S, k])
"""

from coda_jax import methods
from coda_jax.cloud.matching import MatchInputs, candidates_from_users, pool_by_user
from coda_jax.cloud.matchings import match_users, register_matching
from coda_jax.cloud.output import CloudOutput, UserRows
from coda_jax.cloud.pretrain import pretrain, sample_vectors
from coda_jax.cloud.retrieval import coarse_match, make_searcher, recall_at_k
from coda_jax.cloud.stage import cloud_stage
from coda_jax.config import Config, ConfigError, with_overrides
from coda_jax.config import load as load_config
from coda_jax.data.dataset import Dataset, load_interactions, make_dataset
from coda_jax.data.features import build_samples
from coda_jax.data.frame import interactions_from_frame
from coda_jax.data.ingest import DataError
from coda_jax.data.sources.movielens100k import read_movielens100k
from coda_jax.data.schema import Interactions, SampleTable
from coda_jax.data.synthetic import generate as generate_synthetic
from coda_jax.device.chunk import ChunkSpec, DeviceChunk, Rows, make_chunk
from coda_jax.device.engine import device_keys, run_device_stage
from coda_jax.device.output import CompileReport, DeviceOutput
from coda_jax.device.settings import StageNumbers, StageSettings
from coda_jax.device.stage import device_stage, user_stage
from coda_jax.device.train import finetune, mpda_finetune, train_classifier
from coda_jax.evaluate import paired_bootstrap
from coda_jax.host import enable_compile_cache, use_host_devices
from coda_jax.device.methods import AugmentInputs, Method, register_method
from coda_jax.models import make_model
from coda_jax.models.registry import register_classifier, register_model
from coda_jax.registry import RegistryError
from coda_jax.results import Results
from coda_jax.simulate import simulate, simulate_points
from coda_jax.version import __version__
from kernels.auc import masked_auc
from kernels.topk import exact_topk


__all__ = [
    "AugmentInputs", "ChunkSpec", "CloudOutput", "CompileReport", "Config", "ConfigError", "DataError", "Dataset",
    "DeviceChunk", "DeviceOutput", "Interactions", "MatchInputs", "Method", "RegistryError", "Results", "Rows",
    "SampleTable", "StageNumbers", "StageSettings", "UserRows", "build_samples", "candidates_from_users",
    "cloud_stage", "coarse_match", "device_keys", "device_stage", "exact_topk", "finetune", "generate_synthetic",
    "load_config", "load_interactions", "make_chunk", "make_dataset", "make_model", "make_searcher", "masked_auc",
    "match_users", "methods", "mpda_finetune", "pool_by_user", "pretrain", "read_movielens100k", "recall_at_k",
    "register_classifier", "register_matching", "register_method", "register_model", "run_device_stage",
    "sample_vectors", "simulate", "simulate_points", "train_classifier", "user_stage",
    "enable_compile_cache", "interactions_from_frame", "paired_bootstrap", "use_host_devices", "with_overrides",
    "__version__",
]
