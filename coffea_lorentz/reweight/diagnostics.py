"""What a reweighting user checks before trusting the weights: their effective sample size, how many
were clipped, and whether the classifier's probabilities are calibrated (a reliability curve).

numpy only; :func:`plot_reliability` imports matplotlib and mplhep when called.

- Effective sample size of weights w: N_eff = (Σw)² / Σw². Equal weights give N_eff = N; one weight
  much larger than the rest gives N_eff → 1. The statistical power of the reweighted sample is that
  of N_eff unweighted events.
- Clipping (:func:`~coffea_lorentz.reweight.weights.weights_from_probability`): the probability f
  is clipped to [ε, 1 − ε] and the weight to [0, w_max]; a weight at either limit is not the
  density ratio. :class:`WeightSummary` counts both.
- Reliability curve: held-out jets (or events) of both classes binned in the predicted f; in each
  bin, the observed fraction of class 1 (alternative) against the mean predicted f. A calibrated
  classifier lies on the diagonal; w = f/(1 − f) is the density ratio only where it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError

__all__ = ["effective_sample_size", "WeightSummary", "weight_summary", "event_weight_counts", "weight_totals", "weight_lines",
           "ReliabilityCurve", "reliability_curve", "plot_reliability"]


def effective_sample_size(weights: np.ndarray) -> float:
    """(Σw)² / Σw² of ``weights`` float [n] (0 for no weights or all zero).

    >>> effective_sample_size(np.ones(100)), round(effective_sample_size([1.0, 1.0, 1e6]), 3)
    (100.0, 1.0)
    """
    w = np.asarray(weights, dtype=np.float64)
    sum_w2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / sum_w2 if sum_w2 > 0 else 0.0


@dataclass(frozen=True, kw_only=True)
class WeightSummary:
    """Weights of one sample and their clipping.

    Attributes:
        n: weights (jets or events; NaN probabilities, which get weight 1, included).
        sum_w, sum_w2: Σw and Σw².
        effective_n: (Σw)² / Σw².
        clipped_probability: weights whose f lay outside [ε, 1 − ε] (clipped before the ratio).
        clipped_weight: weights clipped at ``max_weight`` (after the ratio).
        clipped_any: weights at either limit (a weight counted once).
        mean, max: mean and largest weight.
    """

    n: int
    sum_w: float
    sum_w2: float
    effective_n: float
    clipped_probability: int
    clipped_weight: int
    clipped_any: int
    mean: float
    max: float

    @property
    def effective_fraction(self) -> float:
        """N_eff / N (1 for equal weights)."""
        return self.effective_n / self.n if self.n else 0.0

    @property
    def clipped_fraction(self) -> float:
        return self.clipped_any / self.n if self.n else 0.0

    def line(self) -> str:
        """One line for a log: N_eff and the clipped fraction."""
        return (f"weights: N = {self.n}, effective N = (sum w)^2/sum w^2 = {self.effective_n:.0f} "
                f"({100 * self.effective_fraction:.1f} %), mean {self.mean:.3f}, max {self.max:.3g}; clipped "
                f"{self.clipped_any} ({100 * self.clipped_fraction:.2f} %: f outside [eps, 1-eps] "
                f"{self.clipped_probability}, w at w_max {self.clipped_weight})")

    def as_dict(self) -> dict:
        return {"n": self.n, "sum_w": self.sum_w, "sum_w2": self.sum_w2, "effective_n": self.effective_n,
                "effective_fraction": self.effective_fraction, "clipped": self.clipped_any,
                "clipped_fraction": self.clipped_fraction, "clipped_probability": self.clipped_probability,
                "clipped_weight": self.clipped_weight, "mean": self.mean, "max": self.max}


def weight_summary(probability: np.ndarray, *, epsilon: float, max_weight: float,
                   prior_ratio: float = 1.0) -> WeightSummary:
    """The weights of probabilities ``probability`` float [n] (as
    :func:`~coffea_lorentz.reweight.weights.weights_from_probability` makes them) and their clipping.

    >>> s = weight_summary(np.array([0.5, 0.9999, 0.99, np.nan]), epsilon=1e-3, max_weight=10.0)
    >>> s.clipped_probability, s.clipped_weight, s.clipped_any
    (1, 2, 2)
    """
    from .weights import weights_from_probability

    f = np.asarray(probability, dtype=np.float64)
    w = weights_from_probability(f, epsilon=epsilon, max_weight=max_weight, prior_ratio=prior_ratio)
    finite = np.isfinite(f)
    low_f = finite & ((f < epsilon) | (f > 1.0 - epsilon))
    clipped_f = np.clip(f, epsilon, 1.0 - epsilon)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_max = finite & (prior_ratio * clipped_f / (1.0 - clipped_f) >= max_weight)
    return WeightSummary(
        n=int(w.size), sum_w=float(w.sum()), sum_w2=float((w * w).sum()), effective_n=effective_sample_size(w),
        clipped_probability=int(low_f.sum()), clipped_weight=int(at_max.sum()),
        clipped_any=int((low_f | at_max).sum()),
        mean=float(w.mean()) if w.size else 0.0, max=float(w.max()) if w.size else 0.0,
    )


def event_weight_counts(event_branches, reweighters) -> dict:
    """What a processor records per chunk: reweighter name → ``{"events", "sum_w", "sum_w2", "clipped"}``
    of its per-event weights ``event_branches["weight_<name>"]`` (float [n_events]); ``clipped`` counts
    weights at a clipping limit (w_max, or prior_ratio · ε/(1 − ε)). ``reweighters``: objects with
    ``name``, ``epsilon``, ``max_weight``, ``prior_ratio``. Numbers only, so chunks add up."""
    counts = {}
    for spec in reweighters:
        branch = f"weight_{spec.name}"
        if branch not in event_branches:
            continue
        w = np.asarray(event_branches[branch], dtype=np.float64)
        low = spec.prior_ratio * spec.epsilon / (1.0 - spec.epsilon)
        clipped = (w >= spec.max_weight * (1 - 1e-6)) | (w <= low * (1 + 1e-6))
        counts[spec.name] = {"events": int(w.size), "sum_w": float(w.sum()), "sum_w2": float((w * w).sum()),
                             "clipped": int(clipped.sum())}
    return counts


def weight_totals(per_chunk) -> dict[tuple[str, str], dict]:
    """Chunks' weight counts added up: (dataset, reweighter) → ``{"events", "sum_w", "sum_w2",
    "clipped"}`` from (dataset, :func:`event_weight_counts` result) pairs."""
    totals: dict[tuple[str, str], dict] = {}
    for dataset, counts in per_chunk:
        for name, c in counts.items():
            total = totals.setdefault((dataset, name), {"events": 0, "sum_w": 0.0, "sum_w2": 0.0, "clipped": 0})
            for key in total:
                total[key] += c[key]
    return totals


def weight_lines(per_chunk) -> list[str]:
    """One line per (dataset, reweighter) from (dataset, :func:`event_weight_counts` result) pairs:
    events, mean weight, effective sample size (Σw)²/Σw² and the clipped fraction of the per-event weights."""
    totals = {key: (t["events"], t["sum_w"], t["sum_w2"], t["clipped"]) for key, t in weight_totals(per_chunk).items()}
    lines = []
    for (dataset, name), (n, sum_w, sum_w2, clipped) in sorted(totals.items()):
        if not n:
            continue
        effective = sum_w**2 / sum_w2 if sum_w2 > 0 else 0.0
        lines.append(f"weight_{name} of dataset {dataset!r}: {int(n)} events, mean {sum_w / n:.3f}, effective N "
                     f"(sum w)^2/sum w^2 = {effective:.0f} ({100 * effective / n:.1f} %), clipped {int(clipped)} "
                     f"({100 * clipped / n:.2f} %)")
    return lines


@dataclass(frozen=True)
class ReliabilityCurve:
    """Observed fraction of class 1 against the predicted probability, in bins of the prediction.

    Attributes:
        edges: float64 [n_bins + 1] bin edges in f (quantiles of the pooled predictions).
        predicted: float64 [n_bins] mean predicted f in each bin.
        observed: float64 [n_bins] fraction of class 1 (alternative) in each bin.
        error: float64 [n_bins] binomial standard error of ``observed``, sqrt(p(1 − p)/n).
        count: int64 [n_bins] entries per bin.
        class_fraction: class-1 fraction of all entries (what a classifier without information predicts).
    """

    edges: np.ndarray
    predicted: np.ndarray
    observed: np.ndarray
    error: np.ndarray
    count: np.ndarray
    class_fraction: float

    @property
    def chi2(self) -> float:
        """Σ (observed − predicted)² / error² over bins with entries (error from the predicted p)."""
        used = self.count > 0
        p = np.clip(self.predicted[used], 1e-12, 1 - 1e-12)
        variance = p * (1 - p) / self.count[used]
        return float(np.sum((self.observed[used] - self.predicted[used]) ** 2 / variance))

    @property
    def ndf(self) -> int:
        return int(np.count_nonzero(self.count))

    @property
    def max_deviation(self) -> float:
        """Largest |observed − predicted| over bins with entries."""
        used = self.count > 0
        return float(np.max(np.abs(self.observed[used] - self.predicted[used]), initial=0.0))

    def line(self) -> str:
        return (f"calibration (held-out, {len(self.count)} bins of f): chi2/ndf {self.chi2:.1f}/{self.ndf} = "
                f"{self.chi2 / max(self.ndf, 1):.2f}, largest |observed - predicted| {self.max_deviation:.3f}")

    def as_dict(self) -> dict:
        return {"edges": self.edges.tolist(), "predicted": self.predicted.tolist(),
                "observed": self.observed.tolist(), "error": self.error.tolist(), "count": self.count.tolist(),
                "class_fraction": self.class_fraction, "chi2": self.chi2, "ndf": self.ndf,
                "max_deviation": self.max_deviation}


def reliability_curve(f_nominal: np.ndarray, f_alternative: np.ndarray, *, n_bins: int = 10) -> ReliabilityCurve:
    """The reliability curve of predictions f (probability of class 1) on held-out entries of each class.

    ``f_nominal`` and ``f_alternative`` float [n] (NaN entries are left out); bins are ``n_bins``
    quantiles of the pooled predictions, so each holds about the same number of entries.
    """
    if n_bins < 1:
        raise InvalidInputError(f"reliability_curve: n_bins must be >= 1, got {n_bins}")
    f = np.concatenate([np.asarray(f_nominal, np.float64), np.asarray(f_alternative, np.float64)])
    y = np.concatenate([np.zeros(len(f_nominal)), np.ones(len(f_alternative))])
    keep = np.isfinite(f)
    f, y = f[keep], y[keep]
    if f.size == 0:
        raise InvalidInputError("reliability_curve: no finite prediction")
    edges = np.unique(np.quantile(f, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size < 2:
        edges = np.array([f.min(), f.min()])
    edges[-1] = np.nextafter(edges[-1], np.inf)
    index = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(index, minlength=len(edges) - 1).astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        predicted = np.bincount(index, weights=f, minlength=len(edges) - 1) / count
        observed = np.bincount(index, weights=y, minlength=len(edges) - 1) / count
        error = np.sqrt(observed * (1 - observed) / count)
    return ReliabilityCurve(edges=edges, predicted=predicted, observed=observed, error=error, count=count,
                            class_fraction=float(y.mean()))


def plot_reliability(curve: ReliabilityCurve, path: str | Path, *, title: str = "") -> Path:
    """Draw ``curve`` (observed vs predicted, the diagonal, and observed − predicted below) to ``path`` (PNG),
    in the CMS style of mplhep on a figure pyplot does not track."""
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    used = curve.count > 0
    with matplotlib.style.context(mplhep.style.CMS):
        figure = Figure(figsize=(8, 9))
        top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
        low = float(min(curve.predicted[used].min(), curve.observed[used].min()))
        high = float(max(curve.predicted[used].max(), curve.observed[used].max()))
        pad = 0.05 * max(high - low, 1e-3)
        line = np.array([low - pad, high + pad])
        top.plot(line, line, color="#9c9ca1", linestyle="--", label="calibrated")
        top.errorbar(curve.predicted[used], curve.observed[used], yerr=curve.error[used], fmt="o",
                     color="#5790fc", label=f"held-out ($\\chi^2$/ndf {curve.chi2:.1f}/{curve.ndf})")
        top.set_ylabel("observed fraction of alternative")
        top.legend(fontsize=14)
        bottom.axhline(0.0, color="black", linewidth=1)
        bottom.errorbar(curve.predicted[used], curve.observed[used] - curve.predicted[used], yerr=curve.error[used],
                        fmt="o", color="#5790fc")
        bottom.set_ylabel("obs. $-$ pred.")
        bottom.set_xlabel("predicted probability $f$ of alternative")
        bottom.set_xlim(*line)
        if title:
            top.set_title(title, fontsize=16)
        figure.savefig(path, bbox_inches="tight")
    return path
