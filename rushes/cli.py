"""The ``rushes`` command: one subcommand per stage.

Each stage module exposes ``register(subparsers)``, adding its subcommands with
``set_defaults(func=handler)``; handlers import heavy libraries (torch, ray) only when they run, so
``rushes --help`` stays fast. A handler returns the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that register subcommands, in the order they appear in --help.
COMMAND_MODULES = ("curate.cli", "caption.cli", "train.cli", "rushes.report.cli")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every stage's subcommands."""
    from rushes import __version__

    parser = argparse.ArgumentParser(
        prog="rushes",
        description="Turn raw footage into text-to-video training data (curate -> filter -> caption -> train), "
                    "and look into the manifests (inspect).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"rushes {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``rushes`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
