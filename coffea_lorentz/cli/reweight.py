"""``coffea-lorentz reweight-train``: learn nominal → alternative jet weights and print the closure test.

Trains a Lorentz-invariant classifier on jets of two generator configurations, writes
``reweight_<name>.pt`` + ``.json`` and the closure plot into ``--output``, and prints χ²/ndf of
jet observables (nominal vs alternative, reweighted nominal vs alternative) on held-out jets.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError

__all__ = ["register", "main", "load_sample", "DEFAULTS"]


class _Defaults:
    """The defaults of :class:`coffea_lorentz.reweight.classifier.ReweightConfig`, restated so that building
    the parser does not import torch (a test checks that they agree)."""

    tagger = "lorentz_efn"
    epochs = 20
    patience = 5
    batch_size = 64
    lr = 3e-3
    epsilon = 1e-3
    max_weight = 10.0


DEFAULTS = _Defaults


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reweight-train`` subcommand."""
    parser = subparsers.add_parser(
        "reweight-train",
        help="train a nominal-vs-alternative classifier and write per-jet reweighting weights",
        description=(
            "Train a Lorentz-invariant tagger to separate jets of an alternative generator configuration (class 1) "
            "from nominal jets (class 0); w = f/(1-f) then morphs nominal into alternative. Writes "
            "reweight_<name>.pt/.json and closure_reweight_<name>.png into --output and prints the closure "
            "chi2/ndf of jet observables before and after reweighting, on held-out jets."
        ),
    )
    parser.add_argument("--nominal", type=Path, help="nominal jets: generator HDF5 dataset (.h5) or .npz")
    parser.add_argument("--alternative", type=Path, help="alternative jets: HDF5 dataset (.h5) or .npz")
    parser.add_argument("--level", choices=("jet", "event"), default="jet",
                        help="jet: one weight per fat jet (from --nominal/--alternative jet samples); event: the "
                             "classifier sees each whole event and writes one weight per event (from "
                             "--nominal-files/--alternative-files PFNano ROOT files) (default: jet)")
    parser.add_argument("--nominal-files", nargs="+", default=[], metavar="FILE.root",
                        help="--level event: PFNano ROOT files of the nominal sample")
    parser.add_argument("--alternative-files", nargs="+", default=[], metavar="FILE.root",
                        help="--level event: PFNano ROOT files of the alternative sample")
    parser.add_argument("--event-objects", choices=("pfcands", "jets"), default="pfcands",
                        help="--level event: what the classifier sees of an event: all PF candidates (pT-leading "
                             "--max-constituents), or the AK4 jets + electrons + muons + MET (pz=0, E=|pT|) "
                             "(default: pfcands)")
    parser.add_argument("--max-events", type=int, help="--level event: read at most this many events per sample")
    parser.add_argument("--output", "-o", required=True, type=Path, help="folder for the reweighter and the plot")
    parser.add_argument("--name", default="alternative", help="reweighter name: files reweight_<name>.* (default: alternative)")
    parser.add_argument("--tagger", default=DEFAULTS.tagger, help=f"classifier architecture (default: {DEFAULTS.tagger})")
    parser.add_argument("--size", default="compact", choices=("compact", "large"), help="tagger size preset (default: compact)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="tagger option, VALUE parsed as JSON (repeatable), e.g. --option hidden=16")
    parser.add_argument("--label", type=int, help="keep only jets with this truth label in both samples (e.g. 0)")
    parser.add_argument("--max-jets", type=int, help="use at most this many jets per sample")
    parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs, help=f"most epochs (default: {DEFAULTS.epochs})")
    parser.add_argument("--patience", type=int, default=DEFAULTS.patience,
                        help=f"stop after this many epochs without a lower validation loss (default: {DEFAULTS.patience})")
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size,
                        help=f"jets per step (default: {DEFAULTS.batch_size})")
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr, help=f"peak learning rate (default: {DEFAULTS.lr:g})")
    parser.add_argument("--no-calibration", action="store_true", help="skip the logistic calibration of the log-odds")
    parser.add_argument("--max-constituents", type=int, default=128,
                        help="leading constituents per jet (--level event: leading objects per event) (default: 128)")
    parser.add_argument("--epsilon", type=float, default=DEFAULTS.epsilon,
                        help=f"f clipped to [eps, 1-eps] (default: {DEFAULTS.epsilon:g})")
    parser.add_argument("--max-weight", type=float, default=DEFAULTS.max_weight,
                        help=f"weights clipped to [0, w_max] (default: {DEFAULTS.max_weight:g})")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="held-out share for the closure (default: 0.3)")
    parser.add_argument("--bins", type=int, default=12, help="closure histogram bins (default: 12)")
    parser.add_argument("--closure-observable", action="append", default=[], metavar="NAME", dest="closure_observables",
                        help="also compare this observable of the samples in the closure (repeatable); the standard "
                             "ones (mass, msoftdrop, pt, eta, n_constituents, tau21, tau32; ht, n_jets, "
                             "leading_jet_pt for events) are compared whenever the samples have them")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0, help="seed of initial parameters and splits (default: 0)")
    parser.set_defaults(func=main)


