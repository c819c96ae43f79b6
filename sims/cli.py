"""``coda-sim``: run a simulation, or a benchmark.

  coda-sim run [--config FILE] [--data-dir DIR] [--out DIR] [--set KEY=VALUE ...]
  coda-sim sweep [--config FILE] [--data-dir DIR] --grid KEY=V1,V2 [--grid ...] [--out DIR]
  coda-sim bench engine [--users N] [--steps N] [--loop-users N] [--chunk-users N] [--lockstep-users N] [--out FILE]
  coda-sim bench scaling [--users N [N ...]] [--subset N] [--no-retrieval] [--quick] --out DIR
  coda-sim combine RUN_DIR RUN_DIR [...] [--out FILE]
  coda-sim report RUN_DIR [RUN_DIR ...] [--out DIR] [--format png,pdf,svg]
"""

from __future__ import annotations

import argparse
import sys

from coda_jax.config import ConfigError
from coda_jax.data.ingest import DataError
from sims.common import build_config, compile_cache_dir, use_compile_cache  # noqa: F401 - build_config: callers


def cmd_run(args: argparse.Namespace) -> int:
    from coda_jax.results_io import check_out_dir  # noqa: PLC0415

    cfg = build_config(args)
    if args.plot and not args.out:
        raise ConfigError("--plot: needs --out DIR (the figures go next to results.json)")
    if args.out:                     # before any work: a bad --out found after an hour of simulation loses it
        check_out_dir(args.out, ("results.json",), overwrite=args.overwrite)
    if args.plot:
        try:
            import matplotlib  # noqa: F401, PLC0415 - before the run, not after it
        except ImportError as err:
            raise ConfigError(f"--plot: needs matplotlib ({err}); pip install 'matplotlib>=3.7'") from None

    import jax  # noqa: PLC0415 - keep `--help` fast

    start_processes(args)
    use_compile_cache(args)

    from coda_jax.simulate import simulate  # noqa: PLC0415

    print(f"coda-sim run: source={cfg.data.source} model={cfg.model.name} {len(jax.devices())} device(s) on "
          f"{jax.devices()[0].platform}" + (f", process {jax.process_index()} of {jax.process_count()}"
                                            if jax.process_count() > 1 else ""), file=sys.stderr)
    results = simulate(cfg, show_progress=not args.quiet)
    if jax.process_index() > 0:      # every process simulated its share of the users; process 0 writes
        print(f"coda-sim run: process {jax.process_index()}: done (process 0 writes the results)", file=sys.stderr)
        return 0
    print(results.table())
    if args.out:
        path = results.save(args.out)
        print(f"results written to {path}")
    if args.plot:
        from sims.report import report  # noqa: PLC0415

        figures = report([args.out], args.out)
        print(f"figures written to {args.out}: {', '.join(p.name for p in figures)}")
    return 0


