"""Physics-readable results of a run: per-dataset ``hist`` histograms of every score (and, with
reweighters, of every weight and of every score weighted by it), a plot per histogram, and a
per-dataset table.

Each chunk fills its own histograms where it runs (on the worker, from the scores it wrote or, for a
chunk found done, from its file), the client adds them up — coffea's accumulator pattern — and saves
them as ``histograms.pkl`` (a dict of ``hist.Hist``, pickled; ``uhi``-compatible) with one CMS-style
plot per histogram in ``plots/``. Scores are probabilities in [0, 1]; a jet with no constituents has
a NaN score and is counted apart (``no_constituents``), never filled.

Histogram keys: ``FatJet_<tagger>_score`` (jets per score bin), ``FatJet_weight_<name>`` (jets per
weight bin; weights above the axis land in the overflow bin) and
``FatJet_<tagger>_score__weight_<name>`` (the score histogram with each jet counted with its weight,
``Weight`` storage: the score as the alternative configuration would give it).
"""

from __future__ import annotations

import io
import pickle

import awkward as ak
import numpy as np

__all__ = ["SCORE_BINS", "WEIGHT_BINS", "fill_scores", "merge", "save", "plot", "dataset_table", "label",
           "HISTOGRAMS_NAME"]

#: Bins of every score histogram over [0, 1].
SCORE_BINS = 50
#: Bins of every weight histogram over [0, WEIGHT_MAX] (larger weights go to the overflow bin).
WEIGHT_BINS = 50
WEIGHT_MAX = 2.5
#: Separates a score branch from the weight it is weighted with in a histogram key.
WEIGHTED = "__"
HISTOGRAMS_NAME = "histograms.pkl"
PLOTS_FOLDER = "plots"


def _empty(name: str, *, weight: bool = False, weighted: bool = False):
    import hist

    bins, high = (WEIGHT_BINS, WEIGHT_MAX) if weight else (SCORE_BINS, 1.0)
    return hist.Hist(
        hist.axis.StrCategory([], name="dataset", growth=True, label="dataset"),
        hist.axis.Regular(bins, 0.0, high, name="score", label=name),
        storage=hist.storage.Weight() if weighted else hist.storage.Double(),
    )


def _flat(values: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(values, axis=None)), dtype=np.float64)


def fill_scores(dataset: str, branches: dict[str, ak.Array], weights: dict[str, ak.Array] | None = None) -> dict:
    """Histograms of each jagged per-jet branch (``FatJet_<name>`` → [events][jets]) for ``dataset``.

    ``weights`` (``FatJet_weight_<name>`` → jagged per-jet weights, the same jets) adds a histogram
    of each weight and of each score weighted by it. Returns ``{"histograms": {key: Hist}, "jets":
    {key: n}, "no_constituents": {key: n}}``, which :func:`merge` adds up over chunks.
    """
    histograms, jets, missing, sums = {}, {}, {}, {}
    flat_weights = {branch: _flat(values) for branch, values in (weights or {}).items()}
    for branch, values in branches.items():
        flat = _flat(values)
        finite = np.isfinite(flat)
        histogram = _empty(branch)
        histogram.fill(dataset=dataset, score=flat[finite])
        histograms[branch] = histogram
        jets[branch] = {dataset: int(len(flat))}
        missing[branch] = {dataset: int((~finite).sum())}
        sums[branch] = {dataset: [float(flat[finite].sum()), float(finite.sum())]}
        for weight_branch, weight in flat_weights.items():
            key = f"{branch}{WEIGHTED}{_name(weight_branch)}"
            weighted = _empty(branch, weighted=True)
            weighted.fill(dataset=dataset, score=flat[finite], weight=weight[finite])
            histograms[key] = weighted
            jets[key], missing[key] = jets[branch], missing[branch]
            sums[key] = {dataset: [float((weight * flat)[finite].sum()), float(weight[finite].sum())]}
    for branch, weight in flat_weights.items():
        histogram = _empty(branch, weight=True)
        histogram.fill(dataset=dataset, score=weight)
        histograms[branch] = histogram
        jets[branch] = {dataset: int(len(weight))}
        missing[branch] = {dataset: 0}
        sums[branch] = {dataset: [float(weight.sum()), float(len(weight))]}
    return {"histograms": histograms, "jets": jets, "no_constituents": missing, "sums": sums}


