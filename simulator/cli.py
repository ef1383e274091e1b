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
    catalog = commands.add_parser("catalog", help="list the GPUs, links or workloads ddlsim knows",
                                  description="List what the hardware and workload catalogs hold.")
    catalog.add_argument("what", nargs="?", choices=("gpus", "links", "workloads"),
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
    return parser


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
