"""The writer and the output store: NanoAOD-style branches, a metadata record, atomic files."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.store import OutputStore
from coffea_lorentz.write import chunk_file_name, read_chunk_metadata, write_events

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


def test_metadata_record_round_trips(tmp_path):
    path = write_events(tmp_path / "m.root", ids=IDS, metadata={"entry_start": 0, "taggers": ["lloca"]})
    with uproot.open(path) as file:
        assert read_chunk_metadata(file) == {"entry_start": 0, "taggers": ["lloca"]}
        assert file["Events"].num_entries == 3


def test_store_writes_atomically_and_cleans_temporary_files(tmp_path):
    store = OutputStore(tmp_path / "out")
    store.write_text("a/b.txt", "one")
    store.write_text("a/b.txt", "two")  # replaces
    assert store.read_text("a/b.txt") == "two"
    (tmp_path / "out" / "a" / ".c.root.0123.tmp").write_text("left by a killed writer")
    assert store.remove_temporary_files() == ["a/.c.root.0123.tmp"]
    assert store.list_files() == ["a/b.txt"]


def test_chunk_names_sort_in_input_order():
    names = [chunk_file_name("/data/nano.root", a, b) for a, b in [(0, 100), (100, 1000), (1000, 20000)]]
    assert names == sorted(names)
    assert names[0].startswith("nano-") and names[0].endswith("_000000000000-000000000100.root")
    # the same file name in another folder is another input: another output name
    assert chunk_file_name("/other/nano.root", 0, 100) != names[0]
    assert chunk_file_name("/data/nano.root", 0, 100) == names[0]
