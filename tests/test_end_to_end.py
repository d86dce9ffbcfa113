"""The whole flow on real parts: CMS PFNano → Dask LocalCluster → a real Triton server → ROOT files."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz.batch import BatchConfig
from coffea_lorentz.errors import ServerError
from coffea_lorentz.infer import TorchBackend
from coffea_lorentz.pipeline import tag_events
from coffea_lorentz.run import RunConfig, default_max_constituents, run_tagging
from coffea_lorentz.testing import require_triton, triton_server_fixture, write_small_pfnano

TAGGER = "lorentznet"
triton_server = triton_server_fixture(taggers=(TAGGER,), scope="module", skip_if_unavailable=not require_triton())

pytestmark = pytest.mark.slow


def read_outputs(summary) -> ak.Array:
    return ak.concatenate([uproot.open(path)["Events"].arrays(library="ak") for path in summary.outputs])


def torch_scores(path) -> np.ndarray:
    events = NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual").events()
    config = BatchConfig(max_constituents=default_max_constituents((TAGGER,)))  # what the run uses
    tagged = tag_events(events, {TAGGER: TorchBackend(TAGGER)}, batch_config=config, source=str(path))
    return ak.to_numpy(ak.flatten(tagged.scores[f"{TAGGER}_score"]))


def run_on_cluster(path, output, server, cluster, **options):
    config = RunConfig(taggers=(TAGGER,), backend="triton", server_url=f"grpc://{server.grpc_url}",
                       scheduler=cluster.scheduler_address, progress=False, **options)
    return run_tagging([path], output, config)


def test_cms_pfnano_through_triton_on_dask(pfnano_file, triton_server, dask_cluster, tmp_path):
    summary = run_on_cluster(pfnano_file, tmp_path / "out", triton_server, dask_cluster)
    assert (summary.events, summary.jets) == (10, 24)
    output = read_outputs(summary)
    inputs = uproot.open(pfnano_file)["Events"].arrays(["run", "luminosityBlock", "event", "nFatJet"], library="np")
    assert len(output) == 10
    for name in ("run", "luminosityBlock", "event", "nFatJet"):
        np.testing.assert_array_equal(ak.to_numpy(output[name]), inputs[name])
    scores = ak.to_numpy(ak.flatten(output[f"FatJet_{TAGGER}_score"]))
    assert scores.shape == (24,) and np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores, torch_scores(pfnano_file), atol=1e-5, rtol=0)


def test_made_sample_through_triton_on_dask(small_pfnano, triton_server, dask_cluster, tmp_path):
    """Both PFNano layouts; an event without FatJets, a jet without constituents (NaN), a jet over 128; 2 chunks."""
    summary = run_on_cluster(small_pfnano, tmp_path / "out", triton_server, dask_cluster, chunksize=3)
    assert len(summary.outputs) == 2 and summary.complete
    output = read_outputs(summary)
    assert ak.to_numpy(output["event"]).tolist() == [5000 + 17 * i for i in range(5)]
    assert ak.num(output[f"FatJet_{TAGGER}_score"]).tolist() == [2, 0, 2, 1, 3]
    scores = ak.to_numpy(ak.flatten(output[f"FatJet_{TAGGER}_score"]))
    expected = torch_scores(small_pfnano)
    assert np.isnan(scores[2]) and np.isnan(expected[2])  # the jet with no constituents
    np.testing.assert_allclose(scores, expected, atol=1e-5, rtol=0, equal_nan=True)


def test_unreachable_server_leaves_no_output(small_pfnano, tmp_path):
    from coffea_lorentz.serve import free_port

    port = free_port()
    config = RunConfig(taggers=(TAGGER,), backend="triton", server_url=f"127.0.0.1:{port}", n_workers=0,
                       progress=False, server_wait_s=1.0)
    with pytest.raises(ServerError, match=f"127.0.0.1:{port}"):
        run_tagging([small_pfnano], tmp_path / "out", config)
    assert list(tmp_path.iterdir()) == []
