"""The options ``train`` and ``reweight-train`` share for reading jets from a coffea fileset:
``--fileset``, the jet selection, the split, ``--max-jets``, ``--collection``."""

from __future__ import annotations

import argparse

from ..errors import InvalidInputError

__all__ = ["add_fileset_arguments", "selection_of", "fractions_of", "fileset_of"]


def add_fileset_arguments(parser: argparse.ArgumentParser, *, max_jets: bool = True) -> None:
    """Add ``--fileset``, ``--collection``, ``--jet-pt-min/max``, ``--jet-eta-max``, ``--jet-mass-min/max``,
    ``--split`` (and ``--max-jets`` when ``max_jets``) in a group of their own."""
    group = parser.add_argument_group(
        "jets from NanoAOD (a coffea fileset JSON, as `coffea-lorentz run` takes it)",
        "Files are read chunk by chunk with run's reader (same constituents, same truncation); the split into "
        "train/validation/test follows a hash of (run, luminosityBlock, event), the same in every rerun.")
    group.add_argument("--fileset", nargs="+", metavar="FILESET.json",
                       help="coffea fileset JSON(s) ({dataset: {files: {path_or_url: tree}}}); ROOT files or "
                            "folders also work, each a dataset named like in `run`")
    group.add_argument("--collection", default="FatJet", metavar="NAME",
                       help="jet collection with <NAME>PFCands (default: FatJet)")
    group.add_argument("--jet-pt-min", type=float, metavar="GeV", help="keep jets with pT >= this")
    group.add_argument("--jet-pt-max", type=float, metavar="GeV", help="keep jets with pT <= this")
    group.add_argument("--jet-eta-max", type=float, metavar="ETA", help="keep jets with |eta| <= this")
    group.add_argument("--jet-mass-min", type=float, metavar="GeV", help="keep jets with mass >= this")
    group.add_argument("--jet-mass-max", type=float, metavar="GeV", help="keep jets with mass <= this")
    group.add_argument("--split", nargs=3, type=int, default=(60, 20, 20), metavar=("TRAIN", "VAL", "TEST"),
                       help="percent of events in train, validation and test (default: 60 20 20)")
    if max_jets:
        group.add_argument("--max-jets", type=int, metavar="N", help="read at most this many jets per class")


def selection_of(args: argparse.Namespace):
    """The :class:`~coffea_lorentz.fileset_jets.JetSelection` of the options."""
    from ..fileset_jets import JetSelection

    return JetSelection(min_pt_gev=args.jet_pt_min, max_pt_gev=args.jet_pt_max, max_abs_eta=args.jet_eta_max,
                        min_mass_gev=args.jet_mass_min, max_mass_gev=args.jet_mass_max)


def fractions_of(args: argparse.Namespace):
    """The :class:`~coffea_lorentz.fileset_jets.SplitFractions` of ``--split``."""
    from ..fileset_jets import SplitFractions

    train, val, test = args.split
    if train + val + test != 100:
        raise InvalidInputError(f"--split: the three percentages must add up to 100, got {train} {val} {test}")
    return SplitFractions(train=train / 100, val=val / 100, test=test / 100)


def fileset_of(args: argparse.Namespace) -> dict[str, dict]:
    """The coffea fileset of ``--fileset`` (datasets named as ``run`` names them)."""
    from ..run.fileset import load_fileset

    return load_fileset(args.fileset)
