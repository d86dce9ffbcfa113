"""Tests of coffea_lorentz.metrics against hand-computed cases and brute-force definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coffea_lorentz import metrics
from coffea_lorentz.errors import InvalidInputError


def brute_force_auc(label: np.ndarray, score: np.ndarray) -> float:
    """P(s_sig > s_bkg) + ½ P(s_sig == s_bkg) over every signal/background pair."""
    signal = score[label == 1]
    background = score[label == 0]
    total = 0.0
    for s in signal:
        for b in background:
            total += 1.0 if s > b else 0.5 if s == b else 0.0
    return total / (len(signal) * len(background))


def brute_force_roc(label: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ε_S, ε_B) for every cut ``score >= t`` with t over the distinct scores, plus the (0, 0) point."""
    points = [(0.0, 0.0)]
    for t in sorted(set(score.tolist()), reverse=True):
        passed = score >= t
        points.append((passed[label == 1].mean(), passed[label == 0].mean()))
    eps_s, eps_b = np.array(points).T
    return eps_s, eps_b


@pytest.mark.parametrize(
    ("label", "score", "expected"),
    [
        ([0, 1], [0.2, 0.7], 1.0),
        ([0, 1], [0.7, 0.2], 0.0),
        ([0, 1], [0.5, 0.5], 0.5),
        ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),
        # pairs: (s=.5: b=.5 tie ½, b=.2 win), (s=.1: lose, lose) → 1.5/4
        ([1, 0, 1, 0], [0.5, 0.5, 0.1, 0.2], 0.375),
        ([1, 1, 1, 0], [0.3, 0.3, 0.3, 0.3], 0.5),
    ],
)
def test_auc_hand_computed(label, score, expected):
    assert metrics.auc(np.array(label), np.array(score)) == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("n_distinct", [3, 20, 10_000])
@pytest.mark.parametrize("seed", [0, 1])
def test_auc_matches_brute_force(n_distinct, seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=300)
    # few distinct values → many ties; shift the signal so the AUC is away from ½
    score = rng.integers(0, n_distinct, size=300) / n_distinct + 0.2 * label
    assert metrics.auc(label, score) == pytest.approx(brute_force_auc(label, score), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n_distinct", [4, 1000])
def test_roc_curve_matches_brute_force(seed, n_distinct):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=200)
    score = rng.integers(0, n_distinct, size=200) + 3 * label * rng.random(200)
    eps_s, eps_b, threshold = metrics.roc_curve(label, score)
    expected_s, expected_b = brute_force_roc(label, score)
    np.testing.assert_allclose(eps_s, expected_s, atol=1e-15)
    np.testing.assert_allclose(eps_b, expected_b, atol=1e-15)
    assert threshold[0] == np.inf and np.all(np.diff(threshold[1:]) < 0)
    # trapezoidal area of the tie-aware ROC is the rank AUC
    area = float(np.sum(np.diff(eps_b) * (eps_s[1:] + eps_s[:-1]) / 2))
    assert area == pytest.approx(metrics.auc(label, score), abs=1e-12)


def test_rejection_hand_computed():
    # signal scores 4, 3, 2, 1; background 3.5, 2.5, 0.5, 0
    label = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    score = np.array([4, 3, 2, 1, 3.5, 2.5, 0.5, 0.0])
    # ROC: (0,0) (.25,0) (.25,.25) (.5,.25) (.5,.5) (.75,.5) (1,.5) (1,.75) (1,1)
    # ε_S = 0.3: on the segment (.25,.25)→(.5,.25): ε_B = .25 → 1/ε_B = 4
    assert metrics.background_rejection(label, score, 0.3) == pytest.approx(4.0)
    # ε_S = 0.5: the first point reaching .5 is (.5, .25) → 4
    assert metrics.background_rejection(label, score, 0.5) == pytest.approx(4.0)
    # ε_S = 0.625: halfway on (.5,.5)→(.75,.5) → ε_B = .5 → 2
    assert metrics.background_rejection(label, score, 0.625) == pytest.approx(2.0)
    # ε_S = 0.1: on (0,0)→(.25,0) → no background passes
    assert metrics.background_rejection(label, score, 0.1) == np.inf


