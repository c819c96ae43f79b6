"""What the ``coda-sim`` subcommands share: the run config from the command line, JAX's compilation cache."""

from __future__ import annotations

import argparse

from coda_jax.config import Config, ConfigError, load_all, with_overrides
from coda_jax.host import compile_cache_dir, enable_compile_cache  # noqa: F401 - compile_cache_dir: callers


def build_config(args: argparse.Namespace) -> Config:
    """The run config: defaults (embedded synthetic run), then every ``--config`` file in order (each later file
    overrides the earlier ones key by key), ``--set``, ``--data-dir``, ``--data-path`` (later ones win).
    Command-line values are read by their field's type, not as YAML: ``--data-dir "runs/x #1"`` and
    ``--data-dir 2024`` are those exact paths."""
    paths = [args.config] if isinstance(args.config, str) else list(args.config or [])
    cfg = load_all(paths) if paths else Config()
    overrides = list(args.set or [])
    for flag, key, value in (("--data-dir", "data.data_dir", getattr(args, "data_dir", None)),
                             ("--data-path", "data.path", getattr(args, "data_path", None))):
        if value is None:
            continue
        if not value.strip():          # e.g. an unset shell variable: do not fall back to the config's path
            raise ConfigError(f"{flag}: empty path")
        overrides.append(f"{key}={value}")  # a str field: the text after the first '=' is kept verbatim
    return with_overrides(cfg, overrides) if overrides else cfg


def use_compile_cache(args: argparse.Namespace) -> None:
    """Turn on JAX's persistent compilation cache (:func:`coda_jax.host.enable_compile_cache`) unless
    ``--no-compile-cache``: compiled device stages are kept on disk, so a second run (or sweep) of the same
    structure loads them instead of compiling. A cache folder that cannot be written is refused first."""
    if getattr(args, "no_compile_cache", False):
        return
    import os  # noqa: PLC0415

    from coda_jax.results_io import prove_writable  # noqa: PLC0415

    folder = compile_cache_dir()
    # JAX itself only warns "Error reading persistent compilation cache entry" (without naming the variable)
    # and compiles again every run; a folder that cannot be written is a setup problem, said before any work.
    label = f"CODA_JAX_CACHE={folder}" if os.environ.get("CODA_JAX_CACHE") else f"compilation cache {folder}"
    try:
        prove_writable(folder, label)
    except ConfigError as err:
        raise ConfigError(f"{err} (JAX's persistent compilation cache); point CODA_JAX_CACHE at a writable "
                          "folder, or give --no-compile-cache") from None
    enable_compile_cache(folder)
