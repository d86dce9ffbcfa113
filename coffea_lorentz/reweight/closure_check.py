"""The closure test: nominal, reweighted nominal and alternative jets (or events) in histograms of
observables, with χ²/ndf before and after reweighting, and the plot of them.

Each observable is binned in quantiles of the pooled nominal and alternative values; the
histograms (``hist``, weighted storage) are normalised to unit sum and compared bin by bin with the
statistical errors of *both* samples:

    χ² = Σ_bins (h_rw − h_alt)² / (σ_rw² + σ_alt²),   σ = sqrt(Σw²) / Σw,   ndf = bins − 1,

so two independent samples of one distribution give χ²/ndf ≈ 1 (the unit-sum normalisation takes
one degree of freedom). The result also carries the effective sample size and clipping of the
weights (:class:`~coffea_lorentz.reweight.diagnostics.WeightSummary`) and the classifier's
reliability curve when the caller gives them.

A per-jet reweighter trained on a fileset is also judged on held-out *events*, each weighted as a
run weights it (its leading fat jet's weight): :meth:`ClosureResult.with_events` adds that
event-level closure (``ht``, ``n_jets``, ``leading_jet_pt``; each observable says its ``level``).

numpy and hist; :func:`plot_closure` imports matplotlib and mplhep when called and draws inside a
style context on its own figure, so the caller's pyplot state, style and backend stay as they were.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from .diagnostics import ReliabilityCurve, WeightSummary

__all__ = ["CLOSURE_OBSERVABLES", "EVENT_OBSERVABLES", "ObservableClosure", "ClosureResult", "closure",
           "plot_closure"]

#: Jet observables compared in the closure test, when the samples have them.
CLOSURE_OBSERVABLES: tuple[str, ...] = ("mass", "msoftdrop", "pt", "eta", "n_constituents", "tau21", "tau32")

#: Event observables compared in the closure test, when the samples have them: HT (scalar sum of
#: the AK4 jets' pT, GeV), the number of AK4 jets, the leading jet's pT (GeV) and, for an event-level
#: reweighter, the number of objects its classifier chose from (before truncation).
EVENT_OBSERVABLES: tuple[str, ...] = ("ht", "n_jets", "leading_jet_pt", "n_objects")

#: Axis labels of the closure plot.
_LABELS: dict[str, str] = {
    "mass": "jet mass [GeV]",
    "msoftdrop": "soft-drop mass [GeV]",
    "n_constituents": "number of constituents",
    "tau32": r"$\tau_{32}$",
    "tau21": r"$\tau_{21}$",
    "pt": r"jet $p_T$ [GeV]",
    "eta": r"jet $\eta$",
    "ht": r"$H_T$ [GeV]",
    "n_jets": "AK4 jets per event",
    "leading_jet_pt": r"leading AK4 jet $p_T$ [GeV]",
    "n_objects": "objects per event",
}



@dataclass(frozen=True)
class ObservableClosure:
    """Unit-area histograms of one observable and their χ² against the alternative sample.

    Attributes:
        name: the observable.
        edges: float64 [n_bins + 1] bin edges.
        nominal, reweighted, alternative: float64 [n_bins] bin contents, each normalised to unit sum.
        nominal_error, reweighted_error, alternative_error: float64 [n_bins] standard errors,
            sqrt(Σ w²) / Σw (unweighted samples: sqrt(n) / N).
        chi2_before, chi2_after: χ² of nominal and of reweighted nominal against alternative.
        ndf: bins with a non-zero error in both compared histograms, minus 1 (the normalisation).
        level: ``"jet"`` or ``"event"``: what one entry of the compared samples is.
    """

    name: str
    edges: np.ndarray
    nominal: np.ndarray
    reweighted: np.ndarray
    alternative: np.ndarray
    nominal_error: np.ndarray
    reweighted_error: np.ndarray
    alternative_error: np.ndarray
    chi2_before: float
    chi2_after: float
    ndf_before: int
    ndf_after: int
    level: str = "jet"

    @property
    def chi2_ndf_before(self) -> float:
        return self.chi2_before / max(self.ndf_before, 1)

    @property
    def chi2_ndf_after(self) -> float:
        return self.chi2_after / max(self.ndf_after, 1)


@dataclass(frozen=True)
class ClosureResult:
    """Closure of every observable plus the combined χ²/ndf (χ² and ndf summed over observables).

    ``weights``: the held-out weights' effective sample size and clipping; ``reliability``: the
    classifier's reliability curve on the held-out entries (None when not computed).
    ``level``: ``"jet"`` or ``"event"`` (what one entry is). ``events``: the event-level closure of a
    per-jet reweighter (:meth:`with_events`), whose observables are also in ``observables``; the
    combined χ²/ndf and :attr:`worst` then cover both.
    """

    observables: dict[str, ObservableClosure]
    n_nominal: int
    n_alternative: int
    effective_n_reweighted: float
    weights: WeightSummary | None = None
    reliability: ReliabilityCurve | None = None
    level: str = "jet"
    events: ClosureResult | None = None

    def with_events(self, events: ClosureResult) -> ClosureResult:
        """This (jet-level) closure plus ``events``, the event-level closure of the same reweighter on
        held-out events: their observables joined (an event observable keeps its own name and says
        ``level: "event"``), ``events`` kept for its counts and weights."""
        if self.level != "jet" or events.level != "event" or self.events is not None:
            raise InvalidInputError(f"ClosureResult.with_events: expected a jet-level closure and an event-level one, "
                                    f"got {self.level!r} and {events.level!r}")
        clash = sorted(set(self.observables) & set(events.observables))
        if clash:
            raise InvalidInputError(f"ClosureResult.with_events: observables {clash} are in both the jet and the "
                                    "event closure")
        return dataclasses.replace(self, observables={**self.observables, **events.observables}, events=events)

    @property
    def worst(self) -> ObservableClosure:
        """The observable with the largest χ²/ndf after reweighting."""
        return max(self.observables.values(), key=lambda o: o.chi2_ndf_after)

    @property
    def chi2_ndf_before(self) -> float:
        return sum(o.chi2_before for o in self.observables.values()) / max(sum(o.ndf_before for o in self.observables.values()), 1)

    @property
    def chi2_ndf_after(self) -> float:
        return sum(o.chi2_after for o in self.observables.values()) / max(sum(o.ndf_after for o in self.observables.values()), 1)

    def table(self) -> list[str]:
        """One line per observable: χ²/ndf before → after; then the combined line."""
        lines = [f"{'observable':<16}{'chi2/ndf before':>18}{'chi2/ndf after':>18}"]
        previous = self.level
        for o in self.observables.values():
            if o.level != previous:
                lines.append(f"{o.level} observables (held-out {o.level}s, each weighted by its leading fat jet):")
                previous = o.level
            lines.append(
                f"{o.name:<16}{o.chi2_before:>9.1f}/{o.ndf_before:<3d}={o.chi2_ndf_before:<5.2f}"
                f"{o.chi2_after:>9.1f}/{o.ndf_after:<3d}={o.chi2_ndf_after:<5.2f}"
            )
        lines.append(f"{'combined':<16}{self.chi2_ndf_before:>18.2f}{self.chi2_ndf_after:>18.2f}")
        lines.append(
            f"held-out {self.level}s: {self.n_nominal} nominal (effective {self.effective_n_reweighted:.0f} after "
            f"reweighting), {self.n_alternative} alternative"
        )
        if self.weights is not None:
            lines.append(self.weights.line())
        if self.events is not None:
            lines.append(
                f"held-out events: {self.events.n_nominal} nominal (effective {self.events.effective_n_reweighted:.0f} "
                f"after reweighting), {self.events.n_alternative} alternative"
            )
            if self.events.weights is not None:
                lines.append(f"event {self.events.weights.line()}")
        if self.reliability is not None:
            lines.append(self.reliability.line())
        return lines

    def as_dict(self) -> dict:
        """Plain numbers for JSON."""
        record = {
            "level": self.level,
            "chi2_ndf_before": self.chi2_ndf_before,
            "chi2_ndf_after": self.chi2_ndf_after,
            "n_nominal": self.n_nominal,
            "n_alternative": self.n_alternative,
            "effective_n_reweighted": self.effective_n_reweighted,
            "observables": {
                o.name: {
                    "chi2_before": o.chi2_before,
                    "ndf_before": o.ndf_before,
                    "chi2_ndf_before": o.chi2_ndf_before,
                    "chi2_after": o.chi2_after,
                    "ndf_after": o.ndf_after,
                    "chi2_ndf_after": o.chi2_ndf_after,
                    "level": o.level,
                }
                for o in self.observables.values()
            },
        }
        if self.weights is not None:
            record["weights"] = self.weights.as_dict()
        if self.events is not None:
            record["events"] = {"n_nominal": self.events.n_nominal, "n_alternative": self.events.n_alternative,
                                "effective_n_reweighted": self.events.effective_n_reweighted,
                                "weight": "the event's leading fat jet's, 1 without one (as run writes weight_<name>)"}
            if self.events.weights is not None:
                record["events"]["weights"] = self.events.weights.as_dict()
        if self.reliability is not None:
            record["reliability"] = self.reliability.as_dict()
        return record


def _bin_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Edges at quantiles of ``values`` (about equally populated bins); half-integers for integer data."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return np.array([0.0, 1.0])
    quantiles = np.quantile(values, np.linspace(0, 1, n_bins + 1))
    if np.all(values == np.round(values)):
        quantiles = np.round(quantiles) - 0.5
        quantiles[-1] = values.max() + 0.5
    edges = np.unique(quantiles)
    if edges.size < 2:
        edges = np.array([values.min() - 0.5, values.max() + 0.5])
    edges[-1] = np.nextafter(edges[-1], np.inf)
    return edges


def _histogram(values: np.ndarray, weights: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit-sum bin contents and errors sqrt(Σw²)/Σw (a ``hist`` with weighted storage); values
    beyond the edges are counted in the end bins."""
    import hist

    histogram = hist.Hist(hist.axis.Variable(edges, flow=True), storage=hist.storage.Weight())
    histogram.fill(values, weight=weights)
    view = histogram.view(flow=True)
    sum_w, sum_w2 = view.value.copy(), view.variance.copy()
    for column in (sum_w, sum_w2):  # underflow and overflow into the end bins
        column[1] += column[0]
        column[-2] += column[-1]
    sum_w, sum_w2 = sum_w[1:-1], sum_w2[1:-1]
    total = float(np.sum(weights))
    if total <= 0:
        raise InvalidInputError(f"closure: the sum of weights must be > 0, got {total}")
    return sum_w / total, np.sqrt(sum_w2) / total


