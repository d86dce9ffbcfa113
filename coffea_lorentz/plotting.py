"""What every plot of the project shares: one colour per dataset, taggers' display names, and how
values beyond an axis are shown.

- :func:`dataset_colours` gives each dataset the same colour in every plot of a run (the score and
  weight plots of ``run``, the demo's weighted-jets plot, a trained tagger's score plot): colours are
  dealt from :data:`PALETTE` in the sorted order of the dataset names, so they depend on the set of
  datasets only, never on which plot or chunk saw a dataset first.
- :func:`display_name` turns a registry name (``"lloca"``) into the name people read (``"LLoCa"``);
  a name it does not know (a user's model, a ``package.module:Class`` target) is shown as it is.
- :func:`overflow_note` is the line a plot adds when entries lie beyond its axis: plots draw them in
  the last (first) bin (``mplhep.histplot(..., flow="sum")``) and say so.

>>> dataset_colours(["ttbar", "qcd"]) == dataset_colours(["qcd", "ttbar"])
True
>>> display_name("lloca"), display_name("FatJet_lorentz_efn_score"), display_name("my_model")
('LLoCa', 'Lorentz EFN', 'my_model')
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping

import numpy as np

__all__ = ["PALETTE", "DISPLAY_NAMES", "dataset_colours", "display_name", "overflow_note"]

#: Colours dealt to datasets in sorted order (the CMS colour scheme for up to 6 datasets, then
#: matplotlib's tab10); more datasets than colours reuse them from the start.
PALETTE: tuple[str, ...] = ("#5790fc", "#f89c20", "#e42536", "#964a8b", "#9c9ca1", "#7a21dd",
                            "#2ca02c", "#8c564b", "#17becf", "#bcbd22")

#: Registry name → the name used in plots, tables and the README (read-only).
DISPLAY_NAMES: Mapping[str, str] = types.MappingProxyType({
    "lloca": "LLoCa",
    "lorentz_efn": "Lorentz EFN",
    "pelican": "PELICAN",
    "lorentznet": "LorentzNet",
    "lgn": "LGN",
    "lorentz_transformer": "Lorentz transformer",
    "baseline": "ParT-style baseline",
    "identity": "identity",
})


def dataset_colours(datasets: Iterable[str]) -> dict[str, str]:
    """``{dataset: colour}`` for the distinct names in ``datasets``, dealt in sorted order."""
    names = sorted({str(name) for name in datasets})
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)}


def display_name(name: str) -> str:
    """The display name of tagger ``name``; a branch name (``FatJet_<name>_score``) works too."""
    bare = name
    for prefix in ("FatJet_", "Jet_"):
        bare = bare.removeprefix(prefix)
    bare = bare.removesuffix("_score")
    return DISPLAY_NAMES.get(bare, bare)


def overflow_note(histogram, *, unit: str = "") -> str | None:
    """One line saying how many entries of a 1-d ``hist.Hist`` lie below and above its axis and that
    they are drawn in the first and last bin; None when there are none. ``unit`` follows the edges."""
    flow = np.asarray(histogram.values(flow=True), dtype=np.float64)
    low, high = float(flow[0]), float(flow[-1])
    edges = histogram.axes[0].edges
    parts = []
    if low > 0:
        parts.append(f"{low:.4g} below {edges[0]:g}{unit} in the first bin")
    if high > 0:
        parts.append(f"{high:.4g} at or above {edges[-1]:g}{unit} in the last bin")
    return "; ".join(parts) if parts else None
