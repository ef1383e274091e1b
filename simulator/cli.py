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
    return parser


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
