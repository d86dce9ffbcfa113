"""The closure of trained reweighters on jets they did not see, side by side on the same jets.

    .venv/bin/python bench/reweight_closure.py --nominal N.h5 --alternative A.h5 \\
        --reweighter fsr out/reweight_fsr.pt [--held-out-half-of-seed 0] [--bins 12 24] [--max-jets N]

Each ``--reweighter`` (a shipped name or a ``reweight_<name>.pt`` path) scores every jet of the two
samples of the generator's ``.h5`` (or, with ``--held-out-half-of-seed S``, only the half that
``reweight-train --test-fraction 0.5 --seed S`` holds out, so a reweighter trained on these files is
judged on its own test jets and another one on the very same jets), and the closure report of
``reweight-train`` is printed for each: χ²/ndf per observable before → after reweighting, with the
statistical errors of both samples (:func:`coffea_lorentz.reweight.workflow.held_out_closure`), the
effective sample size and the largest weight. One Markdown row per reweighter and bin count.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from coffea_lorentz.reweight.classifier import ReweightConfig, predict_probability
from coffea_lorentz.reweight.lookup import find_reweighter
from coffea_lorentz.reweight.samples import JetSample, split_sample
from coffea_lorentz.reweight.saving import load_reweighter
from coffea_lorentz.reweight.workflow import held_out_closure

#: The jet-level standard set, in the README's column order.
OBSERVABLES = ("mass", "msoftdrop", "pt", "eta", "n_constituents", "tau21", "tau32")


def held_out(sample: JetSample, seed: int | None, stream: int, max_jets: int | None) -> JetSample:
    """The jets a ``reweight-train --test-fraction 0.5 --seed seed`` run holds out (all with ``seed`` None)."""
    if seed is not None:
        sample = split_sample(sample, (0.5, 0.5), seed=seed + stream)[1]
    if max_jets is not None and len(sample.p4) > max_jets:
        sample = sample.subset(np.arange(max_jets))
    return sample


def closure_rows(reweighter: str, nominal: JetSample, alternative: JetSample, bins: list[int]) -> list[dict]:
    """One dict per bin count: χ²/ndf before and after per observable, effective N, largest weight."""
    model, record = load_reweighter(find_reweighter(reweighter).weights)
    config = ReweightConfig(**{key: value for key, value in record["reweight_config"].items()
                               if key in ReweightConfig.__dataclass_fields__})
    n_constituents = int(record["reweight_config"]["max_constituents"])
    f_nominal = predict_probability(model, nominal, max_constituents=n_constituents)
    f_alternative = predict_probability(model, alternative, max_constituents=n_constituents)
    rows = []
    for n_bins in bins:
        result = held_out_closure(f_nominal, f_alternative, nominal.observables, alternative.observables, config,
                                  prior_ratio=record["prior_ratio"], n_bins=n_bins).as_dict()
        observables = result["observables"]
        rows.append({
            "reweighter": reweighter, "bins": n_bins, "n": (len(f_nominal), len(f_alternative)),
            "chi2_ndf": {name: (observables[name]["chi2_before"] / observables[name]["ndf_before"],
                                observables[name]["chi2_after"] / observables[name]["ndf_after"])
                         for name in OBSERVABLES if name in observables},
            "effective_n": result["weights"]["effective_n"], "max_weight": result["weights"]["max"],
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nominal", required=True, type=Path)
    parser.add_argument("--alternative", required=True, type=Path)
    parser.add_argument("--reweighter", required=True, nargs="+", help="shipped names or reweight_<name>.pt paths")
    parser.add_argument("--held-out-half-of-seed", type=int, default=None, metavar="S")
    parser.add_argument("--bins", type=int, nargs="+", default=[12])
    parser.add_argument("--max-jets", type=int, default=None, help="at most this many jets a sample (after the split)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seed = args.held_out_half_of_seed
    nominal = held_out(JetSample.from_dataset(args.nominal, max_constituents=128), seed, 10, args.max_jets)
    alternative = held_out(JetSample.from_dataset(args.alternative, max_constituents=128), seed, 11, args.max_jets)
    print(f"{len(nominal.p4)} nominal and {len(alternative.p4)} alternative jets"
          + (f" (the half reweight-train --test-fraction 0.5 --seed {seed} holds out)" if seed is not None else ""))
    print("| reweighter | bins | " + " | ".join(OBSERVABLES) + " | effective N | largest w |")
    print("|---|--:|" + "--:|" * (len(OBSERVABLES) + 2))
    for reweighter in args.reweighter:
        for row in closure_rows(reweighter, nominal, alternative, args.bins):
            cells = [f"{before:.2f} → {after:.2f}" for before, after in row["chi2_ndf"].values()]
            print(f"| {row['reweighter']} | {row['bins']} | " + " | ".join(cells)
                  + f" | {row['effective_n']:.0f} of {row['n'][0]} | {row['max_weight']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
