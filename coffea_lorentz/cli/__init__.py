"""The ``coffea-lorentz`` command: one entry point, one module per subcommand.

Each module in :data:`SUBCOMMANDS` defines ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int`` as the parser default. Any failure exits non-zero with a one-line
message; ``--traceback`` shows the full Python traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import CoffeaLorentzError

__all__ = ["main", "SUBCOMMANDS"]

SUBCOMMANDS: tuple[str, ...] = ("run", "serve", "demo", "generate", "train", "reweight", "models")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="coffea-lorentz",
        description="Lorentz-equivariant jet taggers for coffea analyses, served by Triton.",
    )
    parser.add_argument("--traceback", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("coffea-lorentz: interrupted", file=sys.stderr)
        return 130
    except (CoffeaLorentzError, OSError, KeyError, ValueError) as err:
        if args.traceback:
            raise
        print(f"coffea-lorentz {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
