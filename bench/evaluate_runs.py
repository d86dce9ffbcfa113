"""Score finished training runs on one common test split: a data-efficiency table across datasets.

Usage::

    python bench/evaluate_runs.py --data build/data100k/top_landscape_large.h5 \
        --runs build/results_eff/runs/lloca_n1000_e59 build/results_large/runs/lloca_nall ...

Each run folder holds ``<tagger>.pt`` and ``metrics.json`` (from ``coffea-lorentz train`` or
``bench/train_zoo.py``). Every checkpoint is scored on the ``--split`` of ``--data`` with the
constituent count it was trained on, so runs trained on different datasets (of the same
generator configuration) are compared on the same jets. Prints a markdown table, one row per run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from coffea_lorentz import models
from coffea_lorentz.train import evaluate, load_split, observable_baselines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="dataset HDF5 file whose split scores every run")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--runs", nargs="+", required=True, help="run folders (<tagger>.pt + metrics.json)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    rows = []
    split_cache = {}
    for folder in map(Path, args.runs):
        recorded = json.loads((folder / "metrics.json").read_text())
        tagger = recorded["tagger"]
        max_constituents = recorded["train_config"]["max_constituents"]
        if max_constituents not in split_cache:
            split_cache[max_constituents] = load_split(args.data, args.split, max_constituents=max_constituents)
        jets = split_cache[max_constituents]
        model = models.pretrained(tagger, weights=folder / f"{tagger}.pt")
        start = time.perf_counter()
        metrics, _ = evaluate(model, jets)
        rows.append({
            "run": str(folder),
            "tagger": tagger,
            "n_train": recorded["n_train"],
            "epochs": recorded["epochs_run"],
            "trained_on": recorded["dataset"],
            "metrics": metrics,
            "eval_s": time.perf_counter() - start,
        })
        print(f"scored {folder} ({metrics['auc']:.4f})", file=sys.stderr, flush=True)
    jets = next(iter(split_cache.values()))
    print(f"{args.split} split of `{args.data}`: {len(jets):,} jets "
          f"({int(jets.label.sum()):,} top, {int((jets.label == 0).sum()):,} QCD)\n")
    print("| tagger | training jets | epochs | trained on | AUC | 1/ε_B @ ε_S=0.3 | 1/ε_B @ ε_S=0.5 |")
    print("|---|--:|--:|---|--:|--:|--:|")
    for row in rows:
        m = row["metrics"]
        print(f"| {row['tagger']} | {row['n_train']:,} | {row['epochs']} | `{row['trained_on']}` | {m['auc']:.4f} "
              f"| {m['rejection_at_0.3']:.0f} | {m['rejection_at_0.5']:.0f} |")
    for name, m in observable_baselines(jets).items():
        print(f"| jet {name} alone | — | — | — | {m['auc']:.4f} | {m['rejection_at_0.3']:.0f} | {m['rejection_at_0.5']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
