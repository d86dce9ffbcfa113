"""Re-measure the README's figures that drift with the code: the tagger table and the demo's time.

    .venv/bin/python bench/readme_figures.py models [--no-timing] [--threads N]
    .venv/bin/python bench/readme_figures.py demo [--workdir DIR] [--events N] [--repeats 2]

``models`` prints the README's tagger table as Markdown, one row per registered tagger except
``identity``: display name, registry name, trainable parameters and matrix-product MFLOPs per jet
(compact size, seed 0, N = 64: :func:`coffea_lorentz.cli.models.measure`, the same definitions as
``coffea-lorentz models``) and CPU jets/s (batch 256, best of 3). ``--no-timing`` leaves the jets/s
column as "—": the other columns are deterministic, and ``tests/test_readme_figures.py`` checks them
against README.md.

``demo`` times ``coffea-lorentz demo`` (wall clock, a subprocess) in ``--workdir``: the first run
generates the sample, every later one reuses it ("once the sample exists"); prints each time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from coffea_lorentz import models
from coffea_lorentz.cli.models import count_parameters, flops_per_jet, measure
from coffea_lorentz.plotting import display_name

#: Registered taggers the table leaves out (no physics: for measuring the serving path).
LEFT_OUT = ("identity",)
HEADER = "| tagger | name | parameters | MFLOPs / jet | CPU jets/s |\n|---|---|--:|--:|--:|"


def model_rows(*, timing: bool = True) -> list[str]:
    """The README's tagger table, one Markdown line per tagger (jets/s "—" without ``timing``)."""
    lines = [HEADER]
    for name in models.available():
        if name in LEFT_OUT:
            continue
        if timing:
            row = measure(name)
            if row.error is not None:
                raise RuntimeError(f"tagger {name!r} failed to build or run: {row.error}")
            parameters, flops, rate = row.parameters, row.flops_per_jet, f"{row.jets_per_s:,.0f}"
        else:  # what measure() builds and counts, without the timed passes
            torch.manual_seed(0)
            model = models.build(name, size="compact").eval()
            parameters, flops, rate = count_parameters(model), flops_per_jet(model), "—"
        lines.append(f"| {display_name(name)} | `{name}` | {parameters:,} | {flops / 1e6:.1f} | {rate} |")
    return lines


def demo_seconds(workdir: Path, *, events: int | None, repeats: int) -> list[float]:
    """Wall-clock seconds of ``repeats`` runs of ``coffea-lorentz demo --workdir workdir``."""
    command = [sys.executable, "-m", "coffea_lorentz.cli", "demo", "--workdir", str(workdir)]
    if events is not None:
        command += ["--events", str(events)]
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="figure", required=True)
    table = commands.add_parser("models", help="the tagger table (parameters, MFLOPs / jet, CPU jets/s)")
    table.add_argument("--no-timing", action="store_true", help="leave out jets/s (the deterministic columns only)")
    table.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    demo = commands.add_parser("demo", help="the time of `coffea-lorentz demo`")
    demo.add_argument("--workdir", type=Path, default=Path("build/demo"))
    demo.add_argument("--events", type=int, default=None, help="events per sample (default: the demo's)")
    demo.add_argument("--repeats", type=int, default=2, help="runs; the first makes the sample (default: 2)")
    args = parser.parse_args()
    if args.figure == "models":
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        print("\n".join(model_rows(timing=not args.no_timing)))
    else:
        had_sample = (args.workdir / "fileset.json").is_file()
        for index, seconds in enumerate(demo_seconds(args.workdir, events=args.events, repeats=args.repeats)):
            made = "sample made" if index == 0 and not had_sample else "sample reused"
            print(f"demo run {index + 1}: {seconds:.1f} s ({made})")


if __name__ == "__main__":
    main()
