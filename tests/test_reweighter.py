"""Reweighting factors from the main job and from ``coffea_lorentz.Reweighter``: the shipped ``fsr``
reweighter, found by name or path, applied in-process and through a real Triton server, in eager,
virtual and dask-awkward analyses and in ``coffea-lorentz run --reweighter``."""

from __future__ import annotations

import json
import pickle
import shutil

import awkward as ak
import dask
import dask_awkward as dak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz import Reweighter, Tagger
from coffea_lorentz.errors import ConfigurationError
from coffea_lorentz.reweight import find_reweighter, shipped_reweighters, weights_from_probability
from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.testing import require_triton, triton_server_fixture, write_pfnano_fileset, write_small_pfnano

triton_server = triton_server_fixture(taggers=("lorentznet", "reweight_fsr"), scope="module",
                                      skip_if_unavailable=not require_triton())


def events_of(path, mode: str):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode).events()


def flat(array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array))


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    return write_small_pfnano(tmp_path_factory.mktemp("reweighter") / "small.root")


# -- finding a reweighter ------------------------------------------------------------------------
def test_the_shipped_reweighter_carries_its_closure_record_and_commands():
    assert "fsr" in shipped_reweighters()
    info = find_reweighter("fsr")
    assert info == find_reweighter("reweight_fsr") and info.shipped
    assert (info.model, info.architecture, info.max_constituents) == ("reweight_fsr", "lorentz_efn", 128)
    record = info.record
    assert record["closure"]["chi2_ndf_after"] < record["closure"]["chi2_ndf_before"]
    assert "reweight-train" in record["train_command"] and "generate dataset" in record["dataset"]["nominal_command"]
    assert "--alternative" in record["dataset"]["alternative_command"]


def test_the_shipped_reweighter_loads_as_recorded():
    import torch

    from coffea_lorentz import models

    info = find_reweighter("fsr")
    state = torch.load(info.weights, map_location="cpu", weights_only=True)
    assert state["config"] == info.record["config"]
    model = models.pretrained("reweight_fsr")
    assert type(model) is type(models.build(info.architecture, **info.record["config"]))
    assert info.record["reweight_config"]["max_constituents"] == 128 and info.prior_ratio == pytest.approx(37742 / 38763, rel=0.05)


def test_unknown_names_and_missing_files_are_refused_with_the_closest_names(tmp_path):
    with pytest.raises(ConfigurationError, match="did you mean fsr"):
        find_reweighter("fsrr")
    with pytest.raises(ConfigurationError, match="not found"):
        find_reweighter(tmp_path / "reweight_x.pt")
    (tmp_path / "reweight_x.pt").write_bytes(b"")
    with pytest.raises(ConfigurationError, match=r"reweight_x\.json not found"):
        find_reweighter(tmp_path / "reweight_x.pt")
    with pytest.raises(ConfigurationError, match="unknown reweighter"):
        run_tagging([str(tmp_path / "any.root")], tmp_path / "out",
                    RunConfig(taggers=("lorentznet",), reweighters=("nope",), backend="torch", n_workers=0))
    assert not (tmp_path / "out").exists()  # refused before the output is touched


# -- the Reweighter object -------------------------------------------------------------------------
def test_weights_are_the_classifier_odds_in_every_mode(small_file):
    reweighter = Reweighter("fsr", backend="torch")
    assert reweighter.batch_config.max_constituents == 128  # what the classifier was trained on
    assert pickle.loads(pickle.dumps(reweighter)) == reweighter
    eager = reweighter(events_of(small_file, "eager"))
    virtual = reweighter(events_of(small_file, "virtual"))
    lazy = reweighter(events_of(small_file, "dask"))
    assert isinstance(lazy, dak.Array)
    (computed,) = dask.compute(lazy)
    np.testing.assert_array_equal(flat(virtual), flat(eager))
    np.testing.assert_array_equal(flat(computed), flat(eager))
    probability = Tagger("reweight_fsr", backend="torch", max_constituents=128)(events_of(small_file, "eager"))
    info = find_reweighter("fsr")
    expected = weights_from_probability(flat(probability), epsilon=info.epsilon, max_weight=info.max_weight,
                                        prior_ratio=info.prior_ratio)
    np.testing.assert_allclose(flat(eager), expected, rtol=1e-6)
    assert np.all(flat(eager)[np.isnan(flat(probability))] == 1.0)  # a jet without constituents: weight 1
    per_event = Reweighter.event_weight(eager)
    (per_event_lazy,) = dask.compute(Reweighter.event_weight(lazy))
    assert per_event.tolist() == per_event_lazy.tolist()
    leading = ak.firsts(eager)
    assert per_event.tolist() == [1.0 if w is None else w for w in leading.tolist()]


def test_through_triton_equals_in_process(small_file, triton_server):
    served = Reweighter("fsr", server=f"grpc://{triton_server.grpc_url}")
    assert repr(served).startswith("Reweighter('fsr', server=")
    local = Reweighter("fsr", backend="torch")
    events = events_of(small_file, "virtual")
    np.testing.assert_allclose(flat(served(events)), flat(local(events)), rtol=1e-5)


# -- the main job ---------------------------------------------------------------------------------
def _read(summary) -> ak.Array:
    return ak.concatenate([uproot.open(url)["Events"].arrays(library="ak") for url in summary.outputs])


