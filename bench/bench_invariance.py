"""Relative logit change of every tagger against boost rapidity: the README's symmetry table.

For each rapidity y, 64 jets of 32 constituents get a random rotation and a boost of exactly y in a
random direction (beam reference off: full Lorentz group), or a random z-rotation and a z-boost of y
(beam reference on: the subgroup the beam leaves). Prints max |Δlogit| / max |logit| per cell.

Usage: ``python bench/bench_invariance.py [--tagger NAME]... [--rapidities 0 1 2 3 4]``
"""

from __future__ import annotations

import argparse
import warnings

import torch

from coffea_lorentz import models
from coffea_lorentz.symmetry import declared_invariance, invariance_curve

warnings.filterwarnings("ignore")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tagger", action="append", dest="taggers", help="tagger (repeatable; default: every Lorentz-invariant one)")
    parser.add_argument("--rapidities", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 4.0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.taggers or [n for n in models.available() if declared_invariance(models.build(n), beam_reference=False) == "lorentz"]
    header = "".join(f"{f'y={y:g}':>10}" for y in args.rapidities)
    print(f"{'tagger':<22}{'case':<28}{header}")
    cases = (
        ("float64, Lorentz", torch.float64, False),
        ("float32, Lorentz", torch.float32, False),
        ("float32, beam ref., z-boost", torch.float32, True),
    )
    for name in names:
        for label, dtype, beam in cases:
            torch.manual_seed(0)
            model = models.build(name, beam_reference=beam).to(dtype).eval()
            curve = invariance_curve(model, args.rapidities, dtype=dtype, beam_subgroup=beam, seed=0)
            print(f"{name:<22}{label:<28}" + "".join(f"{change:>10.1e}" for _, change in curve))


if __name__ == "__main__":
    main()
