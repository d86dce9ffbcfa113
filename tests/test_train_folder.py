"""A ``coffea-lorentz train`` output folder as ``Tagger(FOLDER)`` and ``run --tagger FOLDER``: a
tiny LorentzNet trained here on synthetic jets, then scored on the real CMS ``pfnano.root`` and
compared with the checkpoint loaded into the model class by hand and fed constituents read with
plain uproot/numpy."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import torch
import uproot

from coffea_lorentz import Tagger, models
from coffea_lorentz.generate.dataset import DatasetConfig, JetSample, write_dataset
from coffea_lorentz.symmetry import random_jets
from coffea_lorentz.train import TrainConfig, train

MAX_CONSTITUENTS = 16  # fewer than most FatJets of pfnano.root hold: truncation is exercised


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """The export cache of this module (also given to the subprocesses)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def train_folder(tmp_path_factory, cache) -> Path:
    """``train`` on 120 synthetic jets (random labels), one epoch: seconds, and weights that are not the initial ones."""
    work = tmp_path_factory.mktemp("train")
    p4, mask = random_jets(120, 40, min_constituents=4, dtype=torch.float32, seed=4)
    sample = JetSample(p4=(p4 * mask.unsqueeze(-1)).numpy(), n_constituents=mask.sum(1).numpy().astype(np.int32),
                       label=(np.arange(120) % 2).astype(np.int8), event=np.arange(120, dtype=np.uint64),
                       observables={"mass": np.zeros(120, dtype=np.float32)})
    write_dataset(work / "jets.h5", sample, seed=1, config=DatasetConfig(max_constituents=40), attrs={})
    config = TrainConfig(tagger="lorentznet", epochs=1, batch_size=32, max_constituents=MAX_CONSTITUENTS,
                         n_threads=1, patience=0, seed=2)
    train(config, work / "jets.h5", work / "my_lnet")
    return work / "my_lnet"


