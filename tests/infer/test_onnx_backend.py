"""The zoo on ONNX Runtime in-process (``backend="onnx"``): every tagger exports with dynamic B and N
and gives the in-process torch probabilities on real batches of the CMS file to 1e-4 (two float32
evaluation orders of the same network; LorentzNet's Minkowski products of TeV jets differ most,
5e-5; the others by under 1e-6); a run with
``--backend onnx`` writes the torch run's scores and records the same model identity."""

from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest

from coffea_lorentz.batch import BatchConfig, make_batches
from coffea_lorentz.infer import BackendSpec
from coffea_lorentz.models import available
from coffea_lorentz.read import jet_constituents

pytest.importorskip("onnxruntime", reason="backend 'onnx' needs onnxruntime (the test extra)")


@pytest.fixture(scope="module")
def cms_batches(shared_data):
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        events = NanoEventsFactory.from_root({str(shared_data / "pfnano.root"): "Events"},
                                             schemaclass=PFNanoAODSchema, mode="eager").events()
    return make_batches(jet_constituents(events), BatchConfig(max_constituents=64, max_batch_size=5))


@pytest.mark.parametrize("tagger", available())
def test_every_tagger_on_onnx_runtime_equals_torch(tagger, cms_batches):
    onnx = BackendSpec.make(tagger, kind="onnx", n_threads=1).create()
    torch_backend = BackendSpec.make(tagger, kind="torch").create()
    got, expected = onnx.infer_batches(cms_batches), torch_backend.infer_batches(cms_batches)
    assert len({batch.p4.shape[1] for batch in cms_batches}) > 1  # several padded lengths N, one export
    for a, b in zip(got, expected):
        assert a.shape == b.shape and a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=0)


def test_a_run_on_onnx_writes_the_torch_scores(tmp_path, shared_data):
    from coffea_lorentz import Tagger
    from coffea_lorentz.run import RunConfig, run_tagging
    from coffea_lorentz.run.chunks import RunSettings  # noqa: F401 - the settings record below

    source = shared_data / "pfnano.root"
    common = dict(taggers=("lloca",), n_workers=0, chunksize=4, progress=False)
    on_onnx = run_tagging([source], tmp_path / "onnx", RunConfig(backend="onnx", **common))
    on_torch = run_tagging([source], tmp_path / "torch", RunConfig(backend="torch", **common))
    assert on_onnx.complete and on_torch.complete
    import json

    import uproot

    def scores(summary):
        return np.concatenate([ak.to_numpy(ak.flatten(uproot.open(url)["Events"]["FatJet_lloca_score"].array()))
                               for url in summary.outputs])

    np.testing.assert_allclose(scores(on_onnx), scores(on_torch), atol=1e-5)
    records = [json.loads((tmp_path / name / "run.json").read_text()) for name in ("onnx", "torch")]
    assert records[0]["model_sha256"] == records[1]["model_sha256"]
    assert records[0]["backend"] == "onnx"
    eager = Tagger("lloca", backend="onnx")
    assert eager.backend == "onnx"
