"""Reweighters know their training domain: the shipped ``fsr`` records it, ``reweight-train`` writes
it, and a run over the real CMS file says how many of its jets lie outside it (and says nothing for
jets inside)."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz import Reweighter
from coffea_lorentz.errors import ConfigurationError, InvalidInputError
from coffea_lorentz.reweight import JetSample, ReweightConfig, find_reweighter, run_reweighting
from coffea_lorentz.reweight.domain import (
    TrainingDomain, count_outside, domain_of_samples, outside_by_dataset, outside_domain_counts, outside_line,
    outside_mask,
)
from coffea_lorentz.testing import write_small_pfnano
from coffea_lorentz.testing.samples import write_nanoaod_tree

CMS_FILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pfnano.root"
DOMAIN = TrainingDomain(min_pt_gev=250.0, max_pt_gev=600.0, max_abs_eta=2.0)


# -- counting ------------------------------------------------------------------------------------
def test_count_outside_on_hand_made_jets():
    pt = np.array([249.9, 250.0, 400.0, 600.0, 600.1, 400.0, 400.0, np.nan])
    eta = np.array([0.0, 0.0, -2.0, 1.0, 0.0, 2.01, -2.5, 0.0])
    assert DOMAIN.inside(pt, eta).tolist() == [False, True, True, True, False, False, False, False]
    assert count_outside(DOMAIN, pt, eta) == 5
    jagged_pt = ak.Array([[1700.0, 300.0], [], [500.0], [220.0, 260.0, 270.0]])
    jagged_eta = ak.Array([[0.5, 2.2], [], [-1.9], [0.0, 0.1, -0.1]])
    assert count_outside(DOMAIN, jagged_pt, jagged_eta) == 3  # 1700 GeV, |η| 2.2, 220 GeV
    jets = ak.zip({"pt": jagged_pt, "eta": jagged_eta})
    assert outside_mask(DOMAIN, jets).tolist() == [[True, True], [], [False], [True, False, False]]
    assert outside_mask(None, jets).tolist() == [[False, False], [], [False], [False, False, False]]
    assert count_outside(DOMAIN, np.zeros(0), np.zeros(0)) == 0


def test_counts_add_up_per_dataset_and_make_one_line_each():
    text = DOMAIN.describe()
    assert text == "250 < pT < 600 GeV, |η| < 2"
    chunks = [("a", {"fsr": {text: {"outside": 3, "jets": 10}}}), ("a", {"fsr": {text: {"outside": 1, "jets": 6}}}),
              ("b", {"fsr": {text: {"outside": 0, "jets": 8}}}), ("b", {})]
    totals = outside_by_dataset(chunks)
    assert totals == {("a", "fsr"): {"outside": 4, "jets": 16, "domain": text},
                      ("b", "fsr"): {"outside": 0, "jets": 8, "domain": text}}
    assert outside_line("a", "fsr", totals["a", "fsr"]) == (
        "weight_fsr: 4 of 16 jets (25 %) of dataset 'a' are outside its training domain "
        "(250 < pT < 600 GeV, |η| < 2): their weights are extrapolations")
    assert outside_line("b", "fsr", totals["b", "fsr"]) is None


def test_chunk_counts_add_up_through_coffeas_accumulator():
    from coffea.processor import accumulate

    from coffea_lorentz.reweighter import ReweighterSpec

    spec = ReweighterSpec.from_file("fsr")
    chunk_a = ak.Array({"FatJet": ak.zip({"pt": [[1700.0, 300.0], []], "eta": [[0.1, 0.2], []]})})
    chunk_b = ak.Array({"FatJet": ak.zip({"pt": [[500.0], [200.0, 400.0]], "eta": [[2.4], [0.0, 0.0]]})})
    counts = [outside_domain_counts(chunk, [spec]) for chunk in (chunk_a, chunk_b)]
    assert counts[0] == {"fsr": {DOMAIN.describe(): {"outside": 1, "jets": 2}}}
    merged = accumulate(counts)
    assert outside_by_dataset([("d", merged)]) == {("d", "fsr"): {"outside": 3, "jets": 5, "domain": DOMAIN.describe()}}
    assert outside_domain_counts(chunk_a, [ReweighterSpec(name="x", backend=spec.backend)]) == {}  # no domain: no count


def test_domain_records_round_trip_and_bad_ones_are_refused(tmp_path):
    domain = TrainingDomain(min_pt_gev=300, max_pt_gev=450, max_abs_eta=2.0, sample="x", max_constituents=64)
    assert TrainingDomain.from_record(json.loads(json.dumps(domain.as_record()))) == domain
    assert TrainingDomain.from_record(None) is None
    with pytest.raises(InvalidInputError, match="max_pt_gev"):
        TrainingDomain.from_record({"min_pt_gev": 300})
    with pytest.raises(InvalidInputError, match="min_pt_gev < max_pt_gev"):
        TrainingDomain(min_pt_gev=600, max_pt_gev=250, max_abs_eta=2)
    # a reweighter whose record has a broken domain is refused by name before anything runs
    copy = tmp_path / "reweight_bad.pt"
    copy.write_bytes(b"")
    copy.with_suffix(".json").write_text(json.dumps(find_reweighter("fsr").record | {
        "name": "reweight_bad", "domain": {"min_pt_gev": "low"}}))
    with pytest.raises(ConfigurationError, match="reweight_bad.json is not a reweighter record"):
        find_reweighter(copy)


def test_domain_of_training_jets_from_observables_or_constituents():
    rng = np.random.default_rng(3)
    n = 50
    pt = rng.uniform(300.2, 449.6, n)
    eta = rng.uniform(-1.234, 1.234, n)
    p4 = np.zeros((n, 2, 4), dtype=np.float32)
    p4[:, 0] = np.stack([pt * np.cosh(eta), pt, np.zeros(n), pt * np.sinh(eta)], axis=-1)  # one massless constituent along x
    mask = np.array([[True, False]] * n)
    with_observables = JetSample.from_arrays(p4, mask, {"pt": pt, "eta": eta})
    without = JetSample.from_arrays(p4, mask)
    for sample in (with_observables, without):
        domain = domain_of_samples([sample], max_constituents=2)
        assert (domain.min_pt_gev, domain.max_pt_gev) == (np.floor(pt.min()), np.ceil(pt.max()))
        assert domain.max_abs_eta == pytest.approx(np.ceil(np.abs(eta).max() * 100) / 100)
        assert count_outside(domain, pt, eta) == 0


# -- the shipped reweighter and new ones ---------------------------------------------------------
def test_the_shipped_reweighter_records_the_domain_it_was_generated_in():
    from coffea_lorentz.generate.dataset import DatasetConfig

    info = find_reweighter("fsr")
    record = info.record
    commands = record["dataset"]["nominal_command"] + record["dataset"]["alternative_command"]
    assert commands.count("--jet-pt-min 250 --jet-pt-max 600") == 2 and "eta" not in commands  # the default |η| cut
    assert info.domain == TrainingDomain.from_record(record["domain"])
    assert (info.domain.min_pt_gev, info.domain.max_pt_gev) == (250.0, 600.0)
    assert info.domain.max_abs_eta == DatasetConfig().max_abs_eta == 2.0
    assert info.domain.jets == "FatJet anti-kT R=0.8" and info.domain.max_constituents == 128
    assert "QCD" in info.domain.sample and "0.120" in info.domain.sample


def test_reweight_training_writes_the_domain_of_its_jets(tmp_path):
    rng = np.random.default_rng(0)

    def sample(n):
        pt, eta = rng.uniform(320.0, 480.0, n), rng.uniform(-1.5, 1.5, n)
        p4 = rng.normal(0, 10, (n, 6, 4)).astype(np.float32)
        p4[..., 0] = np.abs(p4[..., 0]) + 50.0
        return JetSample.from_arrays(p4, np.ones((n, 6), bool), {"pt": pt, "eta": eta, "mass": rng.uniform(10, 90, n)})

    nominal, alternative = sample(60), sample(60)
    config = ReweightConfig(epochs=1, batch_size=32, max_constituents=6, n_threads=1,
                            tagger_options=(("hidden", 4), ("n_hidden_layers", 1)))
    result = run_reweighting(nominal, alternative, config, output_dir=tmp_path, name="toy", n_bins=3,
                             record={"samples": {"nominal": {"path": "n.h5"}, "alternative": {"path": "a.h5"}}})
    domain = find_reweighter(result.weights_path).domain
    pts = np.concatenate([nominal.observables["pt"], alternative.observables["pt"]])
    etas = np.concatenate([nominal.observables["eta"], alternative.observables["eta"]])
    assert domain.min_pt_gev == np.floor(pts.min()) and domain.max_pt_gev == np.ceil(pts.max())
    assert domain.max_abs_eta == pytest.approx(np.ceil(np.abs(etas).max() * 100) / 100)
    assert domain.max_constituents == 6 and "n.h5" in domain.sample and "a.h5" in domain.sample


# -- in a real run -------------------------------------------------------------------------------
def _in_domain_copy(source: Path, target: Path) -> Path:
    """``source`` with every fat jet moved into 300–500 GeV and |η| < 1 (constituents unchanged)."""
    arrays = uproot.open(source)["Events"].arrays(library="ak")
    tree = {name: ak.to_numpy(arrays[name]) for name in ("run", "luminosityBlock", "event")}
    for collection in ("FatJet", "PFCands", "FatJetPFCands"):
        prefix = f"{collection}_"
        tree[collection] = ak.zip({name[len(prefix):]: arrays[name] for name in arrays.fields if name.startswith(prefix)})
    fatjet = tree["FatJet"]
    fatjet = ak.with_field(fatjet, np.float32(300) + fatjet.pt % np.float32(200), "pt")
    tree["FatJet"] = ak.with_field(fatjet, fatjet.eta / (1 + abs(fatjet.eta)), "eta")  # |η| < 1
    return write_nanoaod_tree(target, tree)


@pytest.mark.skipif(not CMS_FILE.is_file(), reason=f"needs the CMS sample {CMS_FILE}")
def test_a_run_over_the_cms_file_says_how_many_jets_are_outside(tmp_path, capsys):
    from coffea_lorentz.cli import main

    jets = uproot.open(CMS_FILE)["Events"].arrays(["FatJet_pt", "FatJet_eta"])
    pt, eta = ak.to_numpy(ak.flatten(jets.FatJet_pt)), ak.to_numpy(ak.flatten(jets.FatJet_eta))
    expected = int(np.count_nonzero((pt < 250) | (pt > 600) | (np.abs(eta) > 2.0)))
    assert 0 < expected < len(pt)  # the file's 1.7 TeV jets, and one at 306 GeV that is inside
    inside_file = _in_domain_copy(write_small_pfnano(tmp_path / "small.root"), tmp_path / "inside.root")
    moved = uproot.open(inside_file)["Events"].arrays(["FatJet_pt", "FatJet_eta"])
    assert ak.sum(ak.num(moved.FatJet_pt)) > 0 and count_outside(DOMAIN, moved.FatJet_pt, moved.FatJet_eta) == 0
    small = uproot.open(tmp_path / "small.root")["Events"].arrays(["FatJet_pt", "FatJet_eta"])
    assert count_outside(DOMAIN, small.FatJet_pt, small.FatJet_eta) > 0  # before the move, some were outside
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"pfnano": {"files": {str(CMS_FILE): "Events"}},
                                   "inside": {"files": {str(inside_file): "Events"}}}))
    code = main(["run", str(fileset), "--reweighter", "fsr", "--backend", "torch", "--tagger", "lorentznet",
                 "--workers", "0", "--output", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert code == 0
    line = (f"weight_fsr: {expected} of {len(pt)} jets ({100 * expected / len(pt):.0f} %) of dataset 'pfnano' are "
            "outside its training domain (250 < pT < 600 GeV, |η| < 2): their weights are extrapolations")
    assert line in printed.splitlines()
    assert printed.count("outside its training domain") == 1  # none for the dataset whose jets are all inside
    log = next((tmp_path / "out" / "_logs").glob("*.log")).read_text()
    assert f"OUTSIDE TRAINING DOMAIN {line}" in log.splitlines()
    # in Python: the same jets, from the reweighter's own mask
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    events = NanoEventsFactory.from_root({str(CMS_FILE): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()
    reweighter = Reweighter("fsr", backend="torch")
    assert reweighter.domain == find_reweighter("fsr").domain
    assert int(ak.sum(reweighter.outside_domain(events.FatJet))) == expected