def label(key: str) -> str:
    """A histogram key for people: ``lloca``, ``lloca, weight_fsr``, ``weight_fsr``."""
    branch, _, weight = key.partition(WEIGHTED)
    name = _name(branch).removesuffix("_score")
    return f"{name}, {weight}" if weight else name


def _name(branch: str) -> str:
    """A per-jet branch without its collection: ``FatJet_lloca_score`` → ``lloca_score``, ``Jet_weight_fsr`` → ``weight_fsr``."""
    return branch.split("_", 1)[1] if "_" in branch else branch


def _jets_word(branch: str) -> str:
    """What the jets of ``branch``'s collection are called on an axis: "fat-jet", "jet", or the collection."""
    collection = branch.split("_", 1)[0]
    return {"FatJet": "fat-jet", "Jet": "jet"}.get(collection, collection)


def merge(parts: list[dict]) -> dict:
    """Sum the outputs of :func:`fill_scores` of many chunks."""
    total: dict = {"histograms": {}, "jets": {}, "no_constituents": {}, "sums": {}}
    for part in parts:
        if not part:
            continue
        for branch, histogram in part["histograms"].items():
            if branch in total["histograms"]:
                total["histograms"][branch] = total["histograms"][branch] + histogram
            else:
                total["histograms"][branch] = histogram.copy()
        for key in ("jets", "no_constituents"):
            for branch, per_dataset in part[key].items():
                counts = total[key].setdefault(branch, {})
                for dataset, n in per_dataset.items():
                    counts[dataset] = counts.get(dataset, 0) + n
        for branch, per_dataset in part.get("sums", {}).items():
            sums = total["sums"].setdefault(branch, {})
            for dataset, (weighted_sum, weight_sum) in per_dataset.items():
                before = sums.get(dataset, [0.0, 0.0])
                sums[dataset] = [before[0] + weighted_sum, before[1] + weight_sum]
    return total


def save(store, merged: dict) -> str:
    """Pickle the histograms into the output (``histograms.pkl``); returns its URL."""
    store.write_bytes(HISTOGRAMS_NAME, pickle.dumps(merged["histograms"]))
    return store.url_of(HISTOGRAMS_NAME)


