"""``coffea-lorentz generate {pfnano,dataset}``: Pythia 8 + FastJet samples for taggers.

``pfnano`` writes a PFNano-layout ROOT file (coffea ``PFNanoAODSchema``); ``dataset`` writes an
HDF5 jet dataset (by default jets with 550 < pT < 650 GeV; ``--jet-pt-min/--jet-pt-max``), |η| < 2, train/val/test). Both print the
event and jet counts and the generation rate per core.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..errors import InvalidInputError

__all__ = ["register"]

#: Default ``PhaseSpace:pTHatMin`` (GeV) per output kind and process.
_DEFAULT_PTHAT_MIN_GEV: dict[str, dict[str, float]] = {
    "pfnano": {"ttbar": 0.0, "qcd": 200.0},
    "dataset": {"ttbar": 500.0, "qcd": 500.0},
}


def _process_item(text: str) -> str:
    """One ``--process`` item of ``generate pfnano``: ``ttbar``, ``qcd`` or ``NAME=FRACTION``."""
    name = text.split("=", 1)[0]
    if name not in ("ttbar", "qcd"):
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from 'ttbar', 'qcd')")
    return text


def _common_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    defaults = _DEFAULT_PTHAT_MIN_GEV[kind]
    if kind == "dataset":
        parser.add_argument("--events", "-n", nargs="+", required=True, metavar="N",
                            help="events to generate per process: N for every process, or PROCESS=N each "
                                 "(e.g. ttbar=180000 qcd=120000)")
    else:
        parser.add_argument("--events", "-n", type=int, required=True, metavar="N", help="events to generate")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="user seed; every task derives its own Pythia seed from it (default: 1)")
    parser.add_argument("--workers", "-j", type=int, default=1, metavar="W",
                        help="worker processes; the output does not depend on it (default: 1)")
    parser.add_argument("--output", "-o", required=True, metavar="PATH",
                        help="file to write (replaced atomically)")
    parser.add_argument("--alternative", action="store_true",
                        help="use the alternative shower configuration (TimeShower:alphaSvalue = 0.120)")
    parser.add_argument("--shower-alphas", type=float, metavar="ALPHAS",
                        help="final-state shower coupling TimeShower:alphaSvalue (Monash: 0.1365; --alternative "
                             "is 0.120)")
    parser.add_argument("--hadronisation-tune", metavar="TUNE",
                        help="a Pythia Tune:pp number (14 = Monash, the default) or hadronisation parameters "
                             "KEY=VALUE,... (e.g. StringZ:aLund=0.6,StringZ:bLund=0.9); applied before --shower-alphas")
    parser.add_argument("--pthat-min", type=float, default=None, metavar="GeV",
                        help=f"PhaseSpace:pTHatMin in GeV "
                             f"(default: ttbar {defaults['ttbar']:g}, qcd {defaults['qcd']:g})")
    parser.add_argument("--events-per-task", type=int, default=500, metavar="N",
                        help="events per task, each task with its own seed (default: 500)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress line per task on stderr")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``generate`` with its ``pfnano`` and ``dataset`` subcommands."""
    parser = subparsers.add_parser(
        "generate",
        help="generate tt̄ / QCD samples with Pythia 8 + FastJet (PFNano files or jet datasets)",
        description=(
            "Generate 13 TeV pp events with Pythia 8 (all-hadronic tt̄ or QCD dijets), cluster anti-kT R=0.8 "
            "jets with FastJet, and write a PFNano ROOT file or an HDF5 top-tagging dataset. "
            "Needs pythia8mc and fastjet (pip install 'coffea-lorentz[generate]')."
        ),
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", required=True)

    pfnano = kinds.add_parser(
        "pfnano",
        help="write a PFNano-layout ROOT file (FatJet, Jet, PFCands, FatJetPFCands, JetPFCands, GenPart)",
        description=("Write generated events as a PFNano-layout ROOT file that coffea's PFNanoAODSchema reads "
                     "without a warning: anti-kT R = 0.8 FatJets and R = 0.4 Jets (pT > 15 GeV) with their "
                     "constituents, PF candidates with generated track parameters (d0, dz and their errors, "
                     "puppiWeight, track-quality flags; see coffea_lorentz.generate.tracks), parton truth."),
    )
    pfnano.add_argument("--process", "-p", required=True, nargs="+", metavar="PROCESS[=FRACTION]", type=_process_item,
                        help="process to generate (ttbar or qcd), or a mix with the share of --events of each, "
                             "e.g. ttbar=0.3 qcd=0.7")
    _common_arguments(pfnano, "pfnano")
    pfnano.add_argument("--jet-pt-min", type=float, default=200.0, metavar="GeV",
                        help="keep FatJets above this pT (default: 200)")
    pfnano.add_argument("--ak4-pt-min", type=float, default=None, metavar="GeV",
                        help="keep AK4 Jets above this pT (default: 15, as CMS NanoAOD)")
    pfnano.set_defaults(func=_main_pfnano)

    dataset = kinds.add_parser(
        "dataset",
        help="write an HDF5 top-tagging dataset (550 < pT < 650 GeV, |eta| < 2, train/val/test)",
        description=(
            "Write a top-tagging dataset: the two leading jets of each event with 550 < pT < 650 GeV "
            "and |eta| < 2, "
            "top jets truth-matched (top and its three decay quarks within dR < 0.8), up to 200 constituents "
            "as (E, px, py, pz), split 60/20/20 by a seeded shuffle. With both processes the classes are balanced."
        ),
    )
    dataset.add_argument("--process", "-p", nargs="+", choices=("ttbar", "qcd"), default=["ttbar", "qcd"],
                         help="processes to generate (default: ttbar qcd)")
    _common_arguments(dataset, "dataset")
    dataset.add_argument("--max-constituents", type=int, default=200, metavar="N",
                         help="constituents stored per jet (default: 200)")
    dataset.add_argument("--jet-pt-min", type=float, default=550.0, metavar="GeV",
                         help="lower edge of the jet pT window (default: 550)")
    dataset.add_argument("--jet-pt-max", type=float, default=650.0, metavar="GeV",
                         help="upper edge of the jet pT window (default: 650)")
    dataset.add_argument("--no-balance", action="store_true", help="keep every selected jet of each process")
    dataset.set_defaults(func=_main_dataset)


def _progress_printer(quiet: bool):
    """A ``progress(done, total)`` callback printing one line per task to stderr, or None when quiet."""
    if quiet:
        return None
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        print(f"task {done}/{total} done after {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    return progress


def _pthat(args: argparse.Namespace, kind: str, process: str) -> float:
    return args.pthat_min if args.pthat_min is not None else _DEFAULT_PTHAT_MIN_GEV[kind][process]


def _variation(args: argparse.Namespace) -> tuple[str, ...]:
    """The extra Pythia lines of ``--shower-alphas`` and ``--hadronisation-tune``."""
    from ..generate.pythia import variation_settings

    settings = variation_settings(shower_alphas=args.shower_alphas, tune=args.hadronisation_tune)
    if settings and args.alternative:
        raise InvalidInputError("--alternative sets the shower coupling itself: give either it or "
                                "--shower-alphas / --hadronisation-tune")
    return settings


def _process_mix(values: list[str], n_events: int) -> dict[str, int]:
    """``--process`` of ``generate pfnano``: one process, or PROCESS=FRACTION ... → events per process."""
    from ..generate.pythia import PROCESSES

    if len(values) == 1 and "=" not in values[0]:
        shares = {values[0]: 1.0}
    else:
        try:
            shares = {name: float(share) for name, share in (value.split("=", 1) for value in values)}
        except ValueError:
            raise InvalidInputError(f"--process: expected PROCESS or PROCESS=FRACTION ..., got {' '.join(values)!r}") from None
    unknown = sorted(set(shares) - set(PROCESSES))
    if unknown:
        raise InvalidInputError(f"--process: unknown {', '.join(unknown)} (expected {', '.join(PROCESSES)})")
    if any(share <= 0 for share in shares.values()) or abs(sum(shares.values()) - 1) > 1e-6:
        raise InvalidInputError(f"--process: the fractions must be > 0 and add up to 1, got {' '.join(values)}")
    counts = {name: int(round(share * n_events)) for name, share in shares.items()}
    last = list(counts)[-1]
    counts[last] = n_events - sum(counts.values()) + counts[last]
    if any(count < 1 for count in counts.values()):
        raise InvalidInputError(f"--process: {n_events} events give a process no event ({counts}); raise --events")
    return counts


def _main_pfnano(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..generate import GeneratorConfig, JetConfig, generate_pfnano
    from ..generate.pfnano import AK4_JETS

    extra = _variation(args)
    counts = _process_mix(args.process, args.events)
    generators = [GeneratorConfig(process=process, pthat_min_gev=_pthat(args, "pfnano", process),
                                  alternative=args.alternative, extra_settings=extra) for process in counts]
    summary = generate_pfnano(
        args.output,
        generator=generators,
        n_events=list(counts.values()),
        seed=args.seed,
        workers=args.workers,
        jet_config=JetConfig(min_pt_gev=args.jet_pt_min),
        ak4_config=AK4_JETS if args.ak4_pt_min is None else replace(AK4_JETS, min_pt_gev=args.ak4_pt_min),
        events_per_task=args.events_per_task,
        progress=_progress_printer(args.quiet),
    )
    print("\n".join(summary.lines()))
    return 0


def _events_per_process(values: list[str], processes: list[str]) -> int | dict[str, int]:
    """``--events`` of ``generate dataset``: one count for every process, or ``PROCESS=N`` per process."""
    try:
        if len(values) == 1 and "=" not in values[0]:
            return int(values[0])
        pairs = dict(value.split("=", 1) for value in values)
        counts = {process: int(count) for process, count in pairs.items()}
    except ValueError:
        raise InvalidInputError(f"--events: expected N or PROCESS=N ..., got {' '.join(values)!r}") from None
    if sorted(counts) != sorted(processes):
        raise InvalidInputError(f"--events: give a count for each of {', '.join(processes)}, got {', '.join(counts)}")
    return counts


def _main_dataset(args: argparse.Namespace) -> int:
    from ..generate import DatasetConfig, GeneratorConfig, generate_dataset

    processes = list(dict.fromkeys(args.process))
    extra = _variation(args)
    generators = [
        GeneratorConfig(process=p, pthat_min_gev=_pthat(args, "dataset", p), alternative=args.alternative,
                        extra_settings=extra)
        for p in processes
    ]
    summary = generate_dataset(
        args.output,
        generators=generators,
        n_events=_events_per_process(args.events, processes),
        seed=args.seed,
        workers=args.workers,
        config=DatasetConfig(max_constituents=args.max_constituents, balance=not args.no_balance,
                             min_pt_gev=args.jet_pt_min, max_pt_gev=args.jet_pt_max),
        events_per_task=args.events_per_task,
        progress=_progress_printer(args.quiet),
    )
    print("\n".join(summary.lines()))
    return 0
