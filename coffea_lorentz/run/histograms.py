"""Physics-readable results of a run: per-dataset ``hist`` histograms of every score, a plot per
score, and a per-dataset table.

Each chunk fills its own histograms where it runs (on the worker, from the scores it wrote or, for a
chunk found done, from its file), the client adds them up — coffea's accumulator pattern — and saves
them as ``histograms.pkl`` (a dict of ``hist.Hist``, pickled; ``uhi``-compatible) with one CMS-style
plot per score in ``plots/``. Scores are probabilities in [0, 1]; a jet with no constituents has
a NaN score and is counted apart (``no_constituents``), never filled.
"""

from __future__ import annotations

import io
import pickle

import awkward as ak
import numpy as np

__all__ = ["SCORE_BINS", "fill_scores", "merge", "save", "plot", "dataset_table", "HISTOGRAMS_NAME"]

#: Bins of every score histogram over [0, 1].
SCORE_BINS = 50
HISTOGRAMS_NAME = "histograms.pkl"
PLOTS_FOLDER = "plots"


def _empty(name: str):
    import hist

    return hist.Hist(
        hist.axis.StrCategory([], name="dataset", growth=True, label="dataset"),
        hist.axis.Regular(SCORE_BINS, 0.0, 1.0, name="score", label=name),
        storage=hist.storage.Double(),
    )


def fill_scores(dataset: str, branches: dict[str, ak.Array]) -> dict:
    """Histograms of each jagged per-jet branch (``FatJet_<name>`` → [events][jets]) for ``dataset``.

    Returns ``{"histograms": {branch: Hist}, "jets": {branch: n}, "no_constituents": {branch: n}}``,
    which :func:`merge` adds up over chunks.
    """
    histograms, jets, missing = {}, {}, {}
    for branch, values in branches.items():
        flat = np.asarray(ak.to_numpy(ak.flatten(values, axis=None)), dtype=np.float64)
        finite = np.isfinite(flat)
        histogram = _empty(branch)
        histogram.fill(dataset=dataset, score=flat[finite])
        histograms[branch] = histogram
        jets[branch] = {dataset: int(len(flat))}
        missing[branch] = {dataset: int((~finite).sum())}
    return {"histograms": histograms, "jets": jets, "no_constituents": missing}


def merge(parts: list[dict]) -> dict:
    """Sum the outputs of :func:`fill_scores` of many chunks."""
    total: dict = {"histograms": {}, "jets": {}, "no_constituents": {}}
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
    return total


def save(store, merged: dict) -> str:
    """Pickle the histograms into the output (``histograms.pkl``); returns its URL."""
    store.write_bytes(HISTOGRAMS_NAME, pickle.dumps(merged["histograms"]))
    return store.url_of(HISTOGRAMS_NAME)


def plot(store, merged: dict) -> list[str]:
    """One CMS-style plot per score (log y, "Simulation", one line per dataset) into ``plots/``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    written = []
    for branch, histogram in merged["histograms"].items():
        with plt.style.context(mplhep.style.CMS):
            figure, axes = plt.subplots(figsize=(8, 6))
            for dataset in histogram.axes["dataset"]:
                mplhep.histplot(histogram[{"dataset": dataset}], ax=axes, label=str(dataset), density=False)
            axes.set_yscale("log")
            axes.set_xlabel(branch.replace("FatJet_", "fat-jet ").replace("_", " "))
            axes.set_ylabel("jets / bin")
            axes.set_xlim(0, 1)
            axes.legend(title="dataset")
            mplhep.cms.label(data=False, ax=axes, loc=0, rlabel="")
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            plt.close(figure)
        name = f"{PLOTS_FOLDER}/{branch}.png"
        store.write_bytes(name, buffer.getvalue())
        written.append(store.url_of(name))
    return written


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


def dataset_table(merged: dict, events: dict[str, int]) -> list[dict]:
    """One row per (dataset, score): events, jets, jets with no constituents, mean, 10/50/90 % quantiles
    (from the histogram, to a bin width of 0.02)."""
    rows = []
    for branch, histogram in merged["histograms"].items():
        for dataset in histogram.axes["dataset"]:
            one = histogram[{"dataset": dataset}]
            counts, centres = one.values(), one.axes[0].centers
            total = counts.sum()
            rows.append({
                "dataset": str(dataset), "score": branch, "events": events.get(str(dataset), 0),
                "jets": merged["jets"][branch].get(str(dataset), 0),
                "no_constituents": merged["no_constituents"][branch].get(str(dataset), 0),
                "mean": float((counts * centres).sum() / total) if total > 0 else float("nan"),
                "q10": _quantile(one, 0.1), "median": _quantile(one, 0.5), "q90": _quantile(one, 0.9),
            })
    return rows