def plot(store, merged: dict) -> list[str]:
    """One CMS-style plot per histogram (log y, "Simulation", one line per dataset) into ``plots/``.

    Each dataset keeps one colour in every plot (:func:`coffea_lorentz.plotting.dataset_colours`);
    the x axis names the tagger by its display name ("LLoCa score"); entries beyond the axis (weights
    above :data:`WEIGHT_MAX`, a score of exactly 1) are drawn in the last bin and counted in a note on
    the plot (:func:`coffea_lorentz.plotting.overflow_note`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    from ..plotting import dataset_colours, overflow_note

    colours = dataset_colours(dataset for histogram in merged["histograms"].values()
                              for dataset in histogram.axes["dataset"])
    written = []
    for branch, histogram in merged["histograms"].items():
        base, _, weight = branch.partition(WEIGHTED)
        is_weight = _name(base).startswith("weight_")
        notes = []
        with plt.style.context(mplhep.style.CMS):
            figure, axes = plt.subplots(figsize=(8, 6))
            for dataset in sorted(histogram.axes["dataset"]):
                one = histogram[{"dataset": dataset}]
                if weight:  # the weighted score over the unweighted one, per dataset
                    mplhep.histplot(merged["histograms"][base][{"dataset": dataset}], ax=axes, label=f"{dataset}",
                                    density=False, yerr=False, flow="sum", color=colours[dataset])
                    mplhep.histplot(one, ax=axes, label=f"{dataset}, {weight}", density=False, linestyle="--",
                                    color=colours[dataset], yerr=False, flow="sum")
                else:
                    mplhep.histplot(one, ax=axes, label=str(dataset), density=False, flow="sum",
                                    color=colours[dataset])
                note = overflow_note(one)
                if note:
                    notes.append(f"{dataset}: {note}")
            axes.set_yscale("log")
            axes.set_xlabel(_axis_label(base))
            axes.set_ylabel("jets / bin" if not weight else "jets (weighted) / bin")
            axes.set_xlim(0, WEIGHT_MAX if is_weight else 1)
            low, high = axes.get_ylim()
            axes.set_ylim(low, high * 30)  # room above the curves for the legend
            axes.legend(title="dataset", ncols=2 if weight else 1, loc="upper right")
            if notes:  # above the frame, right, opposite the CMS label
                axes.text(1.0, 1.01, "\n".join(notes), transform=axes.transAxes, fontsize=11, ha="right",
                          va="bottom")
            mplhep.cms.label(data=False, ax=axes, loc=0, rlabel="")
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
        name = f"{PLOTS_FOLDER}/{branch}.png"
        store.write_bytes(name, buffer.getvalue())
        written.append(store.url_of(name))
    return written


def _axis_label(base: str) -> str:
    """The x-axis title of a histogram: "fat-jet LLoCa score", "fat-jet weight fsr"."""
    from ..plotting import display_name

    if _name(base).startswith("weight_"):
        return f"{_jets_word(base)} weight {_name(base).removeprefix('weight_')}"
    return f"{_jets_word(base)} {display_name(_name(base))} score"


def _quantile(histogram, q: float) -> float:
    counts = histogram.values()
    total = counts.sum()
    if total <= 0:
        return float("nan")
    edges = histogram.axes[0].edges
    cumulative = np.cumsum(counts) / total
    index = int(np.searchsorted(cumulative, q))
    index = min(index, len(counts) - 1)
    below = cumulative[index - 1] if index > 0 else 0.0
    share = (q - below) / max(cumulative[index] - below, 1e-12)
    return float(edges[index] + share * (edges[index + 1] - edges[index]))


def _mean(merged: dict, key: str, dataset: str, counts: np.ndarray, centres: np.ndarray) -> float:
    """The exact (weighted) mean from the chunks' sums; from the bin centres for older records."""
    weighted_sum, weight_sum = merged.get("sums", {}).get(key, {}).get(dataset, (0.0, 0.0))
    if weight_sum > 0:
        return weighted_sum / weight_sum
    total = counts.sum()
    return float((counts * centres).sum() / total) if total > 0 else float("nan")


def dataset_table(merged: dict, events: dict[str, int]) -> list[dict]:
    """One row per (dataset, histogram): events, jets, jets with no constituents, mean, 10/50/90 %
    quantiles (from the histogram, to a bin width: 0.02 for scores, 0.05 for weights; weighted
    rows count each jet with its weight), and ``label`` (:func:`label`)."""
    rows = []
    for branch, histogram in merged["histograms"].items():
        for dataset in histogram.axes["dataset"]:
            one = histogram[{"dataset": dataset}]
            counts, centres = one.values(), one.axes[0].centers
            rows.append({
                "dataset": str(dataset), "score": branch, "label": label(branch), "events": events.get(str(dataset), 0),
                "jets": merged["jets"][branch].get(str(dataset), 0),
                "no_constituents": merged["no_constituents"][branch].get(str(dataset), 0),
                "mean": _mean(merged, branch, str(dataset), counts, centres),
                "q10": _quantile(one, 0.1), "median": _quantile(one, 0.5), "q90": _quantile(one, 0.9),
            })
    return rows
