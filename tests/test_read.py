"""Reading constituents from both PFNano layouts, and clear errors for files that cannot be read."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz.errors import InputFileError, MissingBranchError
from coffea_lorentz.read import jet_constituents, p4_from_ptetaphim
from coffea_lorentz.run import check_inputs, load_fileset
from coffea_lorentz.testing import write_small_pfnano


def open_events(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual").events()


def test_cms_pfnano_counts(pfnano_file):
    jets = jet_constituents(open_events(pfnano_file), source=str(pfnano_file))
    assert jets.n_events == 10
    assert jets.total_jets == 24
    assert int(jets.n_constituents.sum()) == 1076
    assert int(jets.n_dropped.sum()) == 0 and jets.affected_events().tolist() == []


def test_constituents_sum_to_the_jet(pfnano_file):
    """Constituent four-momenta add up to the stored FatJet within the jet-energy corrections (< 15 %)."""
    events = open_events(pfnano_file)
    jets = jet_constituents(events, source=str(pfnano_file))
    total = np.add.reduceat(jets.p4.astype(np.float64), jets.offsets[:-1])
    pt = np.hypot(total[:, 1], total[:, 2])
    stored = ak.to_numpy(ak.flatten(events.FatJet.pt))
    assert np.all(np.abs(pt / stored - 1) < 0.15)


def test_sorted_by_pt_within_each_jet(small_pfnano):
    jets = jet_constituents(open_events(small_pfnano), source=str(small_pfnano))
    jet_of = np.repeat(np.arange(jets.total_jets), jets.n_constituents)
    same_jet = jet_of[1:] == jet_of[:-1]
    assert np.all(jets.pt[1:][same_jet] <= jets.pt[:-1][same_jet])
    assert jets.n_jets.tolist() == [2, 0, 2, 1, 3]
    assert jets.n_constituents.tolist() == [12, 40, 0, 5, 150, 3, 70, 1]
    assert jets.n_dropped.tolist() == [0] * 8  # every value of the file is finite


def test_layouts_agree(tmp_path):
    new = jet_constituents(open_events(write_small_pfnano(tmp_path / "new.root", layout="new")))
    old = jet_constituents(open_events(write_small_pfnano(tmp_path / "old.root", layout="old")))
    np.testing.assert_array_equal(new.n_constituents, old.n_constituents)
    np.testing.assert_array_equal(new.p4, old.p4)
    np.testing.assert_array_equal(new.n_dropped, old.n_dropped)


def test_p4_is_on_shell():
    p4 = p4_from_ptetaphim(np.array([50.0, 500.0]), np.array([0.3, -2.0]), np.array([1.0, -3.0]), np.array([0.14, 0.0]))
    p4 = p4.astype(np.float64)
    mass2 = p4[:, 0] ** 2 - (p4[:, 1:] ** 2).sum(1)
    assert np.all(np.abs(mass2 - [0.14**2, 0.0]) <= 1e-6 * p4[:, 0] ** 2)  # float32 rounding of E²
    np.testing.assert_allclose(np.hypot(p4[:, 1], p4[:, 2]), [50.0, 500.0], rtol=1e-6)


def test_file_without_pf_candidates_names_branches(shared_data):
    path = shared_data / "nano_dy.root"
    with pytest.raises(MissingBranchError) as err:
        check_inputs(load_fileset([path]))
    assert str(path) in str(err.value) and "PFCands_pt" in str(err.value)
    with pytest.raises(MissingBranchError, match="nFatJetPFCands") as err:
        jet_constituents(open_events(path), source=str(path))
    # like uproot's KeyInFileError, the message lists the file's closest existing branches
    assert err.value.closest["nFatJetPFCands"][0] == "nFatJet"
    assert "closest existing branches: nFatJetPFCands: nFatJet" in str(err.value)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputFileError, match="nowhere.root: no such file"):
        check_inputs(load_fileset([tmp_path / "nowhere.root"]))
    broken = tmp_path / "broken.root"
    broken.write_bytes(b"not a ROOT file at all")
    with pytest.raises(InputFileError, match="broken.root: cannot be read"):
        check_inputs(load_fileset([broken]))


def test_fileset_json(tmp_path, small_pfnano):
    import json

    spec = tmp_path / "fileset.json"
    spec.write_text(json.dumps({"signal": {"files": {str(small_pfnano): "Events"}}, "other": [str(small_pfnano)]}))
    fileset = load_fileset([spec])
    assert set(fileset) == {"signal", "other"}
    assert check_inputs(fileset) == {str(small_pfnano): 5}


def test_missing_branch_error_lists_closest_branches_and_pickles():
    import pickle

    error = MissingBranchError("f.root", ["PFCands_pt"], "hint", available=["PFCand_pt", "PFCands_eta", "Jet_pt"])
    assert error.closest == {"PFCands_pt": ["PFCand_pt", "PFCands_eta"]}
    assert str(error) == "f.root: missing branches PFCands_pt (hint); closest existing branches: PFCands_pt: PFCand_pt, PFCands_eta"
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error) and again.closest == error.closest
    assert str(MissingBranchError("f.root", ["x"])) == "f.root: missing branches x"  # the old call still works
