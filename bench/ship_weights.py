"""Ship a trained checkpoint as ``coffea_lorentz/weights/<tagger>.pt`` with a JSON record of how it was made.

Usage::

    python bench/ship_weights.py --run build/results/runs/lorentznet_nall \
        --train-command "python bench/train_zoo.py ..." \
        --data-command "python -c 'generate_dataset(...)'" \
        --check-data tests/data/top_qcd_small.h5 --check-data-command "..."

The JSON holds the training command and configuration, how the training data were generated,
the test metrics of the run, and the metrics of the shipped weights on the small committed
dataset ``--check-data`` (what ``tests/test_shipped_weights.py`` reproduces).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from coffea_lorentz import models
from coffea_lorentz.train import evaluate, load_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", required=True, help="run folder with <tagger>.pt and metrics.json")
    parser.add_argument("--train-command", required=True, help="the command that trained the run")
    parser.add_argument("--data-command", required=True, help="the command that generated the training dataset")
    parser.add_argument("--check-data", required=True, help="small committed dataset (test split) for the reproduction test")
    parser.add_argument("--check-data-command", required=True, help="the command that generated --check-data")
    args = parser.parse_args(argv)

    run = Path(args.run)
    recorded = json.loads((run / "metrics.json").read_text())
    tagger = recorded["tagger"]
    checkpoint = torch.load(run / f"{tagger}.pt", map_location="cpu", weights_only=True)
    models.WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = models.WEIGHTS_DIR / f"{tagger}.pt"
    # the shipped file holds what pretrained() needs, without the training bookkeeping
    torch.save({"state_dict": checkpoint["state_dict"], "config": checkpoint["config"]}, target)

    max_constituents = recorded["train_config"]["max_constituents"]
    model = models.pretrained(tagger, weights=target)
    jets = load_split(args.check_data, "test", max_constituents=max_constituents)
    check_metrics, _ = evaluate(model, jets)
    # the test split again with the code of today (the tagger modules may have changed since training)
    test_metrics, _ = evaluate(model, load_split(recorded["dataset"], "test", max_constituents=max_constituents))
    record = {
        "tagger": tagger,
        "file": f"{tagger}.pt",
        "config": checkpoint["config"],
        "train_config": recorded["train_config"],
        "train_command": args.train_command,
        "dataset": {
            "path": recorded["dataset"],
            "command": args.data_command,
            "n_train": recorded["n_train"],
            "n_val": recorded["n_val"],
            "n_test": recorded["n_test"],
        },
        "n_parameters": recorded["n_parameters"],
        "epochs_run": recorded["epochs_run"],
        "best_epoch": recorded["best_epoch"],
        "train_time_s": recorded["train_time_s"],
        "test_metrics": test_metrics,
        "test_metrics_at_training": recorded["test"],
        "mass_baseline_test_metrics": recorded["baselines"].get("mass"),
        "check": {
            "path": args.check_data,
            "command": args.check_data_command,
            "split": "test",
            "max_constituents": max_constituents,
            "n_jets": len(jets),
            "metrics": check_metrics,
        },
        "torch_version": torch.__version__,
        "input": "p4 [B, N, 4] (E, px, py, pz) GeV and mask [B, N]; trained on the leading "
        f"{max_constituents} constituents by pT",
    }
    (models.WEIGHTS_DIR / f"{tagger}.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {target} ({target.stat().st_size / 1e3:.0f} kB) and {tagger}.json")
    print(json.dumps(check_metrics, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
