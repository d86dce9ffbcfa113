"""``coffea-lorentz run``: score every fat jet of a fileset and write the scores as new branches."""

from __future__ import annotations

import argparse

from .. import DEFAULT_TAGGER
from ..batch import BatchConfig
from ..runner import RunConfig, RunSummary, default_max_constituents, run_tagging

__all__ = ["register", "print_summary"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="score fat jets of ROOT files or a fileset and write FatJet_<tagger>_score branches",
        description=(
            "Read PFNano files with coffea, score every FatJet with the chosen taggers and write one ROOT file per "
            "chunk with run, luminosityBlock, event, nFatJet and FatJet_<tagger>_score. Without --server a local "
            "Triton server is started for the run and stopped afterwards; --backend torch runs in-process."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="ROOT file or coffea fileset JSON")
    parser.add_argument("--output", "-o", required=True, help="output folder (created; files appear only on success)")
    parser.add_argument("--tagger", action="append", dest="taggers", metavar="NAME",
                        help=f"tagger to run (repeatable; default: {DEFAULT_TAGGER})")
    parser.add_argument("--backend", choices=("triton", "torch"), default="triton", help="inference backend (default: triton)")
    parser.add_argument("--server", metavar="grpc://HOST:PORT", help="use this running Triton server instead of a local one")
    cluster = parser.add_mutually_exclusive_group()
    cluster.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="existing Dask scheduler to run on")
    cluster.add_argument("--workers", type=int, default=2, metavar="N",
                         help="LocalCluster worker processes (default: 2; 0 runs the iterative executor in-process)")
    parser.add_argument("--chunksize", type=int, default=100_000, help="events per chunk and output file (default: 100000)")
    parser.add_argument("--max-constituents", type=int, default=None,
                        help="leading-pT constituents kept per jet (default: what the taggers were trained on, else 128)")
    parser.add_argument("--batch-size", type=int, default=256, help="most jets per inference request (default: 256)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per-request timeout in seconds (default: 300)")
    parser.add_argument("--retries", type=int, default=3, help="retries of a failed request (default: 3)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=main)


def print_summary(summary: RunSummary, output: str) -> None:
    """A short table of what the run did and where its files are."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="coffea-lorentz run", show_header=False)
    table.add_row("input files", str(len(summary.files)))
    table.add_row("events", f"{summary.events:,}")
    table.add_row("fat jets", f"{summary.jets:,}")
    table.add_row("wall time", f"{summary.wall_s:.1f} s")
    table.add_row("events/s", f"{summary.events_per_s:,.0f}")
    table.add_row("jets/s", f"{summary.jets_per_s:,.0f}")
    table.add_row("output folder", str(output))
    for path in summary.outputs:
        table.add_row("", str(path))
    Console().print(table)


def main(args: argparse.Namespace) -> int:
    client_options = (("retries", args.retries), ("timeout_s", args.timeout_s))
    taggers = tuple(args.taggers or (DEFAULT_TAGGER,))
    max_constituents = args.max_constituents or default_max_constituents(taggers)
    config = RunConfig(
        taggers=taggers,
        backend=args.backend,
        server_url=args.server,
        scheduler=args.scheduler,
        n_workers=args.workers,
        chunksize=args.chunksize,
        batch_config=BatchConfig(max_constituents=max_constituents, max_batch_size=args.batch_size),
        client_options=client_options if args.backend == "triton" else (),
        progress=not args.no_progress,
    )
    summary = run_tagging(args.inputs, args.output, config)
    print_summary(summary, args.output)
    return 0
