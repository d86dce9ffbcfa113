"""A training run in one call: :func:`train` reads the splits, fits, checkpoints, evaluates on the
test split and writes ``metrics.json`` and the plots."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..threads import thread_count
from .config import TrainConfig
from .evaluation import BASELINE_OBSERVABLES, evaluate, observable_baselines
from .jets import _STREAM_N_TRAIN, _STREAM_N_VAL, SPLITS, _subsample, load_split
from .loop import fit, n_parameters, save_checkpoint
from .plots import write_plots

__all__ = ["train"]


def _json_ready(value: Any) -> Any:
    """inf/NaN → strings JSON can hold; numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else str(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def train(config: TrainConfig, dataset_path: str | Path, output_dir: str | Path, *, log: Any = None) -> dict[str, Any]:
    """Train ``config.tagger`` on ``dataset_path``; write the checkpoint, ``metrics.json`` and plots to ``output_dir``.

    The model of the epoch with the best validation AUC is kept and evaluated on the test split.
    Returns the metrics dict written to ``metrics.json`` (``test``: AUC, accuracy, 1/ε_B at ε_S =
    0.3 and 0.5, loss; ``baselines``: the same for the jet mass alone; parameter count, training
    time in seconds, jets used, epochs run, the history per epoch and the paths written).
    ``log(str)`` (optional) receives progress lines.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with thread_count(config.n_threads):
        splits = {name: load_split(dataset_path, name, max_constituents=config.max_constituents) for name in SPLITS}
        train_jets = _subsample(splits["train"], config.n_train, config.seed, _STREAM_N_TRAIN, "n_train")
        val_jets = _subsample(splits["val"], config.n_val, config.seed, _STREAM_N_VAL, "n_val")
        test_jets = splits["test"]
        model, fit_summary = fit(config, train_jets, val_jets, log=log)
        checkpoint = save_checkpoint(model, config, output_dir / f"{config.tagger}.pt")
        model = model.cpu()
        test_metrics, test_score = evaluate(model, test_jets)
    plots = write_plots(
        output_dir,
        config.tagger,
        test_jets.label,
        test_score,
        {f"jet {name}": test_jets.observables[name] for name in BASELINE_OBSERVABLES[:1] if name in test_jets.observables},
    )
    result = {
        "tagger": config.tagger,
        "size": config.size,
        "dataset": str(dataset_path),
        "n_parameters": n_parameters(model),
        "n_train": len(train_jets),
        "n_val": len(val_jets),
        "n_test": len(test_jets),
        "epochs_run": fit_summary["epochs_run"],
        "best_epoch": fit_summary["best_epoch"],
        "train_time_s": fit_summary["train_time_s"],
        "best_val_auc": fit_summary["best_val_auc"],
        "test": test_metrics,
        "baselines": observable_baselines(test_jets),
        "history": fit_summary["history"],
        "train_config": config.to_dict(),
        "checkpoint": str(checkpoint),
        "plots": [str(p) for p in plots],
        "torch_version": torch.__version__,
    }
    result = _json_ready(result)
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
