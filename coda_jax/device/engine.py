"""Running the compiled device stage over every simulated user: shapes, compiles, chunks, devices.

- **Shapes** (:func:`shape_plan`): users go in order of local row count, in chunks of ``engine.chunk_users``.
  Candidate, random and test widths are one per run; local widths are grouped into at most
  ``engine.max_shapes`` classes (the split that pads the fewest rows); a chunk's vocabulary widths are
  padded up to the widest its class has compiled, so a run compiles about ``max_shapes`` programs.
- **Compiles** (:class:`StageCompiler`): ahead of time, once per shape, timed; hits of JAX's persistent
  compilation cache are counted apart, so ``results.json`` says how many programs were really compiled.
- **Chunks**: dispatch is asynchronous: the host packs chunk ``c + 1`` while chunk ``c`` runs, and each chunk
  is one host-to-device transfer; only ``[U, P, R, M]`` numbers come back.
- **Devices**: the user axis of a chunk is split over every device JAX sees (a mesh axis ``"users"``).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from coda_jax.cloud.output import CloudOutput, UserRows
from coda_jax.config import Config, ConfigError
from coda_jax.config_sizes import chunk_memory_error
from coda_jax.data.dataset import Dataset
from coda_jax.data.packing import bucket_size
from coda_jax.device.chunk import ChunkSpec, candidate_width, make_chunk
from coda_jax.device.inputs import classifier_inputs, row_tags
from coda_jax.device.methods import matched_rows_per_user
from coda_jax.device.output import CompileReport, DeviceOutput
from coda_jax.device.settings import TRACED_FIELDS, StageNumbers, StageSettings, structure
from coda_jax.device.stage import USERS, device_stage
from coda_jax.progress import progress_bar


def local_width_classes(widths: np.ndarray, max_shapes: int) -> np.ndarray:
    """Group non-increasing chunk widths into at most ``max_shapes`` classes, padding the fewest rows.

    Args:
      widths: int [C] each chunk's own (bucketed) local width, non-increasing.
      max_shapes: at most this many distinct widths.

    Returns:
      int [C] the width each chunk is padded to (the widest of its class): an optimal split of the
      sequence into contiguous classes by a small dynamic programme (``C`` is the number of chunks).
    """
    widths = np.asarray(widths, np.int64)
    c = len(widths)
    k = max(1, min(max_shapes, len(np.unique(widths))))
    inf = np.iinfo(np.int64).max // 4
    # cost[j][i]: least padded rows covering chunks [0, i) with j classes; chunks in a class pad to its first.
    cost = np.full((k + 1, c + 1), inf)
    cut = np.zeros((k + 1, c + 1), np.int64)
    cost[0, 0] = 0
    for j in range(1, k + 1):
        for i in range(1, c + 1):
            for s in range(i):                       # class = chunks [s, i), padded to widths[s]
                if cost[j - 1, s] < inf:
                    v = cost[j - 1, s] + widths[s] * (i - s)
                    if v < cost[j, i]:
                        cost[j, i], cut[j, i] = v, s
    j = int(np.argmin(cost[1:, c])) + 1
    out, i = np.empty(c, np.int64), c
    while i > 0:
        s = cut[j, i]
        out[s:i] = widths[s]
        i, j = s, j - 1
    return out


def shape_plan(rows: UserRows, order: np.ndarray, chunk_users: int, min_bucket: int, max_shapes: int) -> dict:
    """The padded widths of every chunk, from row counts alone (before any packing).

    Args:
      rows: the simulated users' row lists; order: int [C * chunk_users] simulated users by chunk slot
        (``-1`` pads the last chunk).

    Returns:
      ``{"local": int [C], "test": int}``: each chunk's local width (see :func:`local_width_classes`) and the
      run's test width.
    """
    n_local, n_test = rows.counts("local"), rows.counts("test")
    slots = order.reshape(-1, chunk_users)
    own = [bucket_size(int(n_local[s[s >= 0]].max(initial=1)), min_bucket) for s in slots]
    return {"local": local_width_classes(np.asarray(own), max_shapes),
            "test": bucket_size(int(n_test.max(initial=1)), min_bucket)}


def plan_chunks(cfg, rows: UserRows, n_devices: int = 1) -> tuple[int, np.ndarray, dict]:
    """How a run's users go into chunks: ``(size, slots, plan)``: users per chunk (a multiple of
    ``n_devices``), int [C * size] simulated users by chunk slot (most local rows first; ``-1`` pads the last
    chunk) and :func:`shape_plan`'s widths."""
    n_users = len(rows.counts("local"))
    size = min(cfg.engine.chunk_users, n_users)
    size = -(-size // n_devices) * n_devices                          # every device gets as many users
    order = np.argsort(-rows.counts("local"), kind="stable")
    slots = np.full(-(-n_users // size) * size, -1)
    slots[:n_users] = order
    return size, slots, shape_plan(rows, slots, size, cfg.engine.min_bucket, cfg.engine.max_shapes)


def share_of_users(data, rows: UserRows, index: int, count: int):
    """Process ``index`` of ``count``'s share of the simulated users, for runs over several hosts (see
    docs/engine.md): ``(data, rows)`` restricted to a contiguous block of the users (every row of the
    dataset and the pool stay; only which users this process simulates changes). Per-user results do not
    depend on which process runs a user: each user's keys come from its global user index."""
    if not 0 <= index < count:
        raise ValueError(f"share_of_users: index must be in [0, {count}), got {index}")
    bounds = np.linspace(0, len(data.users), count + 1).round().astype(np.int64)
    mine = np.arange(bounds[index], bounds[index + 1])
    return dataclasses.replace(data, users=data.users[mine]), rows.subset(mine)


def user_mesh(devices: list | None = None) -> Mesh | None:
    """A one-axis mesh (``"users"``) over ``devices`` (this process's: all JAX sees in a single-process run);
    None for a single device."""
    devices = jax.local_devices() if devices is None else devices
    return Mesh(np.asarray(devices), (USERS,)) if len(devices) > 1 else None


class _CompileEvents:
    """Counts XLA compilations and persistent-cache hits (JAX monitoring listeners, installed once). A
    compilation request that JAX answers from its in-memory cache fires neither."""

    requests = 0       # programs compiled or loaded from the persistent cache
    cache_hits = 0
    _installed = False

    @classmethod
    def install(cls) -> None:
        if not cls._installed:
            jax.monitoring.register_event_listener(cls._on_event)
            jax.monitoring.register_event_duration_secs_listener(cls._on_duration)
            cls._installed = True

    @classmethod
    def _on_event(cls, event: str, **_) -> None:
        if event == "/jax/compilation_cache/cache_hits":
            cls.cache_hits += 1

    @classmethod
    def _on_duration(cls, event: str, duration: float, **_) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            cls.requests += 1


class StageCompiler:
    """Compiles the device stage ahead of time, once per argument shape, and keeps the executables.

    Attributes:
      compiles: programs XLA really compiled (persistent-cache hits and in-memory reuse not counted).
      cache_hits: programs loaded from JAX's persistent compilation cache.
      seconds: time spent lowering and compiling (or loading).
    """

    def __init__(self, model, settings: StageSettings, mesh: Mesh | None = None):
        self.model, self.mesh = model, mesh
        self.settings = dataclasses.replace(settings, mesh=mesh)
        self.executables: dict = {}
        self.compiles = self.cache_hits = 0
        self.seconds = 0.0
        _CompileEvents.install()

    def __call__(self, params, chunk, numbers: StageNumbers, keys):
        leaves, tree = jax.tree_util.tree_flatten((chunk, numbers, keys))
        sig = tree, tuple((np.shape(x), str(getattr(x, "dtype", type(x)))) for x in leaves)
        exe = self.executables.get(sig)
        if exe is None:
            t0, requests0, hits0 = time.perf_counter(), _CompileEvents.requests, _CompileEvents.cache_hits
            exe = device_stage.lower(self.model, self.settings, params, chunk, numbers, keys).compile()
            self.seconds += time.perf_counter() - t0
            hits = _CompileEvents.cache_hits - hits0
            self.cache_hits += hits
            self.compiles += max(_CompileEvents.requests - requests0 - hits, 0)
            self.executables[sig] = exe
        return exe(params, chunk, numbers, keys)


def run_chunks(cfgs: list[Config], data: Dataset, cloud: CloudOutput, compiler: StageCompiler,
               show_progress: bool = True) -> DeviceOutput:
    """Run the compiled device stage over every simulated user, chunk by chunk.

    Args:
      cfgs: P run configs that differ only in traced numbers (the structure, chunking, buckets and methods
        are the first's); data: the dataset; cloud: the cloud stage's output.
      compiler: the compiled programs (reused across calls, e.g. by the variants of a sweep).

    Returns the :class:`~coda_jax.device.output.DeviceOutput` of the simulated users (``data.users`` order).
    """
    cfg, settings, rows, mesh = cfgs[0], compiler.settings, cloud.rows, compiler.mesh
    numbers, keys = StageNumbers.stack(cfgs), device_keys(cfg)
    n_dev = 1 if mesh is None else mesh.size
    n_users = len(data.users)
    size, slots, plan = plan_chunks(cfg, rows, n_dev)
    n_chunks = len(slots) // size
    p, r, m = numbers.points, int(keys.shape[0]), len(settings.methods)
    auc = np.full((p, r, m, n_users), np.nan)
    aug_rows = np.zeros((p, r, m, n_users))
    nonfinite = np.zeros((p, r, m, n_users), np.int64)
    aug_own = np.full((p, r, m, n_users), np.nan)
    cls_auc = np.full((p, r, 2, n_users), np.nan)
    inputs = classifier_inputs(cfg, data.table, compiler.model, cloud)    # what the classifier sees of each row
    kept_mask = np.zeros((p, r, n_users, candidate_width(cfg.retrieval.max_candidates, cfg.engine.min_bucket)), bool)
    valid = np.zeros(n_users, dtype=bool)
    vocab_size = np.zeros(n_users, dtype=np.int64)
    user_rows = np.zeros(n_users, dtype=np.int64)
    spec = dataclasses.replace(ChunkSpec.from_config(cfg, matched_rows_per_user(cfg, settings.methods)),
                               tags=row_tags(data.table))
    widths = {"local": int(plan["local"].max(initial=1)), "test": int(plan["test"]),
              "candidates": candidate_width(cfg.retrieval.max_candidates, cfg.engine.min_bucket),
              "matched": spec.matched_rows * cfg.retrieval.matched_users}
    # the chunks carry the classifier inputs (classifier.inputs), not necessarily the sample vectors' width
    too_big = chunk_memory_error(cfg, size, widths, data.table.genres.shape[1], inputs.shape[1])
    if too_big:                      # the data's widths are known now: before the first chunk is packed
        raise ConfigError(f"config: {too_big}")
    sharding = None if mesh is None else NamedSharding(mesh, PartitionSpec(USERS))
    params = jax.device_put(cloud.params)
    vocab_widths: dict[int, tuple[int, int]] = {}                       # local width -> widest vocabularies
    shapes = set()

    def collect(pending) -> None:
        owners, out = pending
        out = jax.device_get(out)
        real = owners >= 0
        o = owners[real]
        auc[..., o] = np.moveaxis(out["auc"], 0, -1)[..., real]
        aug_rows[..., o] = np.moveaxis(out["aug_rows"], 0, -1)[..., real]
        nonfinite[..., o] = np.moveaxis(out["nonfinite"], 0, -1)[..., real]
        aug_own[..., o] = np.moveaxis(out["aug_own"], 0, -1)[..., real]
        cls_auc[..., o] = np.moveaxis(out["classifier_auc"], 0, -1)[..., real]
        kept_mask[:, :, o] = np.moveaxis(out["kept"], 0, 2)[:, :, real]

    pending = None
    for c in progress_bar(range(n_chunks), desc="device stage", unit="chunk", disable=not show_progress):
        owners = slots[c * size:(c + 1) * size]
        lw = int(plan["local"][c])
        vw = vocab_widths.get(lw, (0, 0))
        widths = {"local": lw, "test": plan["test"], "vocab": vw[0], "user_vocab": vw[1]}
        chunk = make_chunk(data.table, inputs, rows, owners, data.users, dataclasses.replace(spec, widths=widths))
        vocab_widths[lw] = (chunk.vocab.shape[1], chunk.user_vocab.shape[1])
        shapes.add((chunk.local.width, chunk.test.width, chunk.vocab.shape[1], chunk.user_vocab.shape[1]))
        real = owners >= 0
        vocab_size[owners[real]] = ((chunk.vocab > 0).sum(axis=1) + 1)[real]
        uv = np.sort(chunk.user_vocab[:, 1:], axis=1)                  # distinct users held (slot 0 is padding)
        user_rows[owners[real]] = (1 + (np.diff(uv, axis=1) != 0).sum(axis=1))[real]
        t = chunk.test
        valid[owners[real]] = ((t.mask & (t.label > 0.5)).any(axis=1) & (t.mask & (t.label <= 0.5)).any(axis=1))[real]
        dev_chunk = jax.device_put(chunk, sharding)                    # one transfer per chunk
        out = compiler(params, dev_chunk, numbers, keys)               # asynchronous: the next chunk packs meanwhile
        if pending is not None:
            collect(pending)
        pending = (owners, out)
    if pending is not None:
        collect(pending)
    lock = settings.lockstep_users or size // n_dev
    report = CompileReport(compiles=compiler.compiles, cache_hits=compiler.cache_hits, seconds=compiler.seconds,
                           shapes=len(shapes),
                           lanes={"sweep_points": p, "repeats": r, "methods": m,
                                  "users_in_lockstep": min(lock, size // n_dev), "devices": n_dev})
    return DeviceOutput(auc=auc, aug_rows=aug_rows, nonfinite=nonfinite, kept_mask=kept_mask, valid=valid,
                        vocab_size=vocab_size, user_rows=user_rows, aug_own=aug_own, classifier_auc=cls_auc,
                        compile=report, settings=settings)


def device_keys(cfg: Config) -> jax.Array:
    """The device keys of a run, one per repeat: [R] (repeat 0 is the key a single-repeat run uses)."""
    key = jax.random.PRNGKey(cfg.seed + 2)
    return jnp.stack([key] + [jax.random.fold_in(key, r) for r in range(1, cfg.eval.repeats)])


def run_device_stage(cfg: Config | list[Config], data: Dataset, cloud: CloudOutput, show_progress: bool = True,
                     compiler: StageCompiler | None = None, devices: list | None = None) -> DeviceOutput:
    """Run the compiled device stage over all simulated users (see :func:`run_chunks`).

    ``cfg`` may be a list of P configs that differ only in traced numbers (:data:`~coda_jax.device.settings.
    TRACED_FIELDS`): they run as the sweep-point lanes of one program. Each repeat (``eval.repeats``, R) uses
    an independent device key. ``cloud``: the cloud stage's output (model, parameters, vectors, rows).
    ``compiler``: reuse compiled programs across calls (e.g. the variants of a sweep); a new one otherwise.
    ``devices``: the devices the user axis is split over (default: all JAX sees; ``jax.local_devices()`` for
    one process of a multi-host run).

    Returns a :class:`~coda_jax.device.output.DeviceOutput` (arrays [P, R, M, S] over simulated users in
    ``data.users`` order).
    """
    cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg]
    base = structure(cfgs[0])
    for i, c in enumerate(cfgs[1:], start=1):
        if structure(c) != base:
            raise ValueError(f"run_device_stage: config {i} differs from config 0 in more than the traced numbers "
                             f"({', '.join(TRACED_FIELDS)})")
    compiler = compiler or StageCompiler(cloud.model, StageSettings.from_config(cfgs[0]), user_mesh(devices))
    return run_chunks(cfgs, data, cloud, compiler, show_progress)
