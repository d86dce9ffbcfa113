"""Shared plot conventions: a dataset's colour, taggers' display names, entries beyond an axis."""

from __future__ import annotations

import awkward as ak
import hist
import numpy as np
import pytest

from coffea_lorentz.models import available
from coffea_lorentz.plotting import DISPLAY_NAMES, PALETTE, dataset_colours, display_name, overflow_note


def test_a_dataset_keeps_its_colour_whatever_the_order_or_plot():
    first = dataset_colours(["ttbar", "qcd", "ttbar"])
    assert first == dataset_colours(["qcd", "ttbar"]) == {"qcd": PALETTE[0], "ttbar": PALETTE[1]}
    many = dataset_colours(f"d{i:02d}" for i in range(len(PALETTE) + 2))
    assert len(set(list(many.values())[: len(PALETTE)])) == len(PALETTE)


def test_every_registered_tagger_has_a_display_name():
    assert set(available()) <= set(DISPLAY_NAMES)
    assert display_name("lloca") == "LLoCa"
    assert display_name("FatJet_pelican_score") == "PELICAN"
    assert display_name("someone_elses_model") == "someone_elses_model"


def test_overflow_note_counts_entries_beyond_the_axis():
    histogram = hist.Hist(hist.axis.Regular(10, 0.0, 1.0))
    histogram.fill(np.array([0.5, 1.0, 1.0, 3.0, -0.2]))
    note = overflow_note(histogram)
    assert note == "1 below 0 in the first bin; 3 at or above 1 in the last bin"
    assert overflow_note(hist.Hist(hist.axis.Regular(10, 0.0, 1.0)).fill([0.5])) is None


def test_run_plots_use_one_colour_per_dataset_and_note_the_overflow(tmp_path):
    pytest.importorskip("mplhep", reason="plots are drawn with mplhep")
    import matplotlib
    import matplotlib.pyplot as plt

    from coffea_lorentz.run import histograms
    from coffea_lorentz.store import OutputStore

    matplotlib.use("Agg")
    parts = []
    for dataset, scores, weights in (("ttbar", [0.9, 1.0, 1.0], [1.0, 3.0, 0.5]), ("qcd", [0.1, 0.2], [1.0, 1.0])):
        parts.append(histograms.fill_scores(dataset, {"FatJet_lloca_score": ak.Array([scores])},
                                            {"FatJet_weight_fsr": ak.Array([weights])}))
    merged = histograms.merge(parts)
    drawn = []
    original = plt.Figure.savefig

    def keep(figure, *args, **kwargs):  # look at each figure as it is written
        axes = figure.axes[0]
        drawn.append({"xlabel": axes.get_xlabel(), "texts": [text.get_text() for text in axes.texts],
                      "colours": {line.get_label(): matplotlib.colors.to_hex(line.get_edgecolor())
                                  for line in axes.patches + axes.collections if line.get_label()[:1] != "_"}})
        return original(figure, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt.Figure, "savefig", keep)
        written = histograms.plot(OutputStore(str(tmp_path)), merged)
    assert len(written) == 3 and all((tmp_path / "plots").iterdir())
    by_label = {entry["xlabel"]: entry for entry in drawn}
    assert set(by_label) == {"fat-jet LLoCa score", "fat-jet weight fsr"}
    colours = dataset_colours(["ttbar", "qcd"])
    for entry in drawn:
        assert {name.split(",")[0] for name in entry["colours"]} == {"ttbar", "qcd"}, entry
        for name, colour in entry["colours"].items():
            assert colour == colours[name.split(",")[0]], (entry["xlabel"], name)
    notes = "\n".join(text for entry in drawn for text in entry["texts"])
    assert "ttbar: 2 at or above 1 in the last bin" in notes  # two scores of exactly 1
    assert "ttbar: 1 at or above 2.5 in the last bin" in notes  # the weight 3.0
