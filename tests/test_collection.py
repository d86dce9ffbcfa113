"""Any jet collection: ``coffea-lorentz run --collection Jet`` on the real CMS ``pfnano.root`` (AK4
``Jet`` with ``JetPFCands``), a zoo tagger in-process and a TorchScript model with a spec; the
branches are ``Jet_<name>_…`` with one entry per AK4 jet, read back with coffea's NanoEventsFactory,
equal to ``Tagger(..., collection="Jet")``; the collection is part of the run's settings."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoAODSchema, NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz import Tagger, load_scores
from coffea_lorentz.errors import ConfigurationError, InvalidInputError, MissingBranchError
from coffea_lorentz.read import jet_constituents
from coffea_lorentz.run import RunConfig
from coffea_lorentz.write import read_chunk_metadata
from coffea_lorentz.testing.models import write_jet_mass_model

CLI = [sys.executable, "-m", "coffea_lorentz.cli"]



@pytest.fixture(scope="module")
def jet_mass(tmp_path_factory):
    folder = tmp_path_factory.mktemp("brought")
    return write_jet_mass_model(folder)


def input_events(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="eager").events()


def test_the_reader_takes_the_ak4_constituents_by_their_links(pfnano_file):
    """Each AK4 jet's constituents are the PF candidates its ``JetPFCands_jetIdx`` entries point to."""
    events = input_events(pfnano_file)
    jets = jet_constituents(events, collection="Jet")
    raw = uproot.open(pfnano_file)["Events"].arrays(["nJet", "JetPFCands_jetIdx", "JetPFCands_pFCandsIdx",
                                                     "PFCands_pt"], library="np")
    assert np.array_equal(jets.n_jets, raw["nJet"])
    counts = np.concatenate([np.bincount(raw["JetPFCands_jetIdx"][e], minlength=raw["nJet"][e])
                             for e in range(len(raw["nJet"]))])
    assert np.array_equal(jets.n_constituents, counts)
    first_event_first_jet = raw["PFCands_pt"][0][raw["JetPFCands_pFCandsIdx"][0][raw["JetPFCands_jetIdx"][0] == 0]]
    np.testing.assert_allclose(jets.pt[:counts[0]], np.sort(first_event_first_jet)[::-1], rtol=1e-6)
    with pytest.raises(MissingBranchError, match="nMuonPFCands"):
        jet_constituents(events, collection="Muon")


def test_run_collection_jet_writes_one_score_per_ak4_jet(pfnano_file, jet_mass, tmp_path):
    output = tmp_path / "out"
    command = [*CLI, "run", str(pfnano_file), "--output", str(output), "--collection", "Jet", "--tagger", "lloca",
               "--tagger", f"mass={jet_mass}", "--backend", "torch", "--workers", "0", "--no-progress",
               "--chunksize", "6", "--copy-branches", "Jet_*"]  # kinematics along: NanoAOD reads it back
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    files = sorted(output.glob("pfnano/*.root"))
    assert len(files) == 2

    events = input_events(pfnano_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        written = [NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=NanoAODSchema,
                                               mode="eager").events() for path in files]
    scores = ak.concatenate([chunk.Jet.lloca_score for chunk in written])
    assert ak.to_list(ak.num(scores, axis=1)) == ak.to_list(ak.num(events.Jet, axis=1))  # one entry per AK4 jet
    assert all("FatJet" not in chunk.fields for chunk in written)
    expected = Tagger("lloca", backend="torch", collection="Jet")(events)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(scores)), ak.to_numpy(ak.flatten(expected)), rtol=0, atol=1e-6)
    assert np.isfinite(ak.to_numpy(ak.flatten(scores))).all()  # every AK4 jet of the sample has constituents

    brought = Tagger(str(jet_mass), backend="torch", collection="Jet")(events)
    for label in ("light", "heavy"):
        got = ak.concatenate([chunk.Jet[f"mass_{label}"] for chunk in written])
        assert ak.to_list(ak.num(got, axis=1)) == ak.to_list(ak.num(events.Jet, axis=1))
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(got)), ak.to_numpy(ak.flatten(brought[label])),
                                   rtol=0, atol=1e-6)

    metadata = {"dataset": "pfnano", "filename": str(pfnano_file), "treename": "Events", "entrystart": 2,
                "entrystop": 9}  # a chunk across the run's two chunks, as a processor receives it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        chunk = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, entry_start=2, entry_stop=9,
                                            schemaclass=PFNanoAODSchema, mode="eager", metadata=metadata).events()
    loaded = load_scores(output, "pfnano", events=chunk)  # joined to the events, AK4 counts checked
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(loaded.Jet.lloca_score)),
                                  ak.to_numpy(ak.flatten(scores[2:9])))
    fewer = ak.with_field(chunk, chunk.Jet[:, :-1], "Jet")  # one AK4 jet dropped from every event
    with pytest.raises(InvalidInputError, match="Jets in the output but"):
        load_scores(output, "pfnano", events=fewer)

    settings = json.loads((output / "run.json").read_text())
    assert settings["collection"] == "Jet"
    with uproot.open(files[0]) as file:
        metadata = read_chunk_metadata(file)
    assert metadata["settings"]["collection"] == "Jet"

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "0 processed, 2 skipped" in again.stdout, again.stdout + again.stderr
    other = [part for part in command if part not in ("--collection", "Jet")]  # the default, FatJet
    refused = subprocess.run(other, capture_output=True, text=True, timeout=600)
    lines = (refused.stdout + refused.stderr).strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1, lines
    assert "collection: 'Jet' there, 'FatJet' now" in lines[0], lines


def test_a_collection_name_is_checked():
    with pytest.raises(ConfigurationError, match="RunConfig.collection"):
        RunConfig(collection="Fat Jet")


def test_tagger_on_ak4_jets_is_the_same_eager_and_dask_and_reads_only_their_columns(pfnano_file):
    import dask
    import dask_awkward as dak

    tagger = Tagger("lloca", backend="torch", collection="Jet")
    assert "collection='Jet'" in repr(tagger) and tagger != Tagger("lloca", backend="torch")
    eager = tagger(input_events(pfnano_file))
    lazy_events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema,
                                              mode="dask").events()
    lazy = tagger(lazy_events)
    (columns,) = dak.report_necessary_columns(lazy).values()
    assert set(columns) == {"nJet", "nJetPFCands", "JetPFCands_pFCandsIdx", "JetPFCands_jetIdx", "nPFCands",
                            "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass"}
    (computed,) = dask.compute(lazy, scheduler="sync")
    assert ak.to_list(ak.num(computed, axis=1)) == ak.to_list(ak.num(eager, axis=1))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(computed)), ak.to_numpy(ak.flatten(eager)))


def test_histograms_of_another_collection_are_labelled_by_it():
    from coffea_lorentz.run.histograms import WEIGHTED, _axis_label, label

    assert label("Jet_lloca_score") == "lloca" and label(f"Jet_lloca_score{WEIGHTED}weight_fsr") == "lloca, weight_fsr"
    assert _axis_label("Jet_lloca_score") == "jet LLoCa score"
    assert _axis_label("Jet_weight_fsr") == "jet weight fsr" and _axis_label("FatJet_weight_fsr") == "fat-jet weight fsr"
