"""Writing results without losing any: strict JSON, atomic replacement, ``--out`` checked before the work.

* :func:`strict_json` turns NaN and infinities into ``null`` (bare ``NaN`` is not JSON) and numpy scalars and
  arrays into plain Python values.
* :func:`write_json_atomic` serializes first, writes a temporary file in the destination's folder and
  ``os.replace``-s it over the destination: a failed or interrupted write leaves the previous file intact and
  never a truncated one.
* :func:`check_out_dir` / :func:`check_out_file` find an unusable ``--out`` (a file where a folder is wanted,
  a folder where a file is wanted, a parent that cannot be created, an existing result without
  ``--overwrite``) before any simulation runs, and prove the folder writable: it is created and a probe file
  written into it and removed.
* :func:`save_json` writes a result atomically; when that fails (a full disk, ``ulimit -f``, a folder gone)
  it leaves the results in a fallback file (beside the target, else in the temporary directory) and raises
  :class:`SaveError` naming the target, the reason and the fallback; an earlier file stays as it was.
* :func:`read_json` reads a result back, every failure a :class:`~coda_jax.config.ConfigError` naming the file.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from coda_jax.config import ConfigError


def strict_json(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None``, numpy scalars / arrays as Python values, tuples as lists.

    Dict keys become strings (as ``json`` would write them)."""
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(strict_json(k)): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__"):          # a jax array or another array-like: through numpy
        return strict_json(np.asarray(obj))
    raise TypeError(f"strict_json: cannot write a {type(obj).__name__} as JSON: {obj!r}")


def dumps_strict(obj: Any, indent: int | None = 1) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict_json`): never ``NaN`` or ``Infinity``."""
    return json.dumps(strict_json(obj), indent=indent, allow_nan=False)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    Readers see the old file or the new one, never a part; on any failure the temporary file is removed and
    the previous ``path`` (if any) is left as it was. The folder must exist."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())        # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def remove_stale_temporaries(folder: str | Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the temporary files :func:`write_text_atomic` leaves for ``names`` in ``folder`` when its process
    is killed mid-write (``.NAME.*.tmp``); returns them. Only for a folder no other process is writing to."""
    folder = Path(folder)
    stale = [p for name in names for p in folder.glob(f".{name}.*.tmp") if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """Write ``obj`` as strict JSON (NaN / inf as ``null``) to ``path`` atomically; returns ``path``.

    The text is built before the file system is touched, so an object that cannot be serialized changes
    nothing."""
    return write_text_atomic(path, dumps_strict(obj, indent) + "\n")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(path: str | Path, what: str = "results.json") -> Any:
    """Parse a JSON file; unreadable, empty or truncated files raise :class:`ConfigError` naming ``path``.

    Bare ``NaN`` (written by earlier versions) is accepted."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read this {what}: {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                          f"a truncated or unfinished {what}?") from None


class SaveError(ConfigError):
    """A result could not be written. ``target`` is the file asked for, ``fallback`` the file the results
    were written to instead (None when that failed too)."""

    def __init__(self, message: str, target: Path, fallback: Path | None):
        super().__init__(message)
        self.target, self.fallback = target, fallback


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


def save_json(path: str | Path, obj: Any, indent: int | None = 1) -> Path:
    """:func:`write_json_atomic` into ``path``'s folder (created if needed); returns ``path``.

    On an ``OSError`` the results are written, as compact JSON (smaller), to a fallback file: beside ``path``
    (``NAME.unsaved-<time>-<pid>.json``), else in the temporary directory; then :class:`SaveError` is raised:
    ``cannot write PATH: REASON; the results are in FALLBACK`` (or, when no fallback could be written either,
    what failed). An earlier ``path`` is never touched by a failed write.
    """
    path = Path(path)
    text = dumps_strict(obj, indent) + "\n"           # serialized first: an unwritable object changes nothing
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text_atomic(path, text)
    except OSError as err:
        reason = _reason(err)
    compact = dumps_strict(obj, None) + "\n"
    name = f"{path.stem}.unsaved-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
    failed = []
    for folder in dict.fromkeys((path.parent, Path(tempfile.gettempdir()))):
        try:
            fallback = write_text_atomic(folder / name, compact)
        except OSError as err:
            failed.append(f"{folder / name}: {_reason(err)}")
            continue
        raise SaveError(f"cannot write {path}: {reason}; the results are in {fallback}", path, fallback)
    raise SaveError(f"cannot write {path}: {reason}; no fallback file could be written either "
                    f"({'; '.join(failed)}): these results are lost", path, None)


def prove_writable(path: str | Path, label: str) -> Path:
    """Create the folder ``path`` (and its parents) and write and remove a probe file in it; any failure
    raises :class:`ConfigError` starting with ``label`` (e.g. ``--out DIR``) and the reason."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{label}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{label}: cannot create this folder: {_reason(err)}") from None
    try:
        fd, probe = tempfile.mkstemp(dir=path, prefix=".coda-sim-probe-", suffix=".tmp")
        try:
            os.write(fd, b"probe\n")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{label}: cannot write into this folder: {_reason(err)}") from None
    return path


def _creatable_folder(path: Path, flag: str) -> None:
    """Raise unless ``path`` is a writable folder or could be created as one."""
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{flag} {path}: exists and is not a folder")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path}: this folder is not writable")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"{flag} {path}: cannot create this folder: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path}: cannot create this folder: {parent} is not writable")


def check_out_dir(out: str | Path, files: tuple[str, ...] = ("results.json",), overwrite: bool = False,
                  flag: str = "--out") -> Path:
    """Check, before any work, that results can be written into the folder ``out``: it is created (with its
    parents) and a probe file is written into it and removed.

    Raises :class:`ConfigError` when ``out`` is a file, is not writable or cannot be created, or already
    holds one of ``files`` and ``overwrite`` is false (the message names the file and ``--overwrite``)."""
    out = Path(out)
    _creatable_folder(out, flag)
    if not overwrite:
        for name in files:
            if (out / name).exists():
                raise ConfigError(f"{flag} {out}: {out / name} already exists; give --overwrite to replace it "
                                  "(or choose another --out)")
    prove_writable(out, f"{flag} {out}")
    return out


def check_out_file(out: str | Path, overwrite: bool = False, flag: str = "--out") -> Path:
    """Check, before any work, that a file can be written at ``out``: not a folder, its folder writable or
    creatable, and not an existing file unless ``overwrite``."""
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{flag} {out}: is a folder; give a file name, e.g. {out / 'combined.json'}")
    if out.exists() and not overwrite:
        raise ConfigError(f"{flag} {out}: already exists; give --overwrite to replace it (or choose another --out)")
    folder = out.parent if str(out.parent) else Path(".")
    _creatable_folder(folder, flag)
    prove_writable(folder, f"{flag} {folder}")
    return out
