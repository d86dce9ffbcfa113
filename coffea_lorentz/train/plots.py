"""Plots of a trained tagger: ROC curve and per-class score histograms (matplotlib, mplhep)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import metrics

__all__ = ["write_plots"]


def write_plots(
    output_dir: str | Path,
    tagger: str,
    label: np.ndarray,
    score: np.ndarray,
    baselines: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """ROC curve (1/ε_B against ε_S, log y) and per-class score histograms as PNG files in ``output_dir``.

    ``label`` int [n_jets], ``score`` float [n_jets] in [0, 1]; ``baselines`` maps a name to another
    score [n_jets] drawn on the ROC plot for comparison. Taggers are named by their display names
    (:func:`coffea_lorentz.plotting.display_name`); signal and background take the colours of the
    ``ttbar`` and ``qcd`` datasets in the plots of ``run`` (:func:`coffea_lorentz.plotting.dataset_colours`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import mplhep

    from ..plotting import dataset_colours, display_name

    colours = dataset_colours(["qcd", "ttbar"])
    output_dir = Path(output_dir)
    paths = []
    with plt.style.context(mplhep.style.CMS):
        figure, axis = plt.subplots(figsize=(8, 7))
        curves = {tagger: score, **(baselines or {})}
        for name, values in curves.items():
            eps_s, eps_b, _ = metrics.roc_curve(label, values)
            keep = eps_b > 0
            axis.plot(
                eps_s[keep], 1.0 / eps_b[keep], label=f"{display_name(name)} (AUC {metrics.auc(label, values):.3f})"
            )
        axis.set_yscale("log")
        axis.set_xlim(0, 1)
        axis.set_xlabel(r"Signal efficiency $\varepsilon_S$")
        axis.set_ylabel(r"Background rejection $1/\varepsilon_B$")
        axis.legend(fontsize="small")
        axis.grid(True, which="both", alpha=0.3)
        paths.append(output_dir / f"{tagger}_roc.png")
        figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(figure)

        figure, axis = plt.subplots(figsize=(8, 7))
        bins = np.linspace(0, 1, 41)
        for value, name, dataset in ((1, "top (signal)", "ttbar"), (0, "QCD (background)", "qcd")):
            # scores are in [0, 1]: a score of exactly 1 is kept in the last bin
            axis.hist(np.clip(score[label == value], 0.0, 1.0 - 1e-9), bins=bins, histtype="step", density=True,
                      linewidth=2, label=name, color=colours[dataset])
        axis.set_xlabel(f"{display_name(tagger)} score")
        axis.set_ylabel("Jets (normalised)")
        axis.set_yscale("log")
        axis.legend(fontsize="small")
        paths.append(output_dir / f"{tagger}_scores.png")
        figure.savefig(paths[-1], dpi=100, bbox_inches="tight")
        plt.close(figure)
    return paths
