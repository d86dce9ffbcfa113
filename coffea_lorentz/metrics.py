"""Binary-classifier figures of merit for taggers: AUC, accuracy, ROC curve, background rejection.

Conventions: ``label`` is an int or bool array [n_jets] with 1 = signal (top) and 0 = background
(QCD); ``score`` is a float array [n_jets], larger = more signal-like. Everything is vectorised
numpy and deterministic. Ties in the score are handled exactly: a tied signal/background pair
counts one half in the AUC, and on the ROC curve a tied group moves the signal and background
efficiencies together (one straight segment). A sample of one class has no AUC: :func:`auc`
returns NaN with a :class:`RuntimeWarning` (as does :func:`summary` for its ranking figures),
while :func:`roc_curve` and :func:`background_rejection` raise.

>>> import numpy as np
>>> auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import InvalidInputError

__all__ = [
    "auc",
    "accuracy",
    "roc_curve",
    "background_rejection",
    "summary",
    "SIGNAL_EFFICIENCIES",
]

#: Signal efficiencies ε_S at which :func:`summary` quotes the background rejection 1/ε_B.
SIGNAL_EFFICIENCIES: tuple[float, ...] = (0.3, 0.5)


def _checked(label, score, *, need_both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``label`` → bool [n], ``score`` → float64 [n], with a clear error for anything else."""
    label = np.asarray(label)
    score = np.asarray(score, dtype=np.float64)
    if label.ndim != 1 or score.ndim != 1:
        raise InvalidInputError(
            f"metrics: expected 1-d label and score arrays, got shapes {label.shape} and {score.shape}"
        )
    if label.shape != score.shape:
        raise InvalidInputError(f"metrics: label has {label.shape[0]} entries but score has {score.shape[0]}")
    if label.size and not np.isin(label, (0, 1)).all():
        bad = np.unique(label[~np.isin(label, (0, 1))])[:5]
        raise InvalidInputError(f"metrics: labels must be 0 (background) or 1 (signal), got also {bad.tolist()}")
    if not np.isfinite(score).all():
        raise InvalidInputError(f"metrics: {int((~np.isfinite(score)).sum())} scores are NaN or infinite")
    is_signal = label.astype(bool)
    if need_both_classes and (is_signal.all() or not is_signal.any()):
        raise InvalidInputError(
            f"metrics: need both classes, got {int(is_signal.sum())} signal and {int((~is_signal).sum())} background"
        )
    return is_signal, score


def auc(label, score) -> float:
    """Area under the ROC curve: P(score_signal > score_background) + ½ P(equal).

    Computed from average ranks (Mann–Whitney U), O(n log n). NaN, with a :class:`RuntimeWarning`,
    when the sample holds only one class (the area is undefined; a small validation split can).
    """
    is_signal, score = _checked(label, score, need_both_classes=False)
    n_signal = int(is_signal.sum())
    n_background = is_signal.size - n_signal
    if n_signal == 0 or n_background == 0:
        warnings.warn(
            f"metrics.auc: undefined for {n_signal} signal and {n_background} background jets; returning NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    # average 1-based rank of each distinct value: ranks of a tied group are (start+1 … start+count)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0
    rank = average_rank[inverse]
    u = rank[is_signal].sum() - n_signal * (n_signal + 1) / 2.0
    return float(u / (n_signal * n_background))


def accuracy(label, score, *, threshold: float = 0.5) -> float:
    """Fraction of jets classified right when ``score > threshold`` means signal.

    With softmax probabilities of class 1 and ``threshold=0.5`` this is argmax of the logits
    (an exact tie goes to background, as ``argmax`` picks the first class).
    """
    is_signal, score = _checked(label, score, need_both_classes=False)
    if is_signal.size == 0:
        raise InvalidInputError("metrics: accuracy of an empty set of jets")
    return float(np.mean((score > threshold) == is_signal))


def roc_curve(label, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve: (ε_S [k], ε_B [k], threshold [k]), thresholds descending.

    Point ``i`` counts the jets with ``score >= threshold[i]``; the first point is (0, 0) with
    threshold +inf, the last (1, 1). One point per distinct score value, so ties never split.
    """
    is_signal, score = _checked(label, score)
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order]
    sorted_signal = is_signal[order]
    # last index of each run of equal scores (descending order)
    last = np.flatnonzero(np.r_[sorted_score[1:] != sorted_score[:-1], True])
    n_signal_above = np.cumsum(sorted_signal)[last]
    n_background_above = (last + 1) - n_signal_above
    eps_s = np.r_[0.0, n_signal_above / is_signal.sum()]
    eps_b = np.r_[0.0, n_background_above / (~is_signal).sum()]
    threshold = np.r_[np.inf, sorted_score[last]]
    return eps_s, eps_b, threshold


def background_rejection(label, score, signal_efficiency: float) -> float:
    """1/ε_B at signal efficiency ``signal_efficiency`` (0 < ε_S ≤ 1), linear interpolation on the ROC.

    Returns ``inf`` when no background passes at that working point.
    """
    if not 0.0 < signal_efficiency <= 1.0:
        raise InvalidInputError(f"background_rejection: expected 0 < ε_S <= 1, got {signal_efficiency}")
    eps_s, eps_b, _ = roc_curve(label, score)
    # eps_s is non-decreasing; take the first segment that reaches the target
    upper = int(np.searchsorted(eps_s, signal_efficiency, side="left"))
    lower = upper - 1
    fraction = (signal_efficiency - eps_s[lower]) / (eps_s[upper] - eps_s[lower])
    background = eps_b[lower] + fraction * (eps_b[upper] - eps_b[lower])
    return float(np.inf) if background <= 0 else float(1.0 / background)


def summary(label, score, *, threshold: float | None = 0.5) -> dict[str, float | int]:
    """``auc``, ``accuracy`` (omitted when ``threshold`` is None), ``rejection_at_<ε_S>`` and class counts.

    For a sample of one class the AUC and the rejections are NaN (one :class:`RuntimeWarning`).
    """
    is_signal, score = _checked(label, score, need_both_classes=False)
    both_classes = bool(is_signal.any()) and not bool(is_signal.all())
    result: dict[str, float | int] = {"auc": auc(is_signal, score)}
    if threshold is not None:
        result["accuracy"] = accuracy(is_signal, score, threshold=threshold)
    for efficiency in SIGNAL_EFFICIENCIES:
        rejection = background_rejection(is_signal, score, efficiency) if both_classes else float("nan")
        result[f"rejection_at_{efficiency:g}"] = rejection
    result["n_signal"] = int(is_signal.sum())
    result["n_background"] = int((~is_signal).sum())
    return result
