"""Scores and figures of merit of a tagger on jets: :func:`predict`, :func:`evaluate`, and the
jet-observable baselines. Run twice on the same jets they give the same numbers (fixed batching,
no randomness)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..errors import InvalidInputError
from .jets import JetSet, _length_sorted_batches, _to_tensors

__all__ = ["predict", "evaluate", "observable_baselines", "EVAL_BATCH_SIZE", "BASELINE_OBSERVABLES"]

#: Jets per batch when scoring (no gradients, so larger than training batches).
EVAL_BATCH_SIZE = 256

#: Observables evaluated as one-variable discriminants next to the taggers (larger = more top-like).
BASELINE_OBSERVABLES: tuple[str, ...] = ("mass", "msoftdrop")


@torch.no_grad()
def predict(
    model: nn.Module, jets: JetSet, *, batch_size: int = EVAL_BATCH_SIZE, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Logits float32 [n_jets, n_classes] and signal probability float64 [n_jets] (softmax of class 1).

    Batches are fixed by length order, so the numbers do not depend on anything but the jets.
    """
    if len(jets) == 0:
        raise InvalidInputError("predict: expected at least one jet, got none")
    device = torch.device(device)
    was_training = model.training
    model.eval()
    logits_out = np.empty((0, 0), dtype=np.float32)
    try:
        for index in _length_sorted_batches(jets.lengths, batch_size):
            p4, mask = _to_tensors(jets, index, device)
            logits = model(p4, mask).float().cpu().numpy()
            if logits_out.size == 0:
                logits_out = np.empty((len(jets), logits.shape[1]), dtype=np.float32)
            logits_out[index] = logits
    finally:
        model.train(was_training)
    probability = torch.softmax(torch.from_numpy(logits_out).double(), dim=1)[:, 1].numpy()
    return logits_out, probability


def _cross_entropy(logits: np.ndarray, label: np.ndarray) -> float:
    return float(nn.functional.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(label)).item())


def evaluate(
    model: nn.Module, jets: JetSet, *, batch_size: int = EVAL_BATCH_SIZE, device: str | torch.device = "cpu"
) -> tuple[dict[str, float | int], np.ndarray]:
    """Metrics of ``model`` on ``jets`` (:func:`coffea_lorentz.metrics.summary` plus ``loss``) and the scores [n_jets]."""
    logits, score = predict(model, jets, batch_size=batch_size, device=device)
    result = metrics.summary(jets.label, score)
    result["loss"] = _cross_entropy(logits, jets.label)
    return result, score


def observable_baselines(jets: JetSet) -> dict[str, dict[str, float | int]]:
    """AUC and background rejection of each :data:`BASELINE_OBSERVABLES` the jets carry, used as the score."""
    return {
        name: metrics.summary(jets.label, np.asarray(jets.observables[name], dtype=np.float64), threshold=None)
        for name in BASELINE_OBSERVABLES
        if name in jets.observables
    }
