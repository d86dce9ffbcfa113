"""The writer: NanoAOD-style branches, atomic files, and a staging folder that leaves nothing on failure."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.write import OutputStage, chunk_file_name, write_events

IDS = {"run": np.array([1, 1, 2]), "luminosityBlock": np.array([5, 5, 6]), "event": np.array([10, 11, 12])}


def test_nanoaod_branches(tmp_path):
    scores = ak.Array([[0.1, 0.2], [], [np.nan]])
    path = write_events(tmp_path / "a.root", ids=IDS, jet_branches={"lorentznet_score": ak.values_astype(scores, np.float32)},
                        event_branches={"weight_alt": np.array([1.0, 2.0, 0.5])})
    tree = uproot.open(path)["Events"]
    assert set(tree.keys()) == {"run", "luminosityBlock", "event", "nFatJet", "FatJet_lorentznet_score", "weight_alt"}
    arrays = tree.arrays(library="ak")
    assert arrays["nFatJet"].tolist() == [2, 0, 1]
    assert arrays["event"].tolist() == [10, 11, 12]
    assert np.isnan(arrays["FatJet_lorentznet_score"][2][0])
    assert not list(tmp_path.glob("*.tmp"))


def test_rejects_row_mismatch_and_leaves_nothing(tmp_path):
    with pytest.raises(InvalidInputError, match="rows"):
        write_events(tmp_path / "b.root", ids=IDS, jet_branches={"x": ak.Array([[1.0]])})
    assert list(tmp_path.iterdir()) == []


def test_stage_commits_only_on_success(tmp_path):
    out = tmp_path / "out"
    with OutputStage(out) as stage:
        (stage.path / "ds").mkdir()
        write_events(stage.path / "ds" / "x.root", ids=IDS)
    assert [p.relative_to(out).as_posix() for p in stage.committed] == ["ds/x.root"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]

    failed = tmp_path / "failed"
    with pytest.raises(RuntimeError):
        with OutputStage(failed) as stage:
            write_events(stage.path / "y.root", ids=IDS)
            raise RuntimeError("server gone")
    assert not failed.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_chunk_names_sort_in_input_order():
    names = [chunk_file_name("/data/nano.root", a, b) for a, b in [(0, 100), (100, 1000), (1000, 20000)]]
    assert names == sorted(names)
    assert names[0] == "nano_000000000000-000000000100.root"
