"""The scaling benchmark's printed table (the figures the issue sets bars for) and its PNG."""

from __future__ import annotations

from pathlib import Path

BARS = {"fedjax": 10.0, "step_loop": 20.0}
"""Engine speedups the issue asks for at the ratio point on the 2-core CPU."""
PER_USER_BAR, FLOPS_BAR, SCANN_BAR = 1.5, 0.25, 10.0


def _ok(good: bool | None) -> str:
    return "n/a" if good is None else ("meets" if good else "MISSES")


def bar_rows(fig: dict) -> list[tuple[str, str, str, str]]:
    """``(figure, value, bar, verdict)`` rows of the ratios the issue sets bars for."""
    rows = []
    n = fig["ratio_users"]
    for name, c in fig["contenders"].items():
        bar = BARS.get(name)
        rows.append((f"engine / {name} at {n} users (timed on {c['users_timed']}, extrapolated)",
                     f"{c['engine_speedup']:.1f}x", f">= {bar:.0f}x" if bar else "-",
                     _ok(c["engine_speedup"] >= bar) if bar else "-"))
    r = fig["per_user_ratio_largest_to_ratio_point"]
    if r["ratio"] is None:
        rows.append((f"time per user at 16x / at {n} users", "no larger point run", f"<= {PER_USER_BAR}", "n/a"))
    else:
        rows.append((f"time per user at {r['largest']} / at {n} users", f"{r['ratio']:.2f}", f"<= {PER_USER_BAR}",
                     _ok(r["ratio"] <= PER_USER_BAR)))
    f = fig["flops"]
    rows.append(("device-stage FLOP/s / matmul FLOP/s", f"{100 * f['fraction_of_matmul']:.1f}%",
                 f">= {100 * FLOPS_BAR:.0f}%", _ok(f["fraction_of_matmul"] >= FLOPS_BAR)))
    ret = fig.get("retrieval")
    if ret:
        ok = ret["recall_at_k"] >= 0.9
        rows.append((f"ScaNN / exact queries/s at recall@{ret['k']} >= 0.9 ({ret['pool_rows']} rows)",
                     f"{ret['speedup']:.1f}x (recall {ret['recall_at_k']:.3f})",
                     f">= {SCANN_BAR:.0f}x", _ok(ok and ret["speedup"] >= SCANN_BAR)))
    return rows


def print_table(fig: dict) -> None:
    """Print the run's figures: the scaling points, contenders with parity, FLOP/s, retrieval, and the bars."""
    print(f"device: {fig['device']} ({fig['platform']}, {fig['devices']} device(s)); chunk {fig['chunk_users']} "
          f"users, lockstep {fig['lockstep_users']}; {fig['steps_per_user']} optimizer steps per user "
          f"({', '.join(fig['methods'])})")
    print(f"engine compile: {fig['engine_compile_seconds']:.2f} s ({fig['engine_compiles']} program(s))")
    print(f"{'users':>8} {'seconds':>9} {'ms/user':>9} {'user-steps/s':>13} {'peak RSS':>10}")
    for p in fig["points"]:
        dev = p["device_memory"]
        extra = f"  device peak {dev['peak_bytes_in_use'] / 2**20:.0f} MiB" if dev else ""
        print(f"{p['users']:>8} {p['seconds']:>9.2f} {1e3 * p['per_user_seconds']:>9.3f} "
              f"{p['user_steps_per_second']:>13.0f} {p['peak_rss_bytes'] / 2**20:>7.0f} MiB{extra}")
    e = fig["engine_at_ratio_point"]
    print(f"contenders on the first {fig['subset_users']} users (time per user extrapolated to "
          f"{fig['ratio_users']}; engine {1e3 * e['per_user_seconds']:.3f} ms/user there):")
    for name, c in fig["contenders"].items():
        print(f"  {name:<10} {1e3 * c['per_user_seconds']:9.3f} ms/user, compile {c['compile_seconds']:.2f} s; "
              f"parity: max |AUC diff| {c['auc_max_abs_difference']:.1e}, max |logit diff| "
              f"{c['logit_max_abs_difference']:.1e}")
    f = fig["flops"]
    print(f"FLOPs per user {f['per_user']:.3g} (XLA cost analysis); achieved {f['achieved_flops_per_second'] / 1e9:.2f} "
          f"GFLOP/s vs matmul {fig['matmul']['flops_per_second'] / 1e9:.1f} GFLOP/s")
    ret = fig.get("retrieval")
    if ret:
        print(f"retrieval ({ret['pool_rows']} rows x {ret['dim']}): exact {ret['exact']['qps']:.0f} queries/s; "
              f"ScaNN {ret['scann']['qps']:.0f} queries/s (build {ret['scann']['build_s']:.1f} s, settings "
              f"{ret['scann']['settings']}), recall@{ret['k']} {ret['recall_at_k']:.3f}")
    rows = bar_rows(fig)
    width = max(len(r[0]) for r in rows)
    print("bars:")
    for r in rows:
        print(f"  {r[0]:<{width}}  {r[1]:>24}  {r[2]:>8}  {r[3]}")


def write_plot(fig: dict, path: Path) -> None:
    """scaling.png: time per user and user-steps/s against users (log x), and the contenders' time per user
    over the engine's at the ratio point."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    users = [p["users"] for p in fig["points"]]
    fig_, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.2))
    a.plot(users, [1e3 * p["per_user_seconds"] for p in fig["points"]], "o-", label="engine")
    for i, (name, con) in enumerate(fig["contenders"].items()):
        a.axhline(1e3 * con["per_user_seconds"], ls="--", lw=1, color=f"C{i + 1}",
                  label=f"{name} (timed on {con['users_timed']} users)")
    a.set(xscale="log", yscale="log", xlabel="users", ylabel="device-stage time per user (ms)",
          title="time per user")
    a.legend(fontsize=7)
    b.plot(users, [p["user_steps_per_second"] for p in fig["points"]], "o-")
    b.set(xscale="log", xlabel="users", ylabel="user-steps per second", title="throughput (engine)")
    b.set_ylim(bottom=0)
    names = list(fig["contenders"])
    c.bar(names, [fig["contenders"][n]["engine_speedup"] for n in names])
    for n, bar in BARS.items():
        if n in names:
            c.plot([names.index(n) - 0.4, names.index(n) + 0.4], [bar, bar], "r-", lw=1)
    c.set(yscale="log", ylabel="contender time / engine time",
          title=f"engine speedup at {fig['ratio_users']} users (red: bar)")
    fig_.tight_layout()
    fig_.savefig(path, dpi=110)
    plt.close(fig_)