def _options(pairs: list[str]) -> tuple[tuple[str, object], ...]:
    options = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--option: expected KEY=VALUE, got {pair!r}")
        try:
            options.append((key, json.loads(value)))
        except json.JSONDecodeError:
            options.append((key, value))
    return tuple(options)


def load_sample(path: Path, *, label: int | None, max_jets: int | None, max_constituents: int, seed: int):
    """Jets of ``path`` (``.npz`` with ``p4``, ``mask`` and observables, else the generator's HDF5 dataset)."""
    from ..reweight.samples import JetSample

    if not path.is_file():
        raise InvalidInputError(f"input not found: {path}")
    if path.suffix == ".npz":
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        if label is not None and "label" in arrays:
            keep = arrays.pop("label") == label
            arrays = {key: value[keep] for key, value in arrays.items()}
        arrays.pop("label", None)
        sample = JetSample.from_arrays(arrays.pop("p4"), arrays.pop("mask"), arrays, max_constituents=max_constituents)
    else:
        sample = JetSample.from_dataset(path, max_constituents=max_constituents, label=label)
    if max_jets is not None and len(sample) > max_jets:
        keep = np.sort(np.random.default_rng(seed).choice(len(sample), max_jets, replace=False))
        sample = sample.subset(keep)
    return sample


def _event_samples(args: argparse.Namespace):
    """The nominal and alternative events of ``--nominal-files``/``--alternative-files`` (one entry per
    event, :func:`coffea_lorentz.reweight.events.read_event_sample`) and their record."""
    from ..reweight.events import read_event_sample

    if not args.nominal_files or not args.alternative_files or args.nominal is not None or args.alternative is not None:
        raise InvalidInputError("reweight-train --level event: give --nominal-files and --alternative-files "
                                "(PFNano ROOT files), not --nominal/--alternative")
    read = dict(objects=args.event_objects, max_objects=args.max_constituents, max_events=args.max_events)
    nominal = read_event_sample(args.nominal_files, **read)
    alternative = read_event_sample(args.alternative_files, **read)
    print(f"nominal: {len(nominal)} events from {len(args.nominal_files)} file(s); alternative: {len(alternative)} "
          f"events from {len(args.alternative_files)} file(s); objects: {args.event_objects}")
    samples = {"nominal": {"files": [str(p) for p in args.nominal_files], "events": len(nominal)},
               "alternative": {"files": [str(p) for p in args.alternative_files], "events": len(alternative)}}
    return nominal, alternative, samples


def main(args: argparse.Namespace) -> int:
    from ..reweight.classifier import ReweightConfig
    from ..reweight.workflow import run_reweighting

    config = ReweightConfig(
        tagger=args.tagger,
        size=args.size,
        tagger_options=_options(args.option),
        epochs=args.epochs,
        patience=args.patience,
        calibrate=not args.no_calibration,
        batch_size=args.batch_size,
        lr=args.lr,
        max_constituents=args.max_constituents,
        epsilon=args.epsilon,
        max_weight=args.max_weight,
        seed=args.seed,
        n_threads=args.threads,
    )
    if args.level == "event":
        nominal, alternative, samples = _event_samples(args)
    else:
        if args.nominal is None or args.alternative is None or args.nominal_files or args.alternative_files:
            raise InvalidInputError("reweight-train: --level jet takes --nominal and --alternative jet samples "
                                    "(--nominal-files/--alternative-files go with --level event)")
        load = dict(label=args.label, max_jets=args.max_jets, max_constituents=args.max_constituents, seed=args.seed)
        nominal = load_sample(args.nominal, **load)
        alternative = load_sample(args.alternative, **load)
        print(f"nominal: {len(nominal)} jets from {args.nominal}; alternative: {len(alternative)} jets from {args.alternative}")
        samples = {"nominal": {"path": str(args.nominal), "jets": len(nominal)},
                   "alternative": {"path": str(args.alternative), "jets": len(alternative)}}

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    record = {
        "train_command": shlex.join(["coffea-lorentz", *getattr(args, "argv", [])]),
        "samples": samples,
    }
    result = run_reweighting(
        nominal, alternative, config, test_fraction=args.test_fraction, output_dir=args.output,
        name=args.name, n_bins=args.bins, log=log, record=record,
        closure_observables=tuple(args.closure_observables),
        event_objects=args.event_objects if args.level == "event" else None,
    )
    options = "".join(f", {key}={value}" for key, value in config.tagger_options)
    slope, intercept = result.history.calibration
    print(f"classifier {config.tagger} ({config.size}{options}), best epoch {result.history.best_epoch}, "
          f"{result.history.wall_s:.0f} s training; calibration: log-odds -> {slope:.4g} * log-odds + {intercept:.4g}")
    for line in result.closure.table():
        print(line)
    print(f"wrote {result.weights_path}, {result.weights_path.with_suffix('.json')}, {result.plot_path}, "
          f"{result.reliability_path}")
    return 0
