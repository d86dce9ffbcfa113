"""A training run in one call: :func:`train` reads the splits of a dataset file and
:func:`train_on_jets` fits (resumably), checkpoints, evaluates on the test split and writes
``metrics.json`` and the plots."""

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
from .jets import _STREAM_N_TRAIN, _STREAM_N_VAL, SPLITS, JetSet, _subsample, load_split
from .loop import fit, n_parameters, save_checkpoint
from .plots import write_plots

__all__ = ["train", "train_on_jets", "RESUME_FILE"]

#: The state after the last finished epoch, in a training folder.
RESUME_FILE = "resume.pt"


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


def train(config: TrainConfig, dataset_path: str | Path, output_dir: str | Path, *, log: Any = None,
          stop_after_epoch: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Train ``config.tagger`` on ``dataset_path``; write the checkpoint, ``metrics.json`` and plots to ``output_dir``.

    The model of the epoch with the best validation AUC is kept and evaluated on the test split.
    Returns the metrics dict written to ``metrics.json`` (``test``: AUC, accuracy, 1/ε_B at ε_S =
    0.3 and 0.5, loss; ``baselines``: the same for the jet mass alone; parameter count, training
    time in seconds, jets used, epochs run, the history per epoch and the paths written).
    ``log(str)`` (optional) receives progress lines. See :func:`train_on_jets` for resuming.
    """
    with thread_count(config.n_threads):
        splits = {name: load_split(dataset_path, name, max_constituents=config.max_constituents) for name in SPLITS}
    return train_on_jets(config, splits, output_dir, source=str(dataset_path), log=log,
                         stop_after_epoch=stop_after_epoch, progress=progress)


def train_on_jets(config: TrainConfig, splits: dict[str, JetSet], output_dir: str | Path, *, source: str,
                  record: dict[str, Any] | None = None, log: Any = None, stop_after_epoch: int | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Train on ``splits`` (``"train"``, ``"val"``, ``"test"`` → :class:`JetSet`, truncated to
    ``config.max_constituents``) and write what :func:`train` writes; ``source`` names the jets in
    ``metrics.json`` and ``record`` (the training ``domain`` …) is added to it.

    The state after each epoch is kept in ``output_dir/resume.pt``: rerunning with the same config
    and jets continues after the last finished epoch (other options are refused). With
    ``stop_after_epoch`` the run returns after that epoch without evaluating (``{"stopped_after":
    epoch}``); the next call continues it. ``progress`` draws bars on stderr.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with thread_count(config.n_threads):
        train_jets = _subsample(splits["train"], config.n_train, config.seed, _STREAM_N_TRAIN, "n_train")
        val_jets = _subsample(splits["val"], config.n_val, config.seed, _STREAM_N_VAL, "n_val")
        test_jets = splits["test"]
        model, fit_summary = fit(config, train_jets, val_jets, log=log, resume=output_dir / RESUME_FILE,
                                 stop_after_epoch=stop_after_epoch, progress=progress)
        if not fit_summary["complete"]:
            return {"stopped_after": fit_summary["epochs_run"], "history": _json_ready(fit_summary["history"])}
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
        "dataset": source,
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
        **(record or {}),
    }
    result = _json_ready(result)
    (output_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
