"""The ``ddlsim`` command."""

from __future__ import annotations

import argparse
import sys

from models.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ddlsim",
        description="Predict how data-parallel SGD training scales on a GPU cluster.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    catalog = commands.add_parser("catalog",
                                  help="list the GPUs, links, workloads or frameworks ddlsim knows",
                                  description="List what the hardware and workload catalogs hold.")
    catalog.add_argument("what", nargs="?", choices=("gpus", "links", "workloads", "frameworks"),
                         default="gpus", help="which catalog to list (default: gpus)")
    catalog.set_defaults(handler=_catalog)

    validate = commands.add_parser(
        "validate", help="compare predictions with published measurements",
        description="Predict every row of a CSV of published measurements and report the "
                    "signed error per row, a summary by quantity and a parity plot.")
    validate.add_argument("--data", metavar="CSV",
                          help="measurements to check (default: data/validation/published.csv)")
    validate.add_argument("--out", metavar="DIR",
                          help="also write rows.csv, summary.csv and parity.png/.svg here")
    validate.set_defaults(handler=_validate)

    _add_calibrate(commands)
    _add_predict(commands)
    _add_sweep(commands)
    _add_plot(commands)
    _add_bench(commands)
    return parser


def _add_scenario(parser: argparse.ArgumentParser, set_help: str) -> None:
    """The SCENARIO argument and its --set overrides."""
    parser.add_argument("scenario", nargs="?", metavar="SCENARIO",
                        help="a scenario TOML file or the name of a built-in example "
                             "(data/scenarios/; default: default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="FIELD=VALUE",
                        help=set_help + " (repeatable; the value is read as TOML)")


def _add_predict(commands) -> None:
    predict = commands.add_parser(
        "predict", help="simulate one scenario: iteration time, throughput, time to accuracy",
        description="Simulate a scenario file (default: the built-in default scenario) and "
                    "print iteration time and its breakdown, throughput, scaling "
                    "efficiency, time to accuracy, GPU-hours and cost.")
    _add_scenario(predict, "override a scenario field, e.g. --set cluster.nodes=16")
    predict.add_argument("--json", action="store_true",
                         help="print one JSON object instead of the table")
    predict.add_argument("--out", metavar="DIR",
                         help="also write the run's tables (CSV), the resolved scenario, "
                              "prediction.json and plots here")
    predict.set_defaults(handler=_predict)


def _predict(args: argparse.Namespace) -> int:
    from simulator.predict import predict
    from simulator.result import to_json
    from simulator.scenario import default_scenario_path, load_scenario

    scenario = load_scenario(args.scenario or default_scenario_path(), args.overrides)
    prediction = predict(scenario)
    if args.out:
        from simulator.plots import plot_prediction

        prediction.write(args.out)
        plot_prediction(prediction, args.out)
    if args.json:
        print(to_json(prediction.summary()), end="")
    else:
        print(prediction_table(prediction.summary()))
    return 0


def _seconds(value) -> str:
    if value is None:
        return "n/a"
    if value >= 3600:
        return f"{value:.4g} s ({value / 3600:.3g} h)"
    if value >= 1:
        return f"{value:.4g} s"
    return f"{value * 1e3:.4g} ms"