def _chi2(a: np.ndarray, a_error: np.ndarray, b: np.ndarray, b_error: np.ndarray) -> tuple[float, int]:
    variance = a_error**2 + b_error**2
    used = variance > 0
    chi2 = float(np.sum((a[used] - b[used]) ** 2 / variance[used]))
    return chi2, max(int(used.sum()) - 1, 0)


def closure(
    nominal: Mapping[str, np.ndarray],
    alternative: Mapping[str, np.ndarray],
    weights: np.ndarray,
    *,
    observables: Sequence[str] | None = None,
    extra_observables: Sequence[str] = (),
    n_bins: int = 12,
    weight_summary: WeightSummary | None = None,
    reliability: ReliabilityCurve | None = None,
    level: str = "jet",
) -> ClosureResult:
    """Compare nominal, reweighted nominal and alternative jets in histograms of jet observables.

    ``nominal`` and ``alternative`` map observable name → [n_jets] values (held-out jets the
    classifier was not trained on); ``weights`` float [n_nominal] are the per-jet weights of the
    nominal jets. Bins are ``n_bins`` quantiles of the pooled nominal and alternative values
    (half-integer edges for integer observables), so every bin is populated. Histograms are
    normalised to unit sum (shapes are compared); a bin's error is sqrt(Σw²)/Σw and

        χ² = Σ_bins (h_a − h_b)² / (σ_a² + σ_b²),   ndf = (bins used) − 1.

    ``observables`` defaults to those of :data:`CLOSURE_OBSERVABLES` and :data:`EVENT_OBSERVABLES`
    present in both samples; ``extra_observables`` are compared too and must be in both samples
    (:class:`~coffea_lorentz.errors.InvalidInputError` naming the ones there otherwise).
    ``weight_summary``, ``reliability`` and ``level`` are carried into the result.
    """
    weights = np.asarray(weights, dtype=np.float64)
    for name in extra_observables:
        if name not in nominal or name not in alternative:
            common = sorted(set(nominal) & set(alternative))
            raise InvalidInputError(f"closure: observable {name!r} is not in both samples; they have {common}")
    candidates = observables or (*CLOSURE_OBSERVABLES, *EVENT_OBSERVABLES)
    names = list(dict.fromkeys(n for n in candidates if n in nominal and n in alternative))
    names += [n for n in extra_observables if n not in names]
    if not names:
        raise InvalidInputError(
            f"closure: no observable in common; nominal has {sorted(nominal)}, alternative has {sorted(alternative)}"
        )
    n_nominal = len(np.asarray(nominal[names[0]]))
    if weights.shape != (n_nominal,):
        raise InvalidInputError(f"closure: weights must have shape ({n_nominal},) (one per nominal jet), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise InvalidInputError("closure: weights must be finite and >= 0")
    if n_bins < 2:
        raise InvalidInputError(f"closure: n_bins must be >= 2, got {n_bins}")
    results = {}
    ones = np.ones(n_nominal)
    for name in names:
        nom = np.asarray(nominal[name], dtype=np.float64)
        alt = np.asarray(alternative[name], dtype=np.float64)
        edges = _bin_edges(np.concatenate([nom, alt]), n_bins)
        h_nom, e_nom = _histogram(nom, ones, edges)
        h_rw, e_rw = _histogram(nom, weights, edges)
        h_alt, e_alt = _histogram(alt, np.ones(len(alt)), edges)
        chi2_before, ndf_before = _chi2(h_nom, e_nom, h_alt, e_alt)
        chi2_after, ndf_after = _chi2(h_rw, e_rw, h_alt, e_alt)
        results[name] = ObservableClosure(
            name=name, edges=edges, nominal=h_nom, reweighted=h_rw, alternative=h_alt,
            nominal_error=e_nom, reweighted_error=e_rw, alternative_error=e_alt,
            chi2_before=chi2_before, chi2_after=chi2_after, ndf_before=ndf_before, ndf_after=ndf_after,
            level=level,
        )
    effective_n = float(weights.sum() ** 2 / max(float((weights**2).sum()), 1e-300))
    n_alternative = len(np.asarray(alternative[names[0]]))
    return ClosureResult(results, n_nominal=n_nominal, n_alternative=n_alternative, effective_n_reweighted=effective_n,
                         weights=weight_summary, reliability=reliability, level=level)


def plot_closure(result: ClosureResult, path: str | Path, *, title: str = "") -> Path:
    """Plot each observable's nominal, reweighted and alternative histograms with ratio panels to ``path`` (PNG).

    Drawn in the CMS style of mplhep inside :func:`matplotlib.style.context`, on a figure that
    pyplot does not track: the caller's style, backend and open figures are left alone.
    """
    import matplotlib.style
    import mplhep
    from matplotlib.figure import Figure

    items = list(result.observables.values())
    n_cols = min(3, len(items))
    n_rows = math.ceil(len(items) / n_cols)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.style.context(mplhep.style.CMS):
        figure = Figure(figsize=(8 * n_cols, 8 * n_rows))
        grid = figure.add_gridspec(n_rows, n_cols, hspace=0.25, wspace=0.3)
        for k, o in enumerate(items):
            _plot_observable(figure, grid[divmod(k, n_cols)], o, mplhep,
                             note=f" (held-out {o.level}s)" if o.level != result.level else "")
        if title:
            figure.suptitle(title, fontsize=16)
        figure.savefig(path, bbox_inches="tight")
    return path


def _plot_observable(figure, cell, o: ObservableClosure, mplhep, *, note: str = "") -> None:
    """One observable in grid ``cell``: densities on top, ratios to the alternative below; ``note``
    follows the axis label."""
    panels = cell.subgridspec(2, 1, height_ratios=[3, 1], hspace=0.05)
    top = figure.add_subplot(panels[0])
    bottom = figure.add_subplot(panels[1], sharex=top)
    widths = np.diff(o.edges)
    for values, errors, label, style in (
        (o.nominal, o.nominal_error, f"nominal ($\\chi^2$/ndf {o.chi2_before:.1f}/{o.ndf_before} = {o.chi2_ndf_before:.2f})", {"color": "tab:blue"}),
        (o.reweighted, o.reweighted_error, f"reweighted ($\\chi^2$/ndf {o.chi2_after:.1f}/{o.ndf_after} = {o.chi2_ndf_after:.2f})",
         {"color": "tab:orange", "linestyle": "--"}),
        (o.alternative, o.alternative_error, "alternative", {"color": "black", "histtype": "errorbar"}),
    ):
        mplhep.histplot(values / widths, o.edges, yerr=errors / widths, ax=top, label=label, **style)
    top.set_ylabel("density")
    top.legend(fontsize=12)
    top.tick_params(labelbottom=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        for values, errors, color in ((o.nominal, o.nominal_error, "tab:blue"),
                                      (o.reweighted, o.reweighted_error, "tab:orange")):
            ratio = values / o.alternative
            mplhep.histplot(ratio, o.edges, yerr=errors / o.alternative, ax=bottom, color=color)
    bottom.axhline(1.0, color="black", linewidth=1)
    bottom.set_ylim(0.7, 1.3)
    bottom.set_ylabel("/ alt.")
    bottom.set_xlabel(_LABELS.get(o.name, o.name) + note)
    if len(o.edges) > 3:  # the outer quantile bins reach the extreme values: show them only in part
        inner = o.edges[1:-1]
        step = (inner[-1] - inner[0]) / max(len(inner) - 1, 1)
        bottom.set_xlim(max(o.edges[0], inner[0] - 2 * step), min(o.edges[-1], inner[-1] + 2 * step))
