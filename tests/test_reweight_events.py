"""Event-level reweighting: each event as one set of four-momenta (PF candidates, or jets + leptons +
MET), read the same way for training and for a run; trained with ``reweight-train --level event`` on
generated PFNano files and applied by ``run --reweighter``: one weight per event."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.reweight.events import EVENT_OBJECTS, event_objects, event_observables, pad_events, read_event_sample

CMS_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pfnano.root"
needs_cms = pytest.mark.skipif(not CMS_FILE.is_file(), reason=f"needs the CMS sample {CMS_FILE}")


def _events(path: Path):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual").events()


@needs_cms
def test_pfcands_are_every_candidate_of_the_event_pt_ordered():
    tree = uproot.open(CMS_FILE)["Events"].arrays(["nPFCands", "PFCands_pt"])
    sets = event_objects(_events(CMS_FILE), "pfcands", source=str(CMS_FILE))
    np.testing.assert_array_equal(sets.n_constituents, ak.to_numpy(tree.nPFCands))
    assert sets.n_jets.tolist() == [1] * len(tree)  # one set per event
    pt = np.hypot(sets.p4[:, 1], sets.p4[:, 2])
    for first, stop in zip(sets.offsets[:-1], sets.offsets[1:]):
        assert np.all(np.diff(pt[first:stop]) <= 1e-3 * pt[first])  # pT-descending within an event
    np.testing.assert_allclose(np.sort(pt[: sets.n_constituents[0]]), np.sort(ak.to_numpy(tree.PFCands_pt[0])), rtol=1e-5)


@needs_cms
def test_jets_choice_is_ak4_jets_leptons_and_met_with_pz_zero():
    tree = uproot.open(CMS_FILE)["Events"].arrays(["nJet", "nElectron", "nMuon", "MET_pt", "MET_phi"])
    sets = event_objects(_events(CMS_FILE), "jets", source=str(CMS_FILE))
    expected = ak.to_numpy(tree.nJet + tree.nElectron + tree.nMuon + 1)
    np.testing.assert_array_equal(sets.n_constituents, expected)
    # the MET four-vector: pz = 0 and E = |pT| = MET_pt, found once per event
    met = np.abs(sets.p4[:, 3]) == 0
    per_event = np.add.reduceat(met.astype(int), sets.offsets[:-1])
    assert np.all(per_event >= 1)
    met_pt = ak.to_numpy(tree.MET_pt).astype(np.float32)
    for k, first in enumerate(sets.offsets[:-1]):
        rows = sets.p4[first:sets.offsets[k + 1]]
        match = np.isclose(rows[:, 0], met_pt[k], rtol=1e-5) & (rows[:, 3] == 0)
        assert match.sum() == 1
        np.testing.assert_allclose(np.hypot(*rows[match, 1:3].T), met_pt[k], rtol=1e-5)


@needs_cms
def test_event_observables_and_the_padded_sample():
    events = _events(CMS_FILE)
    jet_pt = uproot.open(CMS_FILE)["Events"]["Jet_pt"].array()
    observables = event_observables(events)
    np.testing.assert_allclose(observables["ht"], ak.to_numpy(ak.sum(jet_pt, axis=1)), rtol=1e-6)
    np.testing.assert_array_equal(observables["n_jets"], ak.to_numpy(ak.num(jet_pt)))
    np.testing.assert_allclose(observables["leading_jet_pt"], ak.to_numpy(ak.max(jet_pt, axis=1)))
    sample = read_event_sample([CMS_FILE], "pfcands", max_objects=32, max_events=6)
    assert sample.p4.shape == (6, 32, 4) and sample.mask.all()  # every event has more than 32 candidates
    assert {"ht", "n_jets", "leading_jet_pt", "n_objects"} <= set(sample.observables)
    # the same function as a run: the padded sets are the leading 32 of event_objects
    p4, mask = pad_events(event_objects(events[:6], "pfcands"), 32)
    np.testing.assert_array_equal(sample.p4, p4)
    with pytest.raises(InvalidInputError, match="event objects: expected one of"):
        event_objects(events, "tracks")
    assert EVENT_OBJECTS == ("pfcands", "jets")


def test_an_event_level_spec_needs_its_objects():
    from coffea_lorentz.infer import BackendSpec
    from coffea_lorentz.reweighter import EventWeightHead, ReweighterSpec

    backend = BackendSpec.make("reweight_x", kind="torch")
    with pytest.raises(InvalidInputError, match="event-level reweighter needs one of"):
        ReweighterSpec(name="x", backend=backend, level="event")
    spec = ReweighterSpec(name="x", backend=backend, level="event", objects="jets", max_weight=5.0)
    jets, events = EventWeightHead(spec).branches("reweight_x", np.array([0.5, 0.75, np.nan, 0.99], np.float32),
                                                  np.ones(4, np.int64))
    assert jets == {} and list(events) == ["weight_x"]
    np.testing.assert_allclose(events["weight_x"], [1.0, 3.0, 1.0, 5.0], rtol=1e-6)


# ----------------------------------------------------------------------------- end to end
N_TRAIN_EVENTS = 1000  # per sample
N_RUN_EVENTS = 300


def _generator():
    """``coffea_lorentz.generate``, or a skip saying what is missing."""
    generate = pytest.importorskip("coffea_lorentz.generate", reason="needs the generator package")
    if not generate.available():
        pytest.skip("Pythia 8 / FastJet not installed (pip install 'coffea-lorentz[generate]')")
    return generate


@pytest.fixture(scope="module")
def shower_files(tmp_path_factory) -> dict[str, Path]:
    """QCD events (pT-hat > 300 GeV) as PFNano files: nominal, alternative (FSR αs 0.120) and a third nominal one."""
    generate = _generator()
    folder = tmp_path_factory.mktemp("event_reweighting")
    files = {}
    for name, seed, alternative, n_events in (("nominal", 21, False, N_TRAIN_EVENTS),
                                              ("alternative", 22, True, N_TRAIN_EVENTS),
                                              ("run", 23, False, N_RUN_EVENTS)):
        files[name] = folder / f"{name}.root"
        generate.generate_pfnano(files[name], generator=generate.GeneratorConfig(
            process="qcd", pthat_min_gev=300.0, alternative=alternative), n_events=n_events, seed=seed,
            events_per_task=500)
    return files


@pytest.mark.parametrize("objects, max_objects", [("pfcands", 48), ("jets", 16)])
def test_train_event_reweighter_then_run_it(shower_files, tmp_path, capsys, objects, max_objects):
    from coffea_lorentz import Reweighter
    from coffea_lorentz.cli import main
    from coffea_lorentz.load import load_scores

    out = tmp_path / "reweighter"
    if objects == "pfcands":  # the files themselves
        samples = ["--nominal-files", str(shower_files["nominal"]), "--alternative-files", str(shower_files["alternative"])]
    else:  # a coffea fileset and its datasets, as `run` takes them
        fileset = tmp_path / "fileset.json"
        fileset.write_text(json.dumps({name: {"files": {str(shower_files[name]): "Events"}}
                                       for name in ("nominal", "alternative")}))
        samples = ["--fileset", str(fileset), "--nominal", "nominal", "--alternative", "alternative"]
    argv = ["reweight-train", "--level", "event", "--event-objects", objects, *samples,
            "--output", str(out), "--name", "ev", "--epochs", "3", "--patience", "0", "--max-constituents",
            str(max_objects), "--bins", "6", "--threads", "1", "--test-fraction", "0.3"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"nominal: {N_TRAIN_EVENTS} events" in printed and "held-out events" in printed
    record = json.loads((out / "reweight_ev.json").read_text())
    assert record["level"] == "event" and record["event_objects"] == objects and "domain" not in record
    assert record["samples"]["nominal"]["files"] == [str(shower_files["nominal"])]
    if objects == "jets":
        assert record["samples"]["alternative"]["datasets"] == ["alternative"]
    assert record["reweight_config"]["max_constituents"] == max_objects
    closure = record["closure"]
    assert closure["level"] == "event" and {"ht", "n_jets", "leading_jet_pt", "n_objects"} <= set(closure["observables"])
    assert all(o["ndf_after"] >= 1 and np.isfinite(o["chi2_after"]) for o in closure["observables"].values())
    assert closure["weights"]["n"] == 300 and closure["weights"]["effective_n"] > 100
    assert sum(closure["reliability"]["count"]) == 600

    # run it on a third file: one weight per event, no per-jet branch
    run_out = tmp_path / "run"
    assert main(["run", str(shower_files["run"]), "--tagger", "identity", "--reweighter", str(out / "reweight_ev.pt"),
                 "--backend", "torch", "--workers", "0", "--output", str(run_out)]) == 0
    printed = capsys.readouterr().out  # the run's summary: the weights' effective sample size and clipping
    assert f"weight_ev of dataset 'run': {N_RUN_EVENTS} events, mean" in printed and "effective N" in printed
    log = next((run_out / "_logs").glob("*.log")).read_text()
    assert f"WEIGHTS weight_ev of dataset 'run': {N_RUN_EVENTS} events" in log
    rows = load_scores(run_out, "run")  # a file given directly is the dataset of its stem
    assert len(rows) == N_RUN_EVENTS and "weight_ev" in rows.fields and "FatJet_weight_ev" not in rows.fields
    weights = ak.to_numpy(rows.weight_ev)
    assert np.all(np.isfinite(weights)) and np.all(weights > 0)
    assert abs(weights.mean() - 1.0) < 0.25, weights.mean()
    if objects == "jets":  # served by Triton like a per-jet reweighter: the same weights
        served = tmp_path / "served"
        assert main(["run", str(shower_files["run"]), "--tagger", "identity", "--reweighter",
                     str(out / "reweight_ev.pt"), "--workers", "0", "--output", str(served)]) == 0
        np.testing.assert_allclose(ak.to_numpy(load_scores(served, "run").weight_ev), weights, rtol=1e-5)
    # the same weights from the Python API, on the same events
    direct = Reweighter(str(out / "reweight_ev.pt"), backend="torch")
    assert direct.level == "event"
    np.testing.assert_allclose(direct(_events(shower_files["run"])), weights, rtol=1e-5)


def test_an_event_level_record_without_its_objects_is_refused(tmp_path):
    from coffea_lorentz.errors import ConfigurationError
    from coffea_lorentz.reweight.lookup import find_reweighter

    record = {"name": "reweight_ev", "architecture": "lorentz_efn", "epsilon": 1e-3, "max_weight": 10.0,
              "level": "event", "reweight_config": {"max_constituents": 32}}
    (tmp_path / "reweight_ev.pt").write_bytes(b"")
    (tmp_path / "reweight_ev.json").write_text(json.dumps(record))
    with pytest.raises(ConfigurationError, match="event_objects"):
        find_reweighter(tmp_path / "reweight_ev.pt")
    (tmp_path / "reweight_ev.json").write_text(json.dumps(record | {"event_objects": "jets"}))
    info = find_reweighter(tmp_path / "reweight_ev.pt")
    assert (info.level, info.objects, info.max_constituents, info.domain) == ("event", "jets", 32, None)
    assert find_reweighter("fsr").level == "jet"  # a record without 'level' is per jet


# ----------------------------------------------------------------------------- a variation an event classifier learns
# The process mix: tt̄ + QCD half and half (nominal) reweighted into QCD alone (alternative), pT-hat > 200 GeV, the
# commands of README.md's event-level table. This direction keeps the density ratio bounded: every QCD event has its
# like in the mix, so w = p_QCD / (p_tt̄/2 + p_QCD/2) <= 2, while QCD → mix would need unbounded weights for the
# all-hadronic tt̄ events that QCD hardly makes. At pT-hat > 300 GeV (the FSR fixture's cut) tt̄ and QCD have nearly
# the same HT (medians 808 vs 760 GeV), too close to tell apart at this size.
MIX_EVENTS = 2000  # per training sample
MIX_RUN_EVENTS = 500
MIX_GENERATE = {"mix": (["ttbar=0.5", "qcd=0.5"], MIX_EVENTS, 31), "qcd": (["qcd"], MIX_EVENTS, 32),
                "mix_run": (["ttbar=0.5", "qcd=0.5"], MIX_RUN_EVENTS, 33)}


@pytest.fixture(scope="module")
def process_mix_files(tmp_path_factory) -> dict[str, Path]:
    """``generate pfnano`` as README.md runs it: ``mix.root`` and ``mix_run.root`` (tt̄ + QCD, 50/50) and ``qcd.root``."""
    _generator()
    from coffea_lorentz.cli import main

    folder = tmp_path_factory.mktemp("process_mix")
    files = {}
    for name, (process, n_events, seed) in MIX_GENERATE.items():
        files[name] = folder / f"{name}.root"
        assert main(["generate", "pfnano", "--process", *process, "--events", str(n_events), "--pthat-min", "200",
                     "--seed", str(seed), "--workers", "2", "--quiet", "--output", str(files[name])]) == 0
    return files


def _jet_observables(path: Path) -> dict[str, np.ndarray]:
    """HT (GeV) and the AK4-jet multiplicity, float64 [events], of the file ``path``, in file order."""
    jet_pt = uproot.open(path)["Events"]["Jet_pt"].array()
    return {"ht": ak.to_numpy(ak.sum(jet_pt, axis=1)).astype(np.float64),
            "n_jets": ak.to_numpy(ak.num(jet_pt)).astype(np.float64)}


def test_event_reweighter_closes_a_process_mix_and_moves_a_third_file(process_mix_files, tmp_path, capsys):
    """generate → ``reweight-train --level event --event-objects jets`` → closure → ``run --reweighter``.

    Bounds, from five training seeds (``--seed 0…4``) on these files, χ²/ndf with ndf 5: before, HT 9.5–13.2,
    AK4 jets 44–57, leading-jet pT 16–21; after, HT 0.55–3.5, jets 0.59–3.0, leading pT 0.31–2.0, all four
    together 0.75–2.2; effective N 565–662 of 1000, nothing clipped, largest weight 2.3–3.1, best validation
    AUC 0.69–0.75 (about 0.75 is the most a classifier can reach: half the mix is QCD like the alternative).
    """
    from coffea_lorentz.cli import main
    from coffea_lorentz.load import load_scores

    out = tmp_path / "reweighter"
    argv = ["reweight-train", "--level", "event", "--event-objects", "jets", "--nominal-files",
            str(process_mix_files["mix"]), "--alternative-files", str(process_mix_files["qcd"]), "--max-constituents",
            "16", "--threads", "1", "--bins", "6", "--test-fraction", "0.5", "--name", "mix_to_qcd", "--quiet",
            "--output", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    record = json.loads((out / "reweight_mix_to_qcd.json").read_text())
    closure = record["closure"]
    assert closure["level"] == "event" and closure["n_nominal"] == closure["n_alternative"] == MIX_EVENTS // 2
    observables = closure["observables"]
    # the generated files hold no lepton or MET: the objects are the AK4 jets, n_objects is the jet multiplicity
    assert observables["n_objects"] == observables["n_jets"]
    for name, before_above in (("ht", 6.0), ("n_jets", 25.0), ("leading_jet_pt", 10.0)):
        figures = observables[name]
        assert figures["ndf_before"] == figures["ndf_after"] == 5, (name, figures)
        assert figures["chi2_ndf_before"] > before_above, (name, figures)  # the variation is seen …
        assert figures["chi2_ndf_after"] <= 4.0, (name, figures)  # … and the weights close it
        assert figures["chi2_ndf_before"] >= 2.5 * figures["chi2_ndf_after"], (name, figures)
    assert closure["chi2_ndf_before"] > 20.0 and closure["chi2_ndf_after"] <= 3.0, closure
    weights = closure["weights"]
    assert weights["n"] == MIX_EVENTS // 2
    assert 0.4 * weights["n"] < weights["effective_n"] < 0.9 * weights["n"], weights  # weights that do something
    assert weights["clipped"] == 0 and weights["clipped_fraction"] == 0.0 and weights["max"] < 5.0, weights
    assert max(record["training"]["val_auc"]) > 0.65, record["training"]["val_auc"]

    # run it on a third nominal file: the weighted events look like the alternative's
    run_out = tmp_path / "run"
    assert main(["run", str(process_mix_files["mix_run"]), "--tagger", "identity", "--reweighter",
                 str(out / "reweight_mix_to_qcd.pt"), "--backend", "torch", "--workers", "0", "--output",
                 str(run_out)]) == 0
    assert f"weight_mix_to_qcd of dataset 'mix_run': {MIX_RUN_EVENTS} events" in capsys.readouterr().out
    event_weights = ak.to_numpy(load_scores(run_out, "mix_run").weight_mix_to_qcd).astype(np.float64)
    assert event_weights.shape == (MIX_RUN_EVENTS,) and np.all(np.isfinite(event_weights)) and np.all(event_weights > 0)
    run, alternative = _jet_observables(process_mix_files["mix_run"]), _jet_observables(process_mix_files["qcd"])
    # share of the way from the run file's mean to the alternative's that the weighted mean goes; measured over
    # the five seeds: AK4 jets 0.83–1.01 (5.62 → 4.17 against 4.18 for seed 0), HT 0.30–0.55 (617 → 577 GeV
    # against 537: the 500 run events alone lie 21 GeV above the 2000 mix events, which the weights do not undo)
    for name, at_least in (("n_jets", 0.5), ("ht", 0.2)):
        start, target = run[name].mean(), alternative[name].mean()
        moved = (start - np.average(run[name], weights=event_weights)) / (start - target)
        assert at_least <= moved <= 1.5, (name, moved, start, target)
