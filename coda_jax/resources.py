"""Peak memory of a run: host RSS of this process and, where the backend reports it, accelerator memory."""

from __future__ import annotations

import resource
import sys

import jax

GIB = float(1 << 30)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``/proc/self/clear_refs``); False if not
    possible (then :func:`peak_rss_bytes` is the peak since the process started)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process in bytes: Linux's ``VmHWM`` (since the last :func:`reset_peak_rss`),
    else ``ru_maxrss`` (since the start; KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def device_memory_stats(devices: list | None = None) -> list[dict] | None:
    """``memory_stats()`` of each device (all JAX sees by default), or None where a device keeps no statistics
    (the CPU backend)."""
    out = []
    for dev in devices if devices is not None else jax.local_devices():
        try:
            stats = dev.memory_stats()
        except Exception:  # noqa: BLE001 - backends without statistics raise various errors
            stats = None
        if not stats:
            return None
        out.append(stats)
    return out


def device_peak_bytes(devices: list | None = None) -> list[int] | None:
    """Peak bytes in use on each device (``peak_bytes_in_use``), or None where the backend keeps no statistics."""
    stats = device_memory_stats(devices)
    if stats is None or not all("peak_bytes_in_use" in s for s in stats):
        return None
    return [int(s["peak_bytes_in_use"]) for s in stats]


def memory_report() -> dict:
    """``{"peak_rss_gb": float, "device_peak_gb": [float per device] or None}`` at the time of the call."""
    dev = device_peak_bytes()
    return {"peak_rss_gb": round(peak_rss_bytes() / GIB, 3),
            "device_peak_gb": None if dev is None else [round(b / GIB, 3) for b in dev]}