def test_run_writes_scores_and_weights_through_triton_and_in_process_alike(tmp_path, triton_server):
    fileset = write_pfnano_fileset(tmp_path / "inputs", 2)
    common = dict(taggers=("lorentznet",), reweighters=("fsr",), n_workers=0, chunksize=3, progress=False)
    served = run_tagging(fileset, tmp_path / "triton",
                         RunConfig(server_url=f"grpc://{triton_server.grpc_url}", **common))
    local = run_tagging(fileset, tmp_path / "torch", RunConfig(backend="torch", **common))
    assert served.complete and local.complete
    rows, rows_local = _read(served), _read(local)
    assert {"weight_fsr", "FatJet_weight_fsr", "FatJet_lorentznet_score"} <= set(rows.fields)
    assert len(rows) == 2 * 5 and ak.num(rows["FatJet_weight_fsr"]).tolist() == rows["nFatJet"].tolist()
    np.testing.assert_allclose(flat(rows["FatJet_weight_fsr"]), flat(rows_local["FatJet_weight_fsr"]), rtol=1e-5)
    leading = ak.fill_none(ak.firsts(rows["FatJet_weight_fsr"]), 1.0)
    np.testing.assert_array_equal(ak.to_numpy(rows["weight_fsr"]), ak.to_numpy(leading))
    # the weights are the served classifier's own, with its 128 constituents (the tagger keeps 32)
    settings = json.loads((tmp_path / "triton" / "run.json").read_text())
    assert settings["reweighters"] == ["fsr"] and settings["max_constituents"] == 32
    assert len(settings["model_sha256"]["reweight_fsr"]) == 64  # the served model.pt's
    in_process = json.loads((tmp_path / "torch" / "run.json").read_text())
    assert in_process["model_sha256"]["reweight_fsr"] == find_reweighter("fsr").sha256  # the weights file's
    # histograms: the weights, and the score weighted by them, beside the plain score
    assert {"FatJet_lorentznet_score", "FatJet_weight_fsr", "FatJet_lorentznet_score__weight_fsr"} <= set(served.histograms)
    weighted = served.histograms["FatJet_lorentznet_score__weight_fsr"]
    finite = np.isfinite(flat(rows["FatJet_lorentznet_score"]))
    assert weighted.sum().value == pytest.approx(float(flat(rows["FatJet_weight_fsr"])[finite].sum()), rel=1e-5)
    labels = {row["label"] for row in served.datasets}
    assert {"lorentznet", "lorentznet, weight_fsr", "weight_fsr"} <= labels
    mean_weight = [row["mean"] for row in served.datasets if row["label"] == "weight_fsr"]
    assert mean_weight == pytest.approx([float(flat(rows["FatJet_weight_fsr"]).mean())], rel=1e-5)
    assert any(url.endswith("FatJet_lorentznet_score__weight_fsr.png") for url in served.plots)


def test_a_rerun_with_other_reweighters_is_refused_and_a_path_reweighter_works(tmp_path):
    fileset = write_pfnano_fileset(tmp_path / "inputs", 1)
    out = tmp_path / "out"
    common = dict(taggers=("lorentznet",), backend="torch", n_workers=0, chunksize=5, progress=False)
    assert run_tagging(fileset, out, RunConfig(reweighters=("fsr",), **common)).complete
    with pytest.raises(ConfigurationError, match="reweighters: \\['fsr'\\] there, \\[\\] now"):
        run_tagging(fileset, out, RunConfig(**common))
    # the same classifier under another name, from a path: a new branch name, an explicit --overwrite
    copy = tmp_path / "mine" / "reweight_mine.pt"
    copy.parent.mkdir()
    shutil.copy(find_reweighter("fsr").weights, copy)
    record = find_reweighter("fsr").record | {"name": "reweight_mine"}
    copy.with_suffix(".json").write_text(json.dumps(record))
    summary = run_tagging(fileset, out, RunConfig(reweighters=(str(copy),), overwrite=True, **common))
    rows = _read(summary)
    assert "FatJet_weight_mine" in rows.fields and "FatJet_weight_fsr" not in rows.fields
    expected = Reweighter("fsr", backend="torch")(events_of(next(iter(fileset["sample"]["files"])), "eager"))
    np.testing.assert_allclose(flat(rows["FatJet_weight_mine"]), flat(expected), rtol=1e-6)


def test_serve_builds_the_reweighter_into_the_repository(tmp_path, capsys):
    from coffea_lorentz.cli import main

    code = main(["serve", "--build-only", "--tagger", "identity", "--reweighter", "fsr", "--output", str(tmp_path / "repo")])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "repo").iterdir() if p.is_dir()) == ["identity", "reweight_fsr"]
    assert 'name: "reweight_fsr"' in (tmp_path / "repo" / "reweight_fsr" / "config.pbtxt").read_text()


def test_a_processor_refuses_a_reweighter_named_twice(tmp_path):
    from coffea_lorentz.errors import InvalidInputError
    from coffea_lorentz.processors import TaggerProcessor
    from coffea_lorentz.reweighter import ReweighterSpec

    spec = ReweighterSpec.from_file("fsr")
    with pytest.raises(InvalidInputError, match="must be distinct"):
        TaggerProcessor(backends=[], output=tmp_path, reweighters=[spec, spec])
