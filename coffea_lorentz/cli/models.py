"""``coffea-lorentz models``: the tagger zoo at a glance: parameters, FLOPs per jet, CPU jets/s.

The measuring functions are public so ``bench/bench_taggers.py`` uses the same definitions.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

import torch
from torch import nn

__all__ = ["register", "ZooRow", "count_parameters", "flops_per_jet", "jets_per_second", "measure"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ZooRow:
    """What ``models`` prints for one tagger; ``error`` is set (and the numbers are None) when it failed."""

    name: str
    parameters: int | None = None
    flops_per_jet: float | None = None
    jets_per_s: float | None = None
    error: str | None = None


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def _inputs(batch_size: int, n_constituents: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    from ..symmetry import random_jets

    return random_jets(
        batch_size, n_constituents, min_constituents=max(1, n_constituents // 2), dtype=torch.float32, seed=seed
    )


def flops_per_jet(model: nn.Module, *, n_constituents: int = 64, batch_size: int = 8) -> float:
    """Floating-point operations per jet of one forward pass at ``n_constituents``.

    Counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts matrix products (and
    convolutions, attention) but not element-wise operations, over a batch of ``batch_size``.
    """
    from torch.utils.flop_counter import FlopCounterMode

    p4, mask = _inputs(batch_size, n_constituents)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(p4, mask)
    return counter.get_total_flops() / batch_size


def jets_per_second(
    model: nn.Module, *, batch_size: int = 256, n_constituents: int = 64, repeats: int = 3, warmup: int = 1
) -> float:
    """Inference rate of ``model`` on the CPU: jets per second, best of ``repeats`` timed forward passes
    of ``batch_size`` jets padded to ``n_constituents`` after ``warmup`` untimed ones."""
    p4, mask = _inputs(batch_size, n_constituents, seed=1)
    best_s = float("inf")
    with torch.no_grad():
        for _ in range(warmup):
            model(p4, mask)
        for _ in range(repeats):
            start = time.perf_counter()
            model(p4, mask)
            best_s = min(best_s, time.perf_counter() - start)
    return batch_size / best_s


def measure(
    name: str, *, size: str = "compact", batch_size: int = 256, n_constituents: int = 64, repeats: int = 3
) -> ZooRow:
    """Build tagger ``name`` and measure it; a failure is reported in ``ZooRow.error`` rather than raised."""
    from .. import models

    try:
        torch.manual_seed(0)
        model = models.build(name, size=size).eval()
        return ZooRow(
            name=name,
            parameters=count_parameters(model),
            flops_per_jet=flops_per_jet(model, n_constituents=n_constituents),
            jets_per_s=jets_per_second(model, batch_size=batch_size, n_constituents=n_constituents, repeats=repeats),
        )
    except Exception as err:  # noqa: BLE001 - one broken tagger must not hide the others
        return ZooRow(name=name, error=f"{type(err).__name__}: {err}")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the taggers with parameters, FLOPs per jet and CPU jets/s",
        description=(
            "Build every registered tagger (or those given with --tagger) and print its trainable parameters, "
            "matrix-product FLOPs per jet (torch FlopCounterMode) and CPU inference rate in jets/s. "
            "Exits non-zero when any tagger fails to build or run."
        ),
    )
    parser.add_argument("--tagger", action="append", dest="taggers", metavar="NAME",
                        help="tagger to measure (repeatable; default: all registered)")
    parser.add_argument("--size", choices=("compact", "large"), default="compact", help="size preset (default: compact)")
    parser.add_argument("--batch-size", type=int, default=256, help="jets per timed forward pass (default: 256)")
    parser.add_argument("--n-constituents", type=int, default=64,
                        help="constituents per jet (padded length) for FLOPs and timing (default: 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes, the best is kept (default: 3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per tagger instead of a table")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from .. import models

    if args.batch_size < 1 or args.n_constituents < 1 or args.repeats < 1:
        from ..errors import InvalidInputError

        raise InvalidInputError(
            f"--batch-size, --n-constituents and --repeats must be ≥ 1, got {args.batch_size}, "
            f"{args.n_constituents}, {args.repeats}"
        )
    names = args.taggers or models.available()
    unknown = [name for name in names if name not in models.available()]
    if unknown:
        raise KeyError(f"unknown tagger(s) {', '.join(unknown)}; available: {', '.join(models.available())}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rows = [
        measure(name, size=args.size, batch_size=args.batch_size, n_constituents=args.n_constituents, repeats=args.repeats)
        for name in names
    ]
    if args.json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row)))
    else:
        _print_table(rows, args)
    failed = [row.name for row in rows if row.error is not None]
    if failed:
        print(f"coffea-lorentz models: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _print_table(rows: list[ZooRow], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=(
            f"taggers ({args.size}; FLOPs at N={args.n_constituents}; CPU jets/s at batch {args.batch_size}, "
            f"{torch.get_num_threads()} threads)"
        )
    )
    for column in ("tagger", "parameters", "MFLOPs/jet", "jets/s"):
        table.add_column(column, justify="left" if column == "tagger" else "right")
    for row in rows:
        if row.error is not None:
            table.add_row(row.name, "[red]error[/red]", row.error[:60], "")
            continue
        table.add_row(row.name, f"{row.parameters:,}", f"{row.flops_per_jet / 1e6:,.2f}", f"{row.jets_per_s:,.0f}")
    Console().print(table)
