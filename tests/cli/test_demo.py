"""The demo end to end at a small size: generated PFNano files, scores and shower weights, the
top-tagging check and the weighted jet observables."""

from __future__ import annotations

import pytest
import uproot

from coffea_lorentz.cli import main


def test_demo_small(tmp_path, capsys):
    pytest.importorskip("pythia8mc", reason="the demo generates its sample with Pythia 8 (the 'generate' extra)")
    code = main(["demo", "--workdir", str(tmp_path), "--events", "150", "--backend", "torch", "--workers", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "truth-matched top jets against" in out and "AUC" in out
    assert sorted(p.parent.name for p in (tmp_path / "output").rglob("*.root")) == ["qcd", "ttbar"]
    assert not list(tmp_path.glob(".output.staging-*"))
    assert "weight_fsr on qcd jets" in out and "unweighted → weighted" in out
    plots = tmp_path / "output" / "plots"
    assert (plots / "weighted_fsr.png").stat().st_size > 10_000
    assert (plots / "FatJet_lloca_score__weight_fsr.png").is_file() and (plots / "FatJet_weight_fsr.png").is_file()
    with uproot.open(next((tmp_path / "output" / "qcd").glob("*.root"))) as file:
        events = file["Events"].arrays(["weight_fsr", "FatJet_weight_fsr"])
    assert len(events) > 0 and float(events["weight_fsr"].to_numpy().min()) > 0
