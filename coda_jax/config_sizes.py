"""Sizes a config may ask for: an upper bound on every count (:data:`SIZE_LIMITS`, checked by
:func:`coda_jax.config_check.validate`) and an estimate of the memory a run needs against the machine's
(:func:`estimate_memory`, :func:`check_memory`), so a run too big for the machine is refused before any work,
naming the key, instead of dying inside numpy or XLA after the data and cloud stages.

Like :mod:`coda_jax.config_check`, this module reads a config's attributes only (it sits below the config).
"""

from __future__ import annotations

import os

GIB = float(1 << 30)

SIZE_LIMITS = {
    "synthetic.num_users": 10 ** 8, "synthetic.num_items": 10 ** 8, "synthetic.num_genres": 10 ** 4,
    "synthetic.num_user_groups": 10 ** 6, "synthetic.num_item_clusters": 10 ** 6,
    "synthetic.max_rows_per_user": 10 ** 6, "synthetic.median_rows_per_user": 10 ** 6,
    "synthetic.mean_rows_per_user": 10 ** 6,
    "data.min_rows_per_user": 10 ** 7, "data.min_test_rows": 10 ** 7, "data.max_users": 10 ** 9,
    "model.attention_hidden": 1 << 16, "cloud.epochs": 10 ** 4, "cloud.batch_size": 1 << 20,
    "retrieval.neighbors": 10 ** 4, "retrieval.max_candidates": 10 ** 5, "retrieval.recall_queries": 10 ** 6,
    "retrieval.matched_users": 10 ** 4, "mpda.rows_per_user": 10 ** 5, "mpda.steps": 10 ** 6,
    "classifier.hidden": 1 << 16, "classifier.steps": 10 ** 6,
    "finetune.steps": 10 ** 6, "finetune.batch_size": 1 << 16, "finetune.aug_batch_size": 1 << 16,
    "engine.chunk_users": 1 << 20, "engine.min_bucket": 1 << 16, "engine.lockstep_users": 1 << 20,
    "engine.max_shapes": 64, "eval.bootstrap": 10 ** 6, "eval.repeats": 1000,
}
"""The largest value of every count in a config (the smallest are in :func:`~coda_jax.config_check.validate`).
Far above any run these machines finish (10^6 fine-tuning steps per device is hours for one user), and low
enough that no count overflows the int32 / uint32 arithmetic of the compiled stage."""

HIDDEN_LIMIT = 1 << 16
"""The widest layer of ``model.hidden``."""

DRAW_POSITIONS = 1 << 32
"""Minibatch draws are numbered in uint32 (:mod:`coda_jax.device.sampler`): steps x rows per step stays below."""

STEP_BLOCK = 128
"""Most fine-tuning steps whose minibatch indices are drawn together, one block of the training scan
(:func:`coda_jax.device.train.step_blocks`); the memory estimate counts one block per lane."""

_GENRES_PER_ROW = 8          # a guess for file sources (MovieLens items have at most 6 genres)
_DRAW_BYTES = 40             # per minibatch draw in a block: index, weight, Feistel round keys, temporaries
_TABLE_COPIES = 3            # the sample table, its feature gathers and the split masks live at once


def _get(cfg, key: str):
    obj = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def size_errors(cfg) -> list[tuple[str, str]]:
    """``(dotted key, message)`` for every count above its bound (:data:`SIZE_LIMITS`), a hidden layer wider
    than :data:`HIDDEN_LIMIT`, and step counts whose draws would pass :data:`DRAW_POSITIONS`."""
    out = []
    for key, limit in SIZE_LIMITS.items():
        value = _get(cfg, key)
        if value > limit:
            out.append((key, f"must be <= {limit:,}, got {value:,}"))
    if any(h > HIDDEN_LIMIT for h in cfg.model.hidden):
        out.append(("model.hidden", f"widths must be <= {HIDDEN_LIMIT:,}, got {list(cfg.model.hidden)}"))
    f = cfg.finetune
    per_step = f.batch_size + (f.aug_batch_size or f.batch_size)
    if f.steps * per_step >= DRAW_POSITIONS:
        out.append(("finetune.steps", f"times the rows drawn per step ({per_step}) must stay below 2^32 "
                                      f"(minibatch draws are numbered in uint32), got {f.steps:,} steps"))
    return out


def _bucket(n: int, min_bucket: int) -> int:
    n = max(int(n), int(min_bucket), 1)
    return 1 << (n - 1).bit_length()


def machine_memory_bytes() -> int | None:
    """This machine's memory (physical pages, or a lower cgroup limit); None where it cannot be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as fh:
                text = fh.read().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def row_bytes(history_len: int, genres: int, vector: int) -> int:
    """Bytes of one padded row of a chunk: features (user, item, genres, liked / disliked history), label,
    table row, sample vector (float32 / int32 each) and its mask."""
    return 4 * (3 + genres + 2 * history_len + 2 + vector) + 1


def _lanes(cfg) -> int:
    """Fine-tuning lanes in lockstep: users in lockstep (0 = 8, as on a CPU) x fine-tuned methods x repeats."""
    e = cfg.engine
    return (e.lockstep_users or min(e.chunk_users, 8)) * max(len(cfg.methods) - 1, 1) * cfg.eval.repeats


def chunk_bytes(cfg, users: int, widths: dict, row: int) -> int:
    """About the bytes of a run's chunk arrays: ``users`` devices x padded rows (``widths``: ``local``,
    ``candidates`` (random rows as wide), ``test``, ``matched``) x ``row`` bytes, twice (one chunk packed while
    the previous one runs), plus each lane's own local and augmented rows."""
    per_device = widths["local"] + 2 * widths["candidates"] + widths["test"] + widths.get("matched", 0)
    return 2 * users * per_device * row + _lanes(cfg) * (widths["local"] + widths["candidates"]) * row


