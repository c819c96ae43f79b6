"""Peak memory of a run: host RSS of this process and, where the backend reports it, accelerator memory."""

from __future__ import annotations

import resource
import sys

import jax

GIB = float(1 << 30)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far, in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def device_peak_bytes(devices: list | None = None) -> list[int] | None:
    """Peak bytes in use on each device JAX sees (``memory_stats()['peak_bytes_in_use']``), or None where the
    backend keeps no statistics (the CPU backend)."""
    out = []
    for dev in devices if devices is not None else jax.devices():
        try:
            stats = dev.memory_stats()
        except Exception:  # noqa: BLE001 - backends without statistics raise various errors
            stats = None
        if not stats or "peak_bytes_in_use" not in stats:
            return None
        out.append(int(stats["peak_bytes_in_use"]))
    return out


def memory_report() -> dict:
    """``{"peak_rss_gb": float, "device_peak_gb": [float per device] or None}`` at the time of the call."""
    dev = device_peak_bytes()
    return {"peak_rss_gb": round(peak_rss_bytes() / GIB, 3),
            "device_peak_gb": None if dev is None else [round(b / GIB, 3) for b in dev]}
