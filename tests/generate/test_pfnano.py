"""PFNano output: branch layout against the CMS sample, coffea PFNanoAODSchema read-back, truth, determinism."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InputFileError
from coffea_lorentz.generate import available

requires_generator = pytest.mark.skipif(
    not available(), reason="pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"
)

JET_PT_MIN_GEV = 200.0


def _events(path, mode: str):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode).events()


def test_every_branch_shared_with_the_cms_sample_has_its_dtype(pfnano_ttbar, pfnano_file):
    with uproot.open(pfnano_ttbar) as ours, uproot.open(pfnano_file) as cms:
        ours_tree, cms_tree = ours["Events"], cms["Events"]
        shared = [name for name in ours_tree.keys() if name in cms_tree.keys()]
        assert {"FatJet_pt", "FatJet_msoftdrop", "PFCands_pdgId", "FatJetPFCands_pFCandsIdx", "GenPart_statusFlags",
                "event", "nFatJet"} <= set(shared)
        for name in shared:
            if name.startswith("n"):  # counts: int32 here, uint32 in CMS files, both 4-byte integers
                assert ours_tree[name].interpretation.from_dtype.itemsize == 4, name
                continue
            cms_interpretation = cms_tree[name].interpretation
            cms_dtype = getattr(cms_interpretation, "content", cms_interpretation).to_dtype
            ours_interpretation = ours_tree[name].interpretation
            assert getattr(ours_interpretation, "content", ours_interpretation).to_dtype == cms_dtype, name


@requires_generator
@pytest.mark.parametrize("mode", ["eager", "virtual"])
def test_coffea_reads_fatjets_pfcands_and_constituent_indices(pfnano_ttbar, mode):
    events = _events(pfnano_ttbar, mode)
    assert len(events) == 80
    fatjet = events.FatJet
    assert {"pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2", "tau3", "nConstituents"} <= set(fatjet.fields)
    assert {"pt", "eta", "phi", "mass", "pdgId", "charge"} <= set(events.PFCands.fields)
    n_jets = ak.num(fatjet).to_numpy()
    assert n_jets.sum() > 20
    assert ak.all(fatjet.pt > JET_PT_MIN_GEV)
    assert ak.all(fatjet.pt[:, :-1] >= fatjet.pt[:, 1:])  # pT-ordered
    assert ak.all(fatjet.msoftdrop <= fatjet.mass * (1 + 1e-5))

    cands = events.FatJetPFCands
    n_pf = ak.num(events.PFCands)
    assert ak.all((cands.pFCandsIdx >= 0) & (cands.pFCandsIdx < n_pf))
    assert ak.all((cands.jetIdx >= 0) & (cands.jetIdx < ak.num(fatjet)))
    # Counts agree: per event and per jet (both layouts: jetIdx and nConstituents).
    assert ak.all(ak.sum(fatjet.nConstituents, axis=1) == ak.num(cands))
    per_jet = ak.flatten(ak.run_lengths(cands.jetIdx)).to_numpy()
    np.testing.assert_array_equal(per_jet, ak.flatten(fatjet.nConstituents[fatjet.nConstituents > 0]).to_numpy())
    assert ak.all(abs(events.PFCands.eta) < 2.5)
    assert set(np.unique(ak.flatten(abs(events.PFCands.pdgId)).to_numpy())) <= {11, 13, 22, 130, 211}


@requires_generator
def test_constituent_four_momenta_sum_to_the_jet(pfnano_ttbar):
    events = _events(pfnano_ttbar, "eager")
    pf = events.FatJet.constituents.pf
    px = ak.sum(pf.pt * np.cos(pf.phi), axis=-1)
    py = ak.sum(pf.pt * np.sin(pf.phi), axis=-1)
    pz = ak.sum(pf.pt * np.sinh(pf.eta), axis=-1)
    energy = ak.sum(np.sqrt((pf.pt * np.cosh(pf.eta)) ** 2 + pf.mass**2), axis=-1)
    pt = np.hypot(px, py)
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0))
    jet = events.FatJet
    np.testing.assert_allclose(ak.flatten(pt).to_numpy(), ak.flatten(jet.pt).to_numpy(), rtol=1e-4)
    np.testing.assert_allclose(ak.flatten(np.arcsinh(pz / pt)).to_numpy(), ak.flatten(jet.eta).to_numpy(), atol=1e-4)
    np.testing.assert_allclose(ak.flatten(mass).to_numpy(), ak.flatten(jet.mass).to_numpy(), rtol=2e-3, atol=0.05)


@requires_generator
def test_gen_truth_has_top_chains_and_matched_jets_near_a_top(pfnano_ttbar):
    events = _events(pfnano_ttbar, "eager")
    gen = events.GenPart
    assert ak.all((gen.genPartIdxMother >= -1) & (gen.genPartIdxMother < ak.num(gen)))
    last_tops = gen[(abs(gen.pdgId) == 6) & gen.hasFlags(["isLastCopy"])]
    assert ak.all(ak.num(last_tops) == 2)
    assert ak.all(last_tops.parent.pdgId == last_tops.pdgId)  # the last copy points back to the hard-process top
    w_children = gen[(abs(gen.pdgId) == 24) & gen.hasFlags(["isLastCopy"])].children
    assert ak.all(abs(ak.flatten(w_children.pdgId, axis=None)) <= 5)

    matched = events.FatJet[events.FatJet.topMatched]
    assert ak.sum(ak.num(matched)) > 5
    distance = matched.metric_table(last_tops)
    assert ak.all(ak.min(distance, axis=2) < 0.8)
    assert ak.mean(ak.flatten(matched.msoftdrop)) > 120.0  # hadronic tops, mass peak ~ 172 GeV


@requires_generator
def test_same_seed_same_file_for_any_worker_count_and_other_seed_differs(tmp_path):
    from coffea_lorentz.generate import GeneratorConfig, generate_pfnano

    generator = GeneratorConfig(process="ttbar", pthat_min_gev=300.0)
    arrays = {}
    for name, seed, workers in (("one", 11, 1), ("two", 11, 2), ("other", 12, 1)):
        path = tmp_path / f"{name}.root"
        generate_pfnano(path, generator=generator, n_events=24, seed=seed, workers=workers, events_per_task=12)
        with uproot.open(path) as file:
            arrays[name] = file["Events"].arrays()
    assert arrays["one"].fields == arrays["two"].fields
    for field in arrays["one"].fields:
        assert ak.all(arrays["one"][field] == arrays["two"][field]), field
    assert ak.to_list(arrays["one"].PFCands_pt) != ak.to_list(arrays["other"].PFCands_pt)
    np.testing.assert_array_equal(arrays["one"].event.to_numpy(), np.arange(1, 25))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.root", "other.root", "two.root"]  # no temporaries left


def test_writing_into_a_missing_directory_raises(tmp_path):
    from coffea_lorentz.generate.pfnano import write_pfnano

    with pytest.raises(InputFileError, match="does not exist"):
        write_pfnano(tmp_path / "missing" / "out.root", [])