def chunk_memory_error(cfg, users: int, widths: dict, genres: int, vector: int,
                       available: int | None = None) -> str | None:
    """The engine's check once the data's widths are known (``widths`` as :func:`chunk_bytes`; ``genres`` per
    row, ``vector`` the sample vectors' width): a message naming ``engine.chunk_users`` and the estimate when
    the chunk arrays exceed the machine's memory (or ``available`` bytes), else None."""
    available = machine_memory_bytes() if available is None else available
    need = chunk_bytes(cfg, users, widths, row_bytes(cfg.data.history_len, genres, vector))
    if not available or need <= available:
        return None
    parts = ", ".join(f"{k} {v:,}" for k, v in widths.items())
    return (f"engine.chunk_users: {users:,} devices per chunk with padded rows ({parts}) need about "
            f"{need / GIB:.1f} GiB for the padded chunk arrays, more than this machine's {available / GIB:.1f} "
            "GiB; lower engine.chunk_users (or engine.min_bucket, retrieval.max_candidates)")


def estimate_memory(cfg, matched_rows: int = 0) -> dict:
    """About how many bytes a run of ``cfg`` holds at its peak, by part, from the config alone
    (``matched_rows``: rows per matched user its chunks carry, from its methods' registry entries:
    :func:`coda_jax.device.methods.matched_rows_per_user`).

    Returns ``{part: (bytes, key)}``, ``key`` the dotted config key that sets the part's size:

    - ``padded chunk arrays``: ``engine.chunk_users`` devices x their padded rows (local and test rows in
      power-of-two buckets of at least ``engine.min_bucket``, candidates and random rows at
      ``retrieval.max_candidates``, mpda's matched rows) x the bytes of a row (features, label, mask, sample
      vector), twice (one chunk packed while the previous one runs). Local and test widths come from
      ``synthetic.max_rows_per_user`` for generated data; for file sources they are unknown before the data is
      read, and ``engine.min_bucket`` stands in (a lower bound).
      Plus each lane's own copy of its local and augmented rows, for every lane in lockstep (users in
      lockstep, ``engine.lockstep_users``, 0 = 8 as on a CPU, x fine-tuned methods x repeats).
    - ``step-index arrays``: the minibatch draws of one block of fine-tuning steps (at most :data:`STEP_BLOCK`, see
      :mod:`coda_jax.device.train`) for every lane in lockstep; independent of ``finetune.steps``.
    - ``sample table``: generated data only: users x rows per user x a row's bytes (history, genres, vector).
    """
    d, s, e, f, r = cfg.data, cfg.synthetic, cfg.engine, cfg.finetune, cfg.retrieval
    synthetic = d.source == "synthetic"
    genres = 1 if synthetic else _GENRES_PER_ROW
    vector = 4 * cfg.model.embed_dim
    row = row_bytes(d.history_len, genres, vector)
    natural = s.max_rows_per_user if synthetic else 1
    local = test = _bucket(natural, e.min_bucket)
    cand = -(-max(r.max_candidates, 1) // e.min_bucket) * e.min_bucket
    matched = r.matched_users * matched_rows
    widths: dict[str, int] = {}            # each width's bytes under the key that sets it
    for width, setter in ((local + test, "synthetic.max_rows_per_user" if natural > e.min_bucket else None),
                          (2 * cand, "retrieval.max_candidates" if r.max_candidates > e.min_bucket else None),
                          (matched, "mpda.rows_per_user")):
        widths[setter or "engine.min_bucket"] = widths.get(setter or "engine.min_bucket", 0) + width
    chunk_key = max(widths, key=widths.get)
    chunk = chunk_bytes(cfg, e.chunk_users, {"local": local, "candidates": cand, "test": test, "matched": matched},
                        row)
    lanes = _lanes(cfg)
    per_step = f.batch_size + (f.aug_batch_size or f.batch_size)
    steps = lanes * min(f.steps, STEP_BLOCK) * per_step * _DRAW_BYTES  # one block of draws per lane, whatever the steps
    out = {"padded chunk arrays": (chunk, chunk_key), "step-index arrays": (steps, "finetune.batch_size")}
    if synthetic:
        mean_rows = (s.mean_rows_per_user if s.rows_per_user == "lognormal"
                     else (s.min_rows_per_user + s.max_rows_per_user) / 2)
        table_row = 4 * (4 + genres + 2 * d.history_len + vector) + 8
        out["sample table"] = (int(_TABLE_COPIES * s.num_users * mean_rows * table_row), "synthetic.num_users")
    return out


def memory_error(cfg, available: int | None = None, matched_rows: int = 0) -> tuple[str, str] | None:
    """``(key, message)`` when :func:`estimate_memory` exceeds the machine's memory (``available`` bytes,
    default :func:`machine_memory_bytes`), else None."""
    available = machine_memory_bytes() if available is None else available
    if not available:
        return None
    parts = estimate_memory(cfg, matched_rows)
    total = sum(b for b, _ in parts.values())
    if total <= available:
        return None
    name, (_, key) = max(parts.items(), key=lambda kv: kv[1][0])
    detail = ", ".join(f"{n} {b / GIB:.1f} GiB" for n, (b, _) in parts.items())
    value = _get(cfg, key)
    return key, (f"{value:,} makes the run need about {total / GIB:.1f} GiB of memory ({detail}; the largest "
                 f"part is the {name}), more than this machine's {available / GIB:.1f} GiB; lower {key}"
                 + (" or engine.chunk_users" if name == "padded chunk arrays" and key != "engine.chunk_users"
                    else ""))
