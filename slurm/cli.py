"""The ``slurmgate`` command: ``slurmgate devcluster up|down|status``."""

from __future__ import annotations

import argparse
import logging
import sys

from . import devcluster


def _devcluster(args: argparse.Namespace) -> int:
    if args.action == "up":
        layout = devcluster.up()
        print(f"dev cluster is up: node {layout.node}, partitions cpu (default) and gpu (2 GPUs)")
    elif args.action == "down":
        devcluster.down()
        print("dev cluster is down")
    else:
        for name, value in devcluster.status().items():
            print(f"{name}: {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``slurmgate`` command."""
    parser = argparse.ArgumentParser(prog="slurmgate", description="Jupyter kernels as Slurm jobs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True)
    cluster = commands.add_parser(
        "devcluster",
        help="manage the one-host Slurm cluster for development and tests (needs root)",
    )
    cluster.add_argument("action", choices=["up", "down", "status"])
    cluster.set_defaults(handler=_devcluster)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``slurmgate`` command and return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.handler(args)
    except devcluster.DevClusterError as error:
        print(f"slurmgate: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
