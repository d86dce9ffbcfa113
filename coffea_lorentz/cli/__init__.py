"""The ``coffea-lorentz`` command: one entry point, one module per subcommand.

Each module in :data:`SUBCOMMANDS` defines ``register(subparsers)``, which adds its parser and
sets ``func(args) -> int`` as the parser default. Any failure exits non-zero with a one-line
message; ``--traceback`` shows the full Python traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import warnings

from ..errors import CoffeaLorentzError

__all__ = ["main", "SUBCOMMANDS"]

SUBCOMMANDS: tuple[str, ...] = ("run", "serve", "demo", "generate", "train", "reweight", "models", "check")


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
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by commands that write what made them
    # A batch system ends a job with SIGTERM: unwind like Ctrl-C, so servers, workers and
    # temporary folders are cleaned up and finished chunk files stay for the next run to resume.
    quiet = _QuietOnceInterrupted()
    previous = signal.signal(signal.SIGTERM, quiet.terminate) if _main_thread() else None
    previous_int = signal.signal(signal.SIGINT, quiet.interrupt) if _main_thread() else None
    logging.getLogger("tornado.application").addFilter(quiet)
    try:
        with warnings.catch_warnings():  # a warning is one plain line, never a source line
            warnings.showwarning = _plain_warning(args.command)
            return int(args.func(args) or 0)
    except Terminated as err:
        print(f"coffea-lorentz: terminated (SIGTERM); finished chunks are kept, rerun to resume{_progress_of(err)}",
              file=sys.stderr)
        return 143
    except KeyboardInterrupt as err:
        resume = "; rerun the same command to resume" if args.command == "run" else ""
        print(f"coffea-lorentz: interrupted{resume}{_progress_of(err)}", file=sys.stderr)
        return 130
    except (CoffeaLorentzError, OSError, KeyError, ValueError) as err:
        if args.traceback:
            raise
        print(f"coffea-lorentz {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        logging.getLogger("tornado.application").removeFilter(quiet)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)


def _plain_warning(command: str):
    """A ``warnings.showwarning`` that prints ``coffea-lorentz COMMAND: warning: message`` on stderr."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = " ".join(str(message).split())
        print(f"coffea-lorentz {command}: warning: {text}", file=file or sys.stderr, flush=True)

    return show


def _progress_of(interrupted: KeyboardInterrupt) -> str:
    """`` (N of M chunks done; log: URL)`` when a run said how far it got, else ``""``."""
    done = getattr(interrupted, "chunks_done", None)
    if done is None:
        return ""
    log = getattr(interrupted, "log", None)
    return f" ({done} of {interrupted.chunks_planned} chunks done{f'; log: {log}' if log else ''})"


class Terminated(KeyboardInterrupt):
    """SIGTERM received."""


class _QuietOnceInterrupted(logging.Filter):
    """Raises ``KeyboardInterrupt`` on SIGINT and :class:`Terminated` on SIGTERM, and from then on
    drops the event loop's error records (``tornado.application``): Dask's calls cancelled by the
    interrupt log tracebacks there, and an interrupted run prints one line."""

    def __init__(self) -> None:
        super().__init__()
        self.interrupted = False

    def interrupt(self, signum, frame) -> None:
        self.interrupted = True
        raise KeyboardInterrupt()

    def terminate(self, signum, frame) -> None:
        self.interrupted = True
        raise Terminated()

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.interrupted


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
