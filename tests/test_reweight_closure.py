"""The numbers a reweighting user trusts: χ²/ndf with the errors of both samples, the effective sample
size and clipping of the weights, and the reliability curve of the classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.reweight import (
    ClosureResult,
    closure,
    effective_sample_size,
    plot_closure,
    plot_reliability,
    reliability_curve,
    weight_summary,
    weights_from_probability,
)


# ----------------------------------------------------------------------------- χ²/ndf
def test_identical_distributions_give_chi2_ndf_near_one_over_many_toys():
    """Two independent samples of one distribution: the mean χ²/ndf over toys is 1 (errors of both
    samples, unit-sum normalisation taking one degree of freedom), for unit and for varying weights."""
    rng = np.random.default_rng(1)
    unweighted, weighted = [], []
    for _ in range(300):
        nominal, alternative = rng.normal(size=4000), rng.normal(size=3000)
        result = closure({"x": nominal}, {"x": alternative}, np.ones(4000), observables=["x"], n_bins=10)
        assert result.observables["x"].ndf_after == 9
        unweighted.append(result.observables["x"].chi2_ndf_after)
        # weights that do not change the shape: an exponential weight on an independent variable
        weights = rng.exponential(size=4000)
        weighted.append(closure({"x": nominal}, {"x": alternative}, weights, observables=["x"],
                                n_bins=10).observables["x"].chi2_ndf_after)
    # the mean of 300 χ²/9 values has a standard error of sqrt(2/9/300) ≈ 0.027
    assert abs(np.mean(unweighted) - 1.0) < 0.1
    assert abs(np.mean(weighted) - 1.0) < 0.1


def test_a_shifted_sample_gives_a_large_chi2_and_exact_weights_close_it():
    rng = np.random.default_rng(2)
    nominal, alternative = rng.normal(size=20000), rng.normal(0.2, 1.0, size=20000)
    exact = np.exp(0.2 * nominal - 0.02)  # N(0.2, 1) / N(0, 1)
    result = closure({"x": nominal}, {"x": alternative}, exact, observables=["x"], n_bins=10)
    assert result.observables["x"].chi2_ndf_before > 20
    assert result.observables["x"].chi2_ndf_after < 3


def test_chi2_uses_the_errors_of_both_samples():
    """A weighted nominal sample has larger errors (sqrt Σw²): the same difference gives a smaller χ²."""
    rng = np.random.default_rng(3)
    nominal, alternative = rng.normal(size=5000), rng.normal(0.1, 1.0, size=5000)
    flat = closure({"x": nominal}, {"x": alternative}, np.ones(5000), observables=["x"], n_bins=8)
    o = flat.observables["x"]
    expected = np.sum((o.reweighted - o.alternative) ** 2 / (o.reweighted_error**2 + o.alternative_error**2))
    assert o.chi2_after == pytest.approx(expected)
    np.testing.assert_allclose(o.alternative_error, np.sqrt(o.alternative * 5000) / 5000)
    spread = np.where(np.arange(5000) % 2 == 0, 0.2, 1.8)  # mean 1, Σw² larger than N
    spread_result = closure({"x": nominal}, {"x": alternative}, spread, observables=["x"], n_bins=8)
    assert np.all(spread_result.observables["x"].reweighted_error > o.reweighted_error)


def test_named_observables_are_added_and_a_missing_one_is_refused():
    rng = np.random.default_rng(4)
    nominal = {"mass": rng.normal(size=100), "ht": rng.normal(size=100), "my_var": rng.normal(size=100)}
    alternative = {"mass": rng.normal(size=80), "ht": rng.normal(size=80), "my_var": rng.normal(size=80)}
    result = closure(nominal, alternative, np.ones(100), extra_observables=["my_var"], n_bins=4)
    assert list(result.observables) == ["mass", "ht", "my_var"]
    with pytest.raises(InvalidInputError, match="'nope' is not in both samples.*'mass'"):
        closure(nominal, alternative, np.ones(100), extra_observables=["nope"])


# ----------------------------------------------------------------------------- weights
def test_effective_sample_size():
    assert effective_sample_size(np.ones(1000)) == pytest.approx(1000)
    assert effective_sample_size(np.full(50, 3.7)) == pytest.approx(50)
    one_huge = np.concatenate([np.ones(999), [1e6]])
    assert effective_sample_size(one_huge) == pytest.approx(1.0, abs=0.01)
    assert effective_sample_size(np.zeros(3)) == 0.0


def test_weight_summary_counts_clipped_weights():
    epsilon, max_weight = 0.01, 5.0
    f = np.array([0.5, 0.6, 0.001, 0.999, 0.9, np.nan])  # 0.001: f clipped; 0.999: f and w clipped; 0.9: w=9 clipped
    summary = weight_summary(f, epsilon=epsilon, max_weight=max_weight)
    assert summary.n == 6
    assert summary.clipped_probability == 2 and summary.clipped_weight == 2 and summary.clipped_any == 3
    assert summary.clipped_fraction == pytest.approx(0.5)
    w = weights_from_probability(f, epsilon=epsilon, max_weight=max_weight)
    assert summary.sum_w == pytest.approx(w.sum()) and summary.max == max_weight
    assert summary.effective_n == pytest.approx(w.sum() ** 2 / (w**2).sum())
    record = json.loads(json.dumps(summary.as_dict()))
    assert record["clipped"] == 3 and "effective N" in summary.line()
    none_clipped = weight_summary(np.full(10, 0.5), epsilon=epsilon, max_weight=max_weight)
    assert none_clipped.clipped_any == 0 and none_clipped.effective_fraction == pytest.approx(1.0)


# ----------------------------------------------------------------------------- reliability
def test_reliability_curve_of_a_calibrated_toy_lies_on_the_diagonal(tmp_path):
    """Labels drawn with probability f: the observed fraction matches f in every bin."""
    rng = np.random.default_rng(5)
    f = rng.uniform(0.2, 0.8, size=40000)
    label = rng.uniform(size=f.size) < f
    curve = reliability_curve(f[~label], f[label], n_bins=10)
    assert len(curve.count) == 10 and curve.count.sum() == f.size
    assert curve.max_deviation < 0.03
    assert curve.chi2 / curve.ndf < 2.5
    np.testing.assert_allclose(curve.observed, curve.predicted, atol=4 * curve.error.max())
    assert curve.class_fraction == pytest.approx(label.mean())
    # a miscalibrated one (f pushed towards 0.5) is off the diagonal
    squeezed = 0.5 + 0.3 * (f - 0.5)
    bad = reliability_curve(squeezed[~label], squeezed[label], n_bins=10)
    assert bad.max_deviation > 0.1 and bad.chi2 / bad.ndf > 10
    path = plot_reliability(curve, tmp_path / "calibration.png", title="toy")
    assert path.stat().st_size > 10_000
    assert json.loads(json.dumps(curve.as_dict()))["ndf"] == 10


def test_closure_result_carries_the_diagnostics_into_its_record_and_table(tmp_path):
    rng = np.random.default_rng(6)
    f_nom, f_alt = rng.uniform(0.3, 0.6, 500), rng.uniform(0.4, 0.7, 500)
    values = {"mass": rng.normal(size=500), "eta": rng.normal(size=500)}
    result = closure(values, values, weights_from_probability(f_nom), n_bins=5,
                     weight_summary=weight_summary(f_nom, epsilon=1e-3, max_weight=10.0),
                     reliability=reliability_curve(f_nom, f_alt, n_bins=5), level="event")
    assert isinstance(result, ClosureResult)
    record = result.as_dict()
    assert record["level"] == "event" and record["weights"]["n"] == 500 and len(record["reliability"]["count"]) == 5
    assert record["observables"]["mass"]["ndf_after"] == 4 and "chi2_ndf_after" in record["observables"]["eta"]
    text = "\n".join(result.table())
    assert "held-out events" in text and "effective N" in text and "calibration" in text
    assert result.worst.name in ("mass", "eta")
    assert plot_closure(result, tmp_path / "c.png").stat().st_size > 10_000


def test_event_closure_joins_a_jet_closure_and_weights_events_by_their_leading_jet(tmp_path):
    """A per-jet reweighter's closure with the event observables of held-out events: one record, one
    table, one plot; each event weighted as the run's WeightHead weights it (leading jet, 1 without one)."""
    import awkward as ak

    from coffea_lorentz.reweight import event_weights, jet_weights, leading_jet_event_weights

    rng = np.random.default_rng(7)
    f_lead = rng.uniform(0.2, 0.8, 400)
    f_lead[:5] = np.nan  # leading jet without constituents: not scored
    n_fat = rng.integers(0, 4, 400)
    w = leading_jet_event_weights(f_lead, n_fat, epsilon=1e-3, max_weight=10.0, prior_ratio=1.2)
    # the run: every jet's weight (other jets scored anything), then the leading jet's per event
    jagged = ak.unflatten(np.concatenate([[f] + list(rng.uniform(size=n - 1)) for f, n in zip(f_lead, n_fat) if n]),
                          n_fat)
    run = event_weights(jet_weights(jagged, epsilon=1e-3, max_weight=10.0, prior_ratio=1.2))
    np.testing.assert_array_equal(w, run)
    assert w.dtype == np.float32 and np.all(w[(n_fat == 0) | np.isnan(f_lead)] == 1)

    jets = closure({"mass": rng.normal(size=600)}, {"mass": rng.normal(size=500)}, np.ones(600), n_bins=5)
    event_values = {"ht": rng.normal(500, 50, 400), "n_jets": rng.integers(2, 8, 400).astype(float)}
    events = closure(event_values, event_values, w.astype(np.float64), n_bins=5, level="event",
                     weight_summary=weight_summary(f_lead, epsilon=1e-3, max_weight=10.0, prior_ratio=1.2))
    both = jets.with_events(events)
    assert list(both.observables) == ["mass", "ht", "n_jets"] and both.level == "jet"
    record = json.loads(json.dumps(both.as_dict()))
    assert record["observables"]["mass"]["level"] == "jet" and record["observables"]["ht"]["level"] == "event"
    assert record["observables"]["n_jets"]["ndf_after"] >= 1 and record["n_nominal"] == 600
    assert record["events"]["n_nominal"] == 400 and record["events"]["weights"]["n"] == 400
    total_ndf = sum(o["ndf_after"] for o in record["observables"].values())
    assert record["chi2_ndf_after"] == pytest.approx(sum(o["chi2_after"] for o in record["observables"].values()) / total_ndf)
    text = "\n".join(both.table())
    assert text.index("mass") < text.index("event observables (held-out events") < text.index("ht")
    assert "held-out jets: 600" in text and "held-out events: 400" in text and "event weights:" in text
    assert plot_closure(both, tmp_path / "c.png").stat().st_size > 10_000
    with pytest.raises(InvalidInputError, match="jet-level closure and an event-level one"):
        events.with_events(jets)
    with pytest.raises(InvalidInputError, match="in both the jet and the event closure"):
        jets.with_events(closure({"mass": np.ones(10)}, {"mass": np.ones(10)}, np.ones(10), level="event"))


def test_run_weight_lines_add_chunks_up():
    from types import SimpleNamespace

    from coffea_lorentz.reweight.diagnostics import event_weight_counts, weight_lines

    spec = SimpleNamespace(name="x", epsilon=0.01, max_weight=4.0, prior_ratio=1.0)
    first = event_weight_counts({"weight_x": np.array([1.0, 4.0, 1.0 / 99])}, [spec])
    second = event_weight_counts({"weight_x": np.array([2.0]), "weight_other": np.ones(3)}, [spec])
    assert first == {"x": {"events": 3, "sum_w": pytest.approx(5.0101, abs=1e-4), "sum_w2": pytest.approx(17.0001, abs=1e-4),
                           "clipped": 2}}
    (line,) = weight_lines([("qcd", first), ("qcd", second)])
    w = np.array([1.0, 4.0, 1.0 / 99, 2.0])
    assert line.startswith("weight_x of dataset 'qcd': 4 events, mean 1.753")
    assert f"= {w.sum() ** 2 / (w**2).sum():.0f} (" in line and "clipped 2 (50.00 %)" in line