def start_processes(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` for ``--coordinator/--num-processes/--process-id`` or ``--distributed``
    (the cluster detected by JAX: Slurm, Open MPI, ...), before any other JAX call."""
    given = [getattr(args, k, None) for k in ("coordinator", "num_processes", "process_id")]
    if any(v is not None for v in given) or getattr(args, "distributed", False):
        if any(v is not None for v in given) and any(v is None for v in given):
            raise ConfigError("--coordinator, --num-processes and --process-id go together (or --distributed "
                              "alone, to let JAX detect the cluster)")
        if given[1] is not None and not 0 <= given[2] < given[1]:
            raise ConfigError(f"--process-id: must be in [0, {given[1]}), got {given[2]}")
        from coda_jax.device.multihost import initialize  # noqa: PLC0415

        initialize(*given)


def cmd_sweep(args: argparse.Namespace) -> int:
    from sims.sweep import main as sweep  # noqa: PLC0415

    use_compile_cache(args)
    return sweep(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.which == "scaling":
        from sims.bench_scaling import main as bench_scaling  # noqa: PLC0415

        return bench_scaling(args.options)
    from sims.bench_engine import main as bench_engine  # noqa: PLC0415

    return bench_engine(args.options)          # the benchmark's own parser reads (and documents) its options


def cmd_combine(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from coda_jax.evaluate import combine_runs, few_users_warning, format_difference  # noqa: PLC0415
    from coda_jax.results_io import check_out_file, read_json, save_json  # noqa: PLC0415

    if args.out:
        check_out_file(args.out, overwrite=args.overwrite)
    results, sources, seen = [], [], {}
    for d in args.runs:
        path = Path(d) / "results.json" if Path(d).is_dir() else Path(d)
        if not path.is_file():
            raise ConfigError(f"{path}: no results.json here (give the --out folders of coda-sim run)")
        real = path.resolve()
        if real in seen:
            raise ConfigError(f"{path}: the same results.json as {seen[real]} (each run may be given once)")
        seen[real] = path
        results.append(read_json(path))
        sources.append(str(path))
    first = results[0].get("config") if isinstance(results[0], dict) else None
    anchor = str(((first or {}).get("eval") or {}).get("anchor", "coda")) if isinstance(first, dict) else "coda"
    try:
        out = combine_runs(results, sources=sources, reference=anchor)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    print(f"{out['runs']} runs (seeds {out['seeds']}), {out['users']} users evaluated in every run; "
          f"per-user AUC averaged over runs")
    width = max(7 * out["runs"] + 3, 10)           # one "0.6871 " per run, then a gap
    print(f"{'method':<14}{'AUC':>8}   {'per run':<{width}}{anchor} - method [95% CI]")
    for name, m in out["methods"].items():
        cmp = out["comparisons"].get(name)
        diff = format_difference(cmp)
        runs = " ".join(f"{a:.4f}" for a in m["per_run_auc"])
        print(f"{name:<14}{m['auc']:>8.4f}   {runs:<{width}}{diff}")
    if few_users_warning(out["users"]):
        print(few_users_warning(out["users"]))
    if args.out:
        from coda_jax.provenance import RESULTS_SCHEMA_VERSION, provenance  # noqa: PLC0415

        save_json(args.out, {"schema_version": RESULTS_SCHEMA_VERSION, **out, "anchor": anchor,
                             "sources": sources, "provenance": provenance()})
        print(f"written to {args.out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sims.report import main as report  # noqa: PLC0415

    return report(args)


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coda-sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    def add_config_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", action="append", metavar="FILE",
                       help="YAML config (see configs/); keys not given keep their defaults. Repeatable: later "
                            "files override earlier ones key by key, e.g. --config configs/movielens100k.yaml "
                            "--config configs/models/deepfm.yaml")
        p.add_argument("--data-dir", help="folder of the dataset's files: MovieLens 100K / 1M / 20M-25M-latest "
                                          "(sets data.data_dir)")
        p.add_argument("--data-path", help="the data file of single-file sources: Amazon reviews, Taobao "
                                           "UserBehavior.csv, generic CSV (sets data.path)")
        p.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override one config value, e.g. --set finetune.steps=200 (repeatable). Values are "
                            "read by the key's type, not as YAML: text as given; numbers as Python int() / "
                            "float() (1e-3); true/false, yes/no or 1/0; lists as [a, b] or a,b; an empty "
                            "value unsets an optional path")
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--no-compile-cache", action="store_true",
                       help="do not use JAX's persistent compilation cache (on by default, in $CODA_JAX_CACHE or "
                            "~/.cache/coda-jax/xla: a second run of the same config compiles nothing)")

    run = sub.add_parser(
        "run", help="simulate CoDA and the baselines, print the results table",
        description="Simulate CoDA and the baselines (global, local, local+random, local+coarse, coda; mpda "
                    "where methods lists it) and "
                    "print per-method user-averaged AUC with coda's paired bootstrap differences. Without "
                    "--config it runs the embedded default: the planted synthetic world's stale-cloud variant "
                    "(a known answer: reference rows oracle, group-oracle, ... in the table; other variants: "
                    "configs/planted_*.yaml), no download. Real data: "
                    "--config configs/movielens100k.yaml --data-dir PATH/ml-100k (the folder holding u.data, "
                    "u.item, u.user as downloaded); likewise configs/movielens1m.yaml and movielens20m.yaml "
                    "with --data-dir; configs/amazon.yaml, taobao.yaml, csv_example.yaml with --data-path FILE. "
                    "model.name picks din, lr, deepfm, wide_deep or pnn (a model overlay after the dataset config: "
                    "--config configs/movielens100k.yaml --config configs/models/deepfm.yaml); retrieval.matching picks sample, user_embedding, item_overlap or "
                    "random_users; data.split picks user_fraction, global_time or two_cutoff (the cloud trains "
                    "before T0, devices hold [T0, T1), tests after T1; configs/movielens100k_two_cutoff.yaml).")
    add_config_args(run)
    run.add_argument("--out", metavar="DIR",
                     help="write results.json (config, per-method and per-user AUC, timings) into this folder "
                          "(created if needed; checked before the run starts). An existing DIR/results.json is "
                          "kept (error) unless --overwrite is given; the file is replaced atomically, so a "
                          "failed write never leaves a truncated one. NaN figures are written as null")
    run.add_argument("--overwrite", action="store_true", help="replace an existing results.json in --out")
    run.add_argument("--coordinator", metavar="HOST:PORT",
                     help="several processes on jax.distributed: process 0's address (with --num-processes and "
                          "--process-id); each process simulates its share of the users, process 0 gathers "
                          "the per-user results and writes them")
    run.add_argument("--num-processes", type=int, metavar="N", help="processes of a --coordinator run")
    run.add_argument("--process-id", type=int, metavar="I", help="this process's index in [0, N)")
    run.add_argument("--distributed", action="store_true",
                     help="jax.distributed with the cluster JAX detects (Slurm, Open MPI, ...)")
    run.add_argument("--plot", action="store_true",
                     help="also write the run's figures and per_user.csv into --out (as coda-sim report does)")
    run.set_defaults(func=cmd_run)
    sweep = sub.add_parser(
        "sweep", help="run a grid of config values (dataset and cloud stage shared where possible)",
        description="Run the cartesian product of --grid values; variants that differ only in device-side "
                    "settings (classifier, finetune, engine, eval, methods) share the dataset and cloud stage. "
                    "Tune on --set data.eval_on=validation, never on test rows.")
    add_config_args(sweep)
    sweep.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                       help="values of one config key to sweep (repeatable; YAML values, lists in brackets)")
    sweep.add_argument("--out", metavar="DIR",
                       help="write each variant's results.json (in variant-<hash of its config>/, when it "
                            "finishes) and sweep.json (after every variant) here. Rerunning the same sweep "
                            "with the same --out resumes it: finished variants are read back, cut-off ones "
                            "run again")
    sweep.add_argument("--overwrite", action="store_true",
                       help="run every variant again, replacing finished ones, and replace a sweep.json "
                            "from a different grid")
    sweep.add_argument("--shard", metavar="I/N",
                       help="run shard I of N into the shared --out store (e.g. a Slurm array job: "
                            "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); each variant is claimed once, a "
                            "rerun of the shard fills what is missing")
    sweep.set_defaults(func=cmd_sweep)
    bench = sub.add_parser("bench", help="benchmarks (engine: vmapped device stage vs a per-user loop; scaling: "
                                         "the device stage against users, contenders, FLOP/s, retrieval)")
    bench.add_argument("which", choices=["engine", "scaling"])
    bench.add_argument("options", nargs=argparse.REMAINDER,
                       help="the benchmark's options (coda-sim bench engine --help lists them)")
    bench.set_defaults(func=cmd_bench)
    combine = sub.add_parser(
        "combine", help="average runs that differ only in their seed, user by user, with paired intervals",
        description="Average the per-user AUC of several runs (coda-sim run --set seed=N --out DIR) over the "
                    "runs, user by user, and print every method's seed-averaged AUC and coda's paired bootstrap "
                    "difference to it: less run-to-run noise than any single run. The runs' configs may differ "
                    "only in seed, methods, engine and eval.")
    combine.add_argument("runs", nargs="+", help="run folders (holding results.json) or results.json files")
    combine.add_argument("--out", metavar="FILE",
                         help="write the combined figures as JSON to this file (not a folder); an existing "
                              "FILE is kept (error) unless --overwrite is given")
    combine.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    combine.set_defaults(func=cmd_combine)
    report = sub.add_parser(
        "report", help="figures (PNG, PDF or SVG) and a per-user CSV of runs and sweeps",
        description="Draw, for each run: every method's user-averaged AUC with 95% bootstrap intervals over "
                    "users (auc.png), coda's paired differences to every other method (coda_differences.png), "
                    "each user's AUC, coda vs global and vs local (per_user_scatter.png); for each sweep "
                    "folder (holding sweep.json): every method's AUC against each swept field "
                    "(sweep_<field>.png); and per_user.csv (run, user_id, method, auc, rows) for pandas. With "
                    "several inputs the figures are prefixed with each input's folder name. Existing figures "
                    "are replaced.")
    report.add_argument("inputs", nargs="+", metavar="RUN_DIR",
                        help="run folders (holding results.json), results.json files or sweep folders "
                             "(holding sweep.json)")
    report.add_argument("--out", metavar="DIR",
                        help="folder for the figures and per_user.csv (created if needed); default: the input's "
                             "own folder (required with several inputs)")
    report.add_argument("--format", default="png", metavar="FMT[,FMT]",
                        help="figure formats, comma-separated: png (default), pdf, svg (vector, for a paper), "
                             "e.g. --format png,pdf,svg writes auc.png, auc.pdf and auc.svg")
    report.set_defaults(func=cmd_report)
    return parser


INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""


def _exit_on_sigint() -> None:
    """From the command line: on SIGINT print ``coda-sim: interrupted`` and leave at once with status 130.

    A Python-level ``KeyboardInterrupt`` waits until a running XLA compilation returns, and unwinding
    through JAX then tearing the interpreter down can crash (exit 139). Here the signal only wakes a watcher
    thread, which exits the process directly, even mid-compilation. Every result file is replaced
    atomically, so nothing half-written is left (at most a stray temporary ``.*.tmp``); an interrupted sweep
    resumes when rerun. A SIGINT that the caller set to be ignored stays ignored.
    """
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        while os.read(read_fd, 1) != bytes([signal.SIGINT]):     # the wakeup fd gets the number of any signal
            pass
        _interrupted_exit()

    signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    signal.signal(signal.SIGINT, lambda signum, frame: None)     # the watcher thread acts on it
    threading.Thread(target=watch, name="coda-sim-sigint", daemon=True).start()


def _interrupted_exit() -> None:
    import os  # noqa: PLC0415

    try:
        sys.stdout.flush()
    except Exception:  # noqa: BLE001 - leaving anyway
        pass
    sys.stderr.write("coda-sim: interrupted\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)         # no interpreter teardown: JAX's can crash with work in flight


def host_devices(environ=None) -> None:
    """One JAX CPU device per core before JAX starts (:func:`coda_jax.host.use_host_devices`: a count already in
    ``XLA_FLAGS`` or ``CODA_JAX_HOST_DEVICES`` wins; accelerators are not affected)."""
    from coda_jax.host import use_host_devices  # noqa: PLC0415

    use_host_devices(environ=environ)


def main(argv: list[str] | None = None) -> int:
    """The ``coda-sim`` command: returns its exit status (2: a config, data or ``--out`` problem, reported on
    stderr as ``coda-sim: error: ...``; 130: interrupted)."""
    from_command_line = argv is None
    if from_command_line:
        host_devices()
    if from_command_line:
        _exit_on_sigint()
    args = make_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DataError) as err:
        print(f"coda-sim: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if from_command_line:
            _interrupted_exit()
        print("coda-sim: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
