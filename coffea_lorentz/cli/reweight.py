"""``coffea-lorentz reweight-train``: learn nominal → alternative jet weights and print the closure test.

Trains a Lorentz-invariant classifier on jets of two generator configurations (two HDF5 datasets,
or with ``--fileset`` the NanoAOD datasets of a coffea fileset, read like ``run`` reads them), writes
``reweight_<name>.pt`` + ``.json`` and the closure plot into ``--output``, and prints χ²/ndf of
jet observables (nominal vs alternative, reweighted nominal vs alternative) on held-out jets; with
``--fileset`` also of event observables (HT, AK4-jet multiplicity, leading-jet pT) on held-out
events, each weighted by its leading fat jet as ``run`` weights it (the generator's HDF5 has no
events: jet observables only).
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
    parser.add_argument("--nominal", nargs="+", metavar="PATH|DATASET",
                        help="nominal jets: generator HDF5 dataset (.h5) or .npz, or with --fileset its datasets")
    parser.add_argument("--alternative", nargs="+", metavar="PATH|DATASET",
                        help="alternative jets: HDF5 dataset (.h5) or .npz, or with --fileset its datasets")
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
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
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
    from .fileset_options import add_fileset_arguments

    add_fileset_arguments(parser, max_jets=False)
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
    """The nominal and alternative events (one entry per event,
    :func:`coffea_lorentz.reweight.events.read_event_sample`) of ``--nominal-files``/``--alternative-files``,
    or of ``--fileset`` with ``--nominal DATASET… --alternative DATASET…``, and their record."""
    from ..reweight.events import read_event_sample

    if args.fileset:
        if args.nominal_files or args.alternative_files or not args.nominal or not args.alternative:
            raise InvalidInputError("reweight-train --level event --fileset: name its datasets with --nominal and "
                                    "--alternative (not --nominal-files/--alternative-files)")
        files = _dataset_files(args)
    else:
        if not args.nominal_files or not args.alternative_files or args.nominal is not None or args.alternative is not None:
            raise InvalidInputError("reweight-train --level event: give --nominal-files and --alternative-files "
                                    "(PFNano ROOT files), or --fileset with --nominal/--alternative datasets")
        files = {"nominal": ([str(p) for p in args.nominal_files], "Events"),
                 "alternative": ([str(p) for p in args.alternative_files], "Events")}
    read = dict(objects=args.event_objects, max_objects=args.max_constituents, max_events=args.max_events)
    nominal = read_event_sample(files["nominal"][0], treename=files["nominal"][1], **read)
    alternative = read_event_sample(files["alternative"][0], treename=files["alternative"][1], **read)
    print(f"nominal: {len(nominal)} events from {len(files['nominal'][0])} file(s); alternative: {len(alternative)} "
          f"events from {len(files['alternative'][0])} file(s); objects: {args.event_objects}")
    samples = {name: {"files": paths, "events": len(sample)}
               for (name, (paths, _)), sample in zip(files.items(), (nominal, alternative))}
    if args.fileset:
        for name in samples:
            samples[name]["datasets"] = list(getattr(args, name))
    return nominal, alternative, samples


def _dataset_files(args: argparse.Namespace) -> dict[str, tuple[list[str], str]]:
    """``{"nominal"|"alternative": (files, tree name)}`` of the ``--fileset`` datasets named by ``--nominal``/``--alternative``."""
    from ..fileset_jets import select_datasets
    from .fileset_options import fileset_of

    fileset = fileset_of(args)
    files = {}
    for name in ("nominal", "alternative"):
        chosen = select_datasets(fileset, getattr(args, name), f"--{name}")
        trees = {path: tree for dataset in chosen.values() for path, tree in dataset["files"].items()}
        if len(set(trees.values())) > 1:
            raise InvalidInputError(f"--{name}: its files name different trees ({', '.join(sorted(set(trees.values())))}); "
                                    "an event-level sample is read from one tree name")
        files[name] = (list(trees), next(iter(trees.values())))
    overlap = sorted(set(files["nominal"][0]) & set(files["alternative"][0]))
    if overlap:
        raise InvalidInputError(f"--nominal and --alternative both hold {overlap[0]}: a file is one class")
    return files


def _fileset_samples(args: argparse.Namespace):
    """(nominal train+val jets, alternative train+val jets, (nominal, alternative) test jets,
    (nominal, alternative) test events or None, the training domain, the record) of ``--fileset
    --nominal DATASET... --alternative DATASET...``. The test events (each with its leading fat jet)
    give the event-level closure; None when a file has no AK4 jets or a class has under 2 of them."""
    from ..fileset_jets import read_fileset_jets, select_datasets, training_domain
    from ..reweight.samples import concatenate_samples
    from .fileset_options import fileset_of, fractions_of, selection_of

    if args.label is not None:
        raise InvalidInputError("--label applies to HDF5 datasets; select NanoAOD jets with --jet-pt-min ... instead")
    selection, fractions = selection_of(args), fractions_of(args)
    fileset = fileset_of(args)
    chosen = {"nominal": select_datasets(fileset, args.nominal, "--nominal"),
              "alternative": select_datasets(fileset, args.alternative, "--alternative")}
    overlap = sorted(set(chosen["nominal"]) & set(chosen["alternative"]))
    if overlap:
        raise InvalidInputError(f"--nominal and --alternative both name {', '.join(overlap)}: a dataset is one class")
    classes = {name: read_fileset_jets(datasets, collection=args.collection, max_constituents=args.max_constituents,
                                       selection=selection, fractions=fractions, max_jets=args.max_jets,
                                       what=f"{name} jets", progress=not args.quiet, test_events=True)
               for name, datasets in chosen.items()}
    training = {name: concatenate_samples([part.part("train"), part.part("val")]) for name, part in classes.items()}
    held_out = (classes["nominal"].part("test"), classes["alternative"].part("test"))
    if min(len(s) for s in held_out) < 2:
        raise InvalidInputError(f"the test split holds {len(held_out[0])} nominal and {len(held_out[1])} alternative "
                                "jets, too few for the closure: read more events or raise its share (--split)")
    held_out_events = (classes["nominal"].events, classes["alternative"].events)
    if any(events is None or len(events) < 2 for events in held_out_events):
        print("no event-level closure: the test split needs AK4 jets (Jet_pt) and 2 events per class",
              file=sys.stderr)
        held_out_events = None
    domain = training_domain(classes, collection=args.collection, max_constituents=args.max_constituents,
                             selection=selection)
    record = {
        "samples": {name: {"datasets": list(chosen[name]), "jets": len(part.sample)} for name, part in classes.items()},
        "split": fractions.as_record() | {name: part.counts() for name, part in classes.items()}
        | {"test_events": {name: len(part.events) for name, part in classes.items() if part.events is not None}},
        "collection": args.collection,
    }
    return training["nominal"], training["alternative"], held_out, held_out_events, domain, record


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
    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    command = shlex.join(["coffea-lorentz", *getattr(args, "argv", [])])
    held_out = held_out_events = domain = None
    if args.level == "event":
        nominal, alternative, samples = _event_samples(args)
        record = {"train_command": command, "samples": samples}
    elif args.nominal is None or args.alternative is None or args.nominal_files or args.alternative_files:
        raise InvalidInputError("reweight-train: --level jet takes --nominal and --alternative jet samples "
                                "(--nominal-files/--alternative-files go with --level event)")
    elif args.fileset:
        nominal, alternative, held_out, held_out_events, domain, record = _fileset_samples(args)
        record["train_command"] = command
    else:
        if len(args.nominal) != 1 or len(args.alternative) != 1:
            raise InvalidInputError("--nominal and --alternative: one file each (several datasets need --fileset)")
        nominal_path, alternative_path = Path(args.nominal[0]), Path(args.alternative[0])
        load = dict(label=args.label, max_jets=args.max_jets, max_constituents=args.max_constituents, seed=args.seed)
        nominal = load_sample(nominal_path, **load)
        alternative = load_sample(alternative_path, **load)
        record = {
            "train_command": command,
            "samples": {"nominal": {"path": str(nominal_path), "jets": len(nominal)},
                        "alternative": {"path": str(alternative_path), "jets": len(alternative)}},
        }
    if args.level == "jet":
        print(f"nominal: {len(nominal)} jets from {' '.join(args.nominal)}; alternative: {len(alternative)} jets from "
              f"{' '.join(args.alternative)}")
    result = run_reweighting(
        nominal, alternative, config, test_fraction=args.test_fraction, output_dir=args.output,
        name=args.name, n_bins=args.bins, log=log, record=record, held_out=held_out,
        held_out_events=held_out_events, domain=domain,
        progress=not args.quiet,
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