def test_rejection_interpolates_through_ties():
    # one tied group of 2 signal + 2 background: the ROC goes straight from (0, 0) to (.5, .5)
    label = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    score = np.array([1.0, 1.0, 1.0, 1.0, 0.2, 0.1, 0.3, 0.0])
    assert metrics.background_rejection(label, score, 0.3) == pytest.approx(1 / 0.3)


@pytest.mark.parametrize("seed", [0, 3])
def test_rejection_matches_brute_force_staircase(seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, size=500)
    score = rng.normal(size=500) + label  # continuous: no ties
    signal_sorted = np.sort(score[label == 1])[::-1]
    for efficiency in metrics.SIGNAL_EFFICIENCIES:
        # without ties the ROC is a staircase: ε_S ≥ target first at the k-th best signal jet,
        # k = ceil(target · n_signal), and the background passing is what scores above it
        k = int(np.ceil(efficiency * len(signal_sorted) - 1e-9))
        passed = np.mean(score[label == 0] > signal_sorted[k - 1])
        assert metrics.background_rejection(label, score, efficiency) == pytest.approx(1 / passed, rel=1e-12)


def test_accuracy_hand_computed():
    label = np.array([1, 0, 1, 0, 1])
    score = np.array([0.9, 0.2, 0.4, 0.6, 0.5])  # right, right, wrong, wrong, wrong (0.5 is not > 0.5)
    assert metrics.accuracy(label, score) == pytest.approx(0.4)
    assert metrics.accuracy(label, score, threshold=0.3) == pytest.approx(0.8)


def test_summary_keys_and_values():
    label = np.array([0, 0, 1, 1])
    score = np.array([0.1, 0.4, 0.35, 0.8])
    result = metrics.summary(label, score)
    assert result["auc"] == pytest.approx(0.75)
    assert result["accuracy"] == pytest.approx(0.75)
    assert set(result) == {"auc", "accuracy", "rejection_at_0.3", "rejection_at_0.5", "n_signal", "n_background"}
    assert "accuracy" not in metrics.summary(label, score, threshold=None)


def test_auc_invariant_under_monotone_transform():
    rng = np.random.default_rng(5)
    label = rng.integers(0, 2, size=400)
    score = rng.normal(size=400) + label
    assert metrics.auc(label, np.exp(3 * score)) == pytest.approx(metrics.auc(label, score), abs=1e-15)


@pytest.mark.parametrize(
    ("label", "score", "message"),
    [
        ([0, 1, 1], [0.1, 0.2], "entries"),
        ([0, 2], [0.1, 0.2], "labels must be 0"),
        ([0, 1], [0.1, np.nan], "NaN"),
        ([[0, 1]], [[0.1, 0.2]], "1-d"),
    ],
)
def test_invalid_input_raises(label, score, message):
    with pytest.raises(InvalidInputError, match=message):
        metrics.auc(np.array(label), np.array(score))


def test_one_class_sample_has_no_auc():
    """AUC of one class is undefined: NaN with a warning; the ROC curve still refuses it."""
    with pytest.warns(RuntimeWarning, match="undefined for 2 signal and 0 background"):
        assert math.isnan(metrics.auc(np.array([1, 1]), np.array([0.1, 0.2])))
    with pytest.raises(InvalidInputError, match="both classes"):
        metrics.roc_curve(np.array([1, 1]), np.array([0.1, 0.2]))
    with pytest.warns(RuntimeWarning):
        result = metrics.summary(np.array([0, 0, 0]), np.array([0.1, 0.2, 0.7]))
    assert math.isnan(result["auc"]) and math.isnan(result["rejection_at_0.3"])
    assert result["accuracy"] == pytest.approx(2 / 3) and result["n_background"] == 3


def test_rejection_rejects_bad_efficiency():
    with pytest.raises(InvalidInputError, match="ε_S"):
        metrics.background_rejection(np.array([0, 1]), np.array([0.1, 0.2]), 0.0)