def prediction_table(summary: dict) -> str:
    """The readable summary of one prediction."""
    breakdown = summary["iteration_time_breakdown_s"]

    def number(value, fmt: str) -> str:
        return "n/a" if value is None else format(value, fmt)

    rows = [
        ("workload", f"{summary['workload']} (global batch {summary['global_batch']}, "
                     f"{summary['precision']}, {summary['framework']})"),
        ("cluster", f"{summary['gpus']} x {summary['gpu']}"),
        ("algorithm", summary["algorithm"]),
        ("iteration time (mean)", _seconds(summary["iteration_time_s"])),
        ("  compute", _seconds(breakdown["compute"])
         + (f" (of which {_seconds(summary['host_overhead_s'])} framework host time)"
            if summary.get("host_overhead_s") else "")),
        ("  exposed communication", _seconds(breakdown["communication"])),
        ("  waiting (stragglers, barriers)", _seconds(breakdown["waiting"])),
        ("iteration time p50 / p90 / p99",
         " / ".join(_seconds(summary[f"iteration_time_p{q}_s"]) for q in (50, 90, 99))),
        ("throughput", f"{summary['throughput_samples_per_s']:,.1f} samples/s"),
        ("scaling efficiency", number(summary["scaling_efficiency"], ".1%")),
        ("staleness mean / p90", f"{number(summary['staleness_mean'], '.2f')} / "
                                 f"{number(summary['staleness_p90'], '.2f')}"),
        ("target", summary["target"]),
        ("schedule factor", number(summary["schedule_factor"], ".3f")),
        ("samples to target", number(summary["samples_to_target"], ",.4g")),
        ("time to accuracy", _seconds(summary["time_to_accuracy_s"])),
        ("GPU-hours", number(summary["gpu_hours"], ",.2f")),
        ("cost", "n/a (no price for this GPU)" if summary["cost_usd"] is None
         and summary["price_per_gpu_hour_usd"] is None
         else "$" + number(summary["cost_usd"], ",.2f")),
    ]
    if summary["time_to_accuracy_note"]:
        rows.append(("note", summary["time_to_accuracy_note"]))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _add_sweep(commands) -> None:
    sweep = commands.add_parser(
        "sweep", help="predict a scenario over a grid of overrides, in parallel",
        description="Predict SCENARIO at every point of the grid that --vary lists span "
                    "(their cartesian product), each point in its own process: local "
                    "processes by default, or a Dask cluster with --scheduler. Each "
                    "finished point is written at once to DIR/points/<key>.json (its "
                    "overrides, resolved scenario, summary, status and wall seconds) with "
                    "its accuracy curve, iteration-time and staleness tables; a failing "
                    "point records its error and the others go on. At the end "
                    "DIR/sweep.csv holds one row per point and DIR/sweep.json the "
                    "definition. Progress lines go to stderr. Exit status: 0 when every "
                    "point succeeded, 1 when some failed, 2 for bad arguments.",
        epilog="example: ddlsim sweep modern-h100 --vary cluster.nodes=1,2,4,8,16 "
               "--vary algorithm.name=allreduce,ps-async --out runs/scaling")
    _add_scenario(sweep, "override a scenario field at every point, e.g. --set "
                         "run.iterations=50")
    sweep.add_argument("--vary", action="append", default=[], metavar="FIELD=V1,V2,...",
                       help="a scenario field and the comma-separated values it takes, each "
                            "read as TOML like --set, e.g. --vary cluster.nodes=1,2,4,8 "
                            "(repeatable; at least one; the grid is their product)")
    sweep.add_argument("--out", required=True, metavar="DIR",
                       help="directory for sweep.json, sweep.csv and points/ (created if "
                            "missing)")
    sweep.add_argument("--workers", type=int, metavar="N",
                       help="local worker processes (default: the number of CPUs); not "
                            "with --scheduler")
    sweep.add_argument("--start-method", choices=("fork", "forkserver", "spawn"),
                       help="how local worker processes start (default: fork on Linux "
                            "when ddlsim runs no other thread, so workers start with "
                            "ddlsim loaded; else forkserver, or spawn where neither "
                            "exists)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the points on the Dask cluster whose scheduler listens at "
                            "ADDRESS (e.g. tcp://scheduler-host:8786); its workers need ddlsim "
                            "installed; needs the 'dask' extra")
    sweep.add_argument("--resume", action="store_true",
                       help="keep the points already written in DIR and run only the "
                            "missing ones (DIR must hold the same sweep)")
    sweep.add_argument("--retry-errors", action="store_true",
                       help="with --resume, also run again the points that failed")
    sweep.add_argument("--quiet", action="store_true",
                       help="no progress lines on stderr")
    sweep.set_defaults(handler=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from simulator.sweep import make_sweep, run_sweep, stderr_progress

    definition = make_sweep(args.scenario, args.vary, args.overrides)
    try:
        table = run_sweep(definition, args.out, workers=args.workers,
                          start_method=args.start_method, scheduler=args.scheduler,
                          resume=args.resume,
                          retry_errors=args.retry_errors,
                          progress=None if args.quiet else stderr_progress)
    except KeyboardInterrupt:
        print(f"ddlsim sweep: interrupted; the finished points are in {args.out}/points "
              "(run the same command with --resume to finish)", file=sys.stderr)
        return 130
    failed = int((table["status"] != "ok").sum())
    print(f"{len(table) - failed} of {len(table)} points ok; wrote {args.out}/sweep.csv, "
          f"{args.out}/sweep.json and {args.out}/points/")
    if failed:
        print(f"{failed} point(s) failed: see the error_type and error_message columns of "
              f"{args.out}/sweep.csv (rerun them with --resume --retry-errors)",
              file=sys.stderr)
        return 1
    return 0


def _add_plot(commands) -> None:
    plot = commands.add_parser(
        "plot", help="plot a sweep or a prediction directory (PNG and SVG)",
        description="Plot the results in DIR. For a sweep directory (ddlsim sweep --out): "
                    "throughput and scaling efficiency against GPUs, the stacked "
                    "iteration-time breakdown per GPU count, time to accuracy and cost "
                    "against GPUs, proxy accuracy against wall-clock per point, and the "
                    "iteration-time (straggler) and staleness distributions, one line or "
                    "panel per algorithm. For a prediction directory (ddlsim predict "
                    "--out): that prediction's iteration-time, staleness and accuracy "
                    "plots.")
    plot.add_argument("directory", metavar="DIR",
                      help="a directory written by 'ddlsim sweep --out' or "
                           "'ddlsim predict --out'")
    plot.add_argument("--out", metavar="PLOTDIR",
                      help="where to write the plots (default: DIR/plots)")
    plot.set_defaults(handler=_plot)


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulator.plots import plot_directory

    out = Path(args.out) if args.out else Path(args.directory) / "plots"
    written = plot_directory(args.directory, out)
    for path in written:
        print(path)
    return 0


def _add_bench(commands) -> None:
    bench = commands.add_parser(
        "bench", help="measure the simulation engine's speed (events per second)",
        description="Time the bare SimPy event rate and the engine on large runs: a "
                    "1024-GPU synchronous ResNet-50 all-reduce run (128 nodes x 8 H100, "
                    "NVLink 4, 8 NDR InfiniBand NICs per node, DDP buckets, log-normal "
                    "noise sigma 0.05, 100 iterations) and, when ps-async is available, "
                    "a 256-worker asynchronous parameter-server run. Prints wall seconds, "
                    "events and events per second for each.")
    bench.add_argument("--quick", action="store_true",
                       help="tiny sizes (seconds in all): checks that the benchmark runs, "
                            "its figures mean little")
    bench.add_argument("--json", action="store_true",
                       help="print one JSON object instead of the table")
    bench.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from simulator import bench

    print(bench.report(args.quick, args.json))
    return 0


def _add_calibrate(commands) -> None:
    calibrate = commands.add_parser(
        "calibrate", help="measure this machine's GPU and write its calibration file",
        description="Run the CUDA calibration kernels on GPU 0 (needs CuPy and an NVIDIA "
                    "GPU), fit the compute-model constants and write "
                    "data/calibration/<gpu-id>.json.")
    calibrate.add_argument("--gpu-id", metavar="ID",
                           help="catalog id of this GPU (default: from the device name)")
    calibrate.add_argument("--out", metavar="PATH",
                           help="where to write the JSON (default: data/calibration/<gpu-id>.json)")
    calibrate.add_argument("--quick", action="store_true",
                           help="smaller sweep and fewer repeats (a minute or two)")
    calibrate.set_defaults(handler=_calibrate)


def _calibrate(args: argparse.Namespace) -> int:
    import json
    import shlex

    from models.calibration import calibrate

    command = ["ddlsim", "calibrate"]
    for flag, value in (("--gpu-id", args.gpu_id), ("--out", args.out)):
        command += [flag, value] if value is not None else []
    command += ["--quick"] if args.quick else []
    try:
        path, document = calibrate.calibrate(gpu_id=args.gpu_id, out=args.out, quick=args.quick,
                                             command=shlex.join(command))
    except calibrate.GPUUnavailable as exc:
        print(f"ddlsim calibrate: no GPU to calibrate: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(document["constants"], indent=1))
    print(f"wrote {path}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulator import validation
    from simulator.output import atomic_write_text

    rows = validation.predict_rows(validation.load_measurements(args.data))
    summary = validation.summarize(rows)
    shown = rows[["id", "quantity", "measured", "predicted", "error_pct", "status"]]
    with _pandas_display():
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print()
        print(summary.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "rows.csv", rows.to_csv(index=False))
        atomic_write_text(out / "summary.csv", summary.to_csv(index=False))
        for suffix in ("png", "svg"):
            validation.parity_plot(rows, out / f"parity.{suffix}")
        print(f"\nwrote {out}/rows.csv, summary.csv, parity.png, parity.svg")
    return 0


def _pandas_display():
    import pandas as pd

    return pd.option_context("display.max_colwidth", 90, "display.width", 200)


def _catalog(args: argparse.Namespace) -> int:
    from simulator.tables import catalog_table

    print(catalog_table(args.what).to_string(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"ddlsim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