def reference_scores(checkpoint: Path, path: Path) -> np.ndarray:
    """Per FatJet in file order: softmax class 1 of the checkpoint loaded by hand, on its leading-pT
    constituents (E, px, py, pz) from the raw branches; NaN for a jet without constituents."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = models.build(saved["train_config"]["tagger"], **saved["config"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    raw = uproot.open(path)["Events"].arrays(["nFatJet", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx",
                                              "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass"], library="np")
    scores = []
    for event in range(len(raw["nFatJet"])):
        for jet in range(raw["nFatJet"][event]):
            index = raw["FatJetPFCands_pFCandsIdx"][event][raw["FatJetPFCands_jetIdx"][event] == jet]
            if len(index) == 0:
                scores.append(np.nan)
                continue
            pt, eta = raw["PFCands_pt"][event][index].astype(np.float64), raw["PFCands_eta"][event][index]
            phi, mass = raw["PFCands_phi"][event][index], raw["PFCands_mass"][event][index]
            order = np.argsort(-pt, kind="stable")[:MAX_CONSTITUENTS]
            px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
            energy = np.sqrt(px**2 + py**2 + pz**2 + mass.astype(np.float64) ** 2)
            p4 = np.stack([energy, px, py, pz], axis=-1)[order].astype(np.float32)
            with torch.no_grad():
                logits = model(torch.from_numpy(p4)[None], torch.ones(1, len(order), dtype=torch.bool))
            scores.append(float(torch.softmax(logits, dim=-1)[0, 1]))
    return np.array(scores)


def _events(path: Path, mode: str):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode).events()


def test_tagger_of_a_train_folder_equals_the_checkpoint_by_hand(train_folder, cache, pfnano_file, monkeypatch):
    monkeypatch.setenv("COFFEA_LORENTZ_CACHE", str(cache))
    from coffea_lorentz.user_model import load_model

    expected = reference_scores(train_folder / "lorentznet.pt", pfnano_file)
    assert len(expected) == 24 and np.isfinite(expected).sum() > 15

    tagger = Tagger(str(train_folder))
    assert tagger.names == ("score",) and tagger.model.name == "my_lnet" and tagger.backend == "torch"
    events = _events(pfnano_file, "eager")
    scores = tagger(events)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(scores["score"])), expected, atol=1e-5, rtol=0)
    assert ak.to_list(ak.num(scores["score"])) == ak.to_list(ak.num(events.FatJet))

    onnx_scores = Tagger(f"other={train_folder}", backend="onnx")(events)
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(onnx_scores["score"])), expected, atol=1e-5, rtol=0)

    lazy = tagger(_events(pfnano_file, "dask"))["score"].compute(scheduler="sync")
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(lazy)), ak.to_numpy(ak.flatten(scores["score"])))

    # the identity is the rebuilt tagger's with its head: stable across loads, another for other weights
    first, again = load_model(train_folder), load_model(f"renamed={train_folder}")
    assert first.identity == again.identity and again.name == "renamed" and first.origin.endswith("lorentznet.pt")
    saved = torch.load(train_folder / "lorentznet.pt", weights_only=True)
    key = next(iter(saved["state_dict"]))
    saved["state_dict"][key] = saved["state_dict"][key] + 1.0
    changed = train_folder.parent / "changed"
    changed.mkdir()
    torch.save(saved, changed / "lorentznet.pt")
    (changed / "metrics.json").write_text((train_folder / "metrics.json").read_text())
    assert load_model(changed).identity != first.identity

    # LorentzNet is Lorentz-invariant, and so is what the folder runs, through its spec and features
    from coffea_lorentz.check import check_model

    rows = {row.check.split(" ")[0]: row for row in check_model(str(train_folder), n_jets=8)}
    assert all(row.invariant for row in rows.values()), rows


@pytest.mark.parametrize("backend", ["torch", "onnx", pytest.param("triton", marks=pytest.mark.slow)])
def test_run_with_a_train_folder_writes_the_checkpoints_scores(train_folder, cache, pfnano_file, tmp_path, backend,
                                                                monkeypatch):
    """``run --tagger FOLDER`` in a fresh process (``triton``: on the run's own local server, the
    TorchScript export in the python backend): ``FatJet_<folder>_score`` equals the reference, and
    the run records the same identity as this process computes."""
    if backend == "triton":
        from coffea_lorentz.testing import server_unavailable_reason

        if server_unavailable_reason() is not None:
            pytest.skip(f"no local Triton server: {server_unavailable_reason()}")

    from coffea_lorentz.user_model import load_model

    monkeypatch.setenv("COFFEA_LORENTZ_CACHE", str(cache))  # this process and the run's
    output = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", "run", str(pfnano_file), "--output", str(output),
                           "--tagger", str(train_folder), "--backend", backend, "--workers", "0", "--chunksize", "4",
                           "--no-progress"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    arrays = [uproot.open(path)["Events"].arrays(library="ak") for path in sorted(output.glob("pfnano/*.root"))]
    got = np.concatenate([ak.to_numpy(ak.flatten(a["FatJet_my_lnet_score"])) for a in arrays])
    np.testing.assert_allclose(got, reference_scores(train_folder / "lorentznet.pt", pfnano_file), atol=1e-5, rtol=0)
    settings = json.loads((output / "run.json").read_text())
    assert dict(settings["model_sha256"])["my_lnet"] == load_model(train_folder).identity


def test_serve_builds_a_train_folder_in(train_folder, cache, tmp_path, monkeypatch):
    """``serve --tagger FOLDER --build-only``: the folder's TorchScript export under the folder's
    name, with the spec's inputs and the model's identity, in a config Triton's schema accepts."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from coffea_lorentz.user_model import load_model

    monkeypatch.setenv("COFFEA_LORENTZ_CACHE", str(cache))
    done = subprocess.run([sys.executable, "-m", "coffea_lorentz.cli", "serve", "--tagger", str(train_folder),
                           "--build-only", "--output", str(tmp_path / "repository")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    config = text_format.Parse((tmp_path / "repository" / "my_lnet" / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    assert [(i.name, list(i.dims)) for i in config.input] == [("p4", [-1, 4]), ("mask", [-1, 1])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("score", [1])]
    assert config.parameters["model_sha256"].string_value == load_model(train_folder).identity
    assert (tmp_path / "repository" / "my_lnet" / "1" / "model.pt").is_file()
