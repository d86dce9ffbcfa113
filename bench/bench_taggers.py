"""CPU inference rate of every tagger, eager against TorchScript, at several jet lengths.

    .venv/bin/python bench/bench_taggers.py [--size compact] [--batch-size 128] [--threads 1]

Prints, per tagger and padded length N (32, 64, 128 by default), jets/s in eager mode and of the
scripted model, and the ratio TorchScript / eager measured in this one run. Every rate is the best
of ``--repeats`` timed passes after ``--warmup`` untimed ones (TorchScript's profiling executor
optimises during its first calls). A tagger that fails to build or script gets an error row and
the script exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from coffea_lorentz import models
from coffea_lorentz.cli.models import jets_per_second


def bench(name: str, *, size: str, lengths: list[int], batch_size: int, repeats: int, warmup: int) -> list[dict]:
    """Rows {tagger, n_constituents, eager_jets_per_s, torchscript_jets_per_s, ratio} for one tagger."""
    torch.manual_seed(0)
    model = models.build(name, size=size).eval()
    scripted = torch.jit.script(model)
    rows = []
    for n_constituents in lengths:
        eager = jets_per_second(model, batch_size=batch_size, n_constituents=n_constituents, repeats=repeats, warmup=warmup)
        script = jets_per_second(
            scripted, batch_size=batch_size, n_constituents=n_constituents, repeats=repeats, warmup=warmup
        )
        rows.append(
            {
                "tagger": name,
                "n_constituents": n_constituents,
                "eager_jets_per_s": eager,
                "torchscript_jets_per_s": script,
                "ratio": script / eager,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tagger", action="append", dest="taggers", metavar="NAME", help="tagger (repeatable; default: all)")
    parser.add_argument("--size", choices=("compact", "large"), default="compact", help="size preset (default: compact)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128], help="padded N (default: 32 64 128)")
    parser.add_argument("--batch-size", type=int, default=128, help="jets per timed pass (default: 128)")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes, best kept (default: 3)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed passes first (default: 2)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    parser.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    names = args.taggers or [name for name in models.available() if name != "identity"]
    failures = []
    rows: list[dict] = []
    for name in names:
        try:
            rows += bench(
                name,
                size=args.size,
                lengths=args.lengths,
                batch_size=args.batch_size,
                repeats=args.repeats,
                warmup=args.warmup,
            )
        except Exception as err:  # noqa: BLE001 - report every tagger, then fail
            failures.append(name)
            print(f"{name}: {type(err).__name__}: {err}", file=sys.stderr)
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(
            f"# CPU inference, {args.size} taggers, batch {args.batch_size}, {args.threads} thread(s), "
            f"torch {torch.__version__}; best of {args.repeats} after {args.warmup} warm-up passes"
        )
        print(f"| {'tagger':<20} | {'N':>4} | {'eager jets/s':>12} | {'TorchScript jets/s':>18} | {'TS / eager':>10} |")
        print(f"|{'-' * 22}|{'-' * 6}|{'-' * 14}|{'-' * 20}|{'-' * 12}|")
        for row in rows:
            print(
                f"| {row['tagger']:<20} | {row['n_constituents']:>4} | {row['eager_jets_per_s']:>12,.0f} | "
                f"{row['torchscript_jets_per_s']:>18,.0f} | {row['ratio']:>10.2f} |"
            )
    if failures:
        print(f"failed: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
