"""``coffea-lorentz check MODEL``: what a model is invariant under, measured (:mod:`coffea_lorentz.check`)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="measure what a model is invariant under (Lorentz, beam subgroup, permutations, padding, batch)",
        description=(
            "Measure, on realistic random jets, the relative change of a model's outputs under Lorentz boosts and "
            "rotations, boosts along and rotations about the beam, constituent permutations, extra padding and batch "
            "composition, each against the shipped tolerance of the dtype it ran in (float64 for the zoo, float32 "
            "for a model file). Nothing is refused: a model that is not invariant is reported with its figure."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a shipped tagger name, or a model you bring (a weaver export "
                                                        "folder, an .onnx or TorchScript .pt with its spec)")
    parser.add_argument("--spec", metavar="FILE", help="the model's spec, when it is not beside the model")
    parser.add_argument("--backend", choices=("onnx", "torch"), help="runtime of a model file (default: its format)")
    parser.add_argument("--jets", type=int, default=32, metavar="N", help="random jets to check on (default: 32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random jets and transformations")
    parser.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from ..check import check_model, report

    if args.jets < 1:
        raise ValueError(f"--jets must be >= 1, got {args.jets}")
    rows = check_model(args.model, spec=args.spec, backend=args.backend, n_jets=args.jets, seed=args.seed)
    print(report(args.model, rows))
    return 0
