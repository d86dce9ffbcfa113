"""The demo end to end at a small size: generated PFNano files, scores, the top-tagging check."""

from __future__ import annotations

import pytest

from coffea_lorentz.cli import main


def test_demo_small(tmp_path, capsys):
    pytest.importorskip("pythia8mc", reason="the demo generates its sample with Pythia 8 (the 'generate' extra)")
    code = main(["demo", "--workdir", str(tmp_path), "--events", "150", "--backend", "torch", "--workers", "0"])
    assert code == 0
    out = capsys.readouterr().out
    assert "truth-matched top jets against" in out and "AUC" in out
    assert sorted(p.parent.name for p in (tmp_path / "output").rglob("*.root")) == ["qcd", "ttbar"]
    assert not list(tmp_path.glob(".output.staging-*"))
