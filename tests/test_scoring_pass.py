"""One scoring pass: a zoo tagger, a model brought with its spec and a reweighter served by one real
Triton server, scored over one chunk of the real CMS ``pfnano.root`` with every request in flight
together, and the same branches as each of them alone.

Real parts: a local ``tritonserver`` serving ``lorentz_efn`` (shipped weights), ``reweight_fsr``
(the shipped reweighter) and a TorchScript model with a spec; the real Triton clients, each
subclassed only to note when its call starts and ends.
"""

from __future__ import annotations

import threading
import time

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz.batch import BatchConfig
from coffea_lorentz.infer.triton_client import TritonBackend
from coffea_lorentz.infer.triton_spec import TritonSpecBackend
from coffea_lorentz.pipeline import (ClassHead, ScoredModel, ScoreHead, SpecInput, ZooInput, score_events,
                                     score_with_spec, tag_events)
from coffea_lorentz.reweighter import ReweighterSpec, WeightHead, reweight_events
from coffea_lorentz.testing import server_unavailable_reason
from coffea_lorentz.testing.models import write_jet_mass_model

#: Two jets per request, so each model of the sample's 24 fat jets sends several requests.
BATCH_SIZE = 2



class Timed:
    """Notes (thread, start, end) of every inference call of the real client it is mixed into."""

    def _timed(self, call, batches):
        start = time.monotonic()
        try:
            return call(batches)
        finally:
            self.calls.append((threading.current_thread().name, start, time.monotonic()))


class TimedTriton(Timed, TritonBackend):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def infer_batches(self, batches):
        return self._timed(super().infer_batches, batches)


class TimedTritonSpec(Timed, TritonSpecBackend):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def infer_named(self, batches):
        return self._timed(super().infer_named, batches)


@pytest.fixture(scope="module")
def jet_mass(tmp_path_factory):
    from coffea_lorentz.user_model import load_model

    folder = tmp_path_factory.mktemp("brought")
    return load_model(f"mass={write_jet_mass_model(folder)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, jet_mass):
    from coffea_lorentz.models import pretrained
    from coffea_lorentz.repository import build_repository
    from coffea_lorentz.serve import ServerConfig, TritonServer

    reason = server_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no local Triton server: {reason}")
    repository = build_repository(tmp_path_factory.mktemp("pass") / "models",
                                   {"lorentz_efn": pretrained("lorentz_efn"), "reweight_fsr": pretrained("reweight_fsr"),
                                    "mass": jet_mass}, intra_op_threads=1)
    with TritonServer(ServerConfig(repository=repository)) as running:
        yield running


def open_events(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual").events()


def test_every_served_model_is_in_flight_together_and_scores_as_alone(server, jet_mass, pfnano_file):
    from coffea_lorentz.infer.server_statistics import read_server_statistics

    url = server.grpc_url
    fsr = ReweighterSpec.from_file("fsr", kind="triton", url=url)
    tagger = TimedTriton(url, "lorentz_efn")
    brought = TimedTritonSpec(url, "mass", jet_mass.spec)
    reweighter = TimedTriton(url, "reweight_fsr")
    models = [
        ScoredModel("lorentz_efn", ZooInput(BatchConfig(max_constituents=32, max_batch_size=BATCH_SIZE)), tagger,
                    ScoreHead()),
        ScoredModel("mass", SpecInput(jet_mass, batch_size=BATCH_SIZE), brought, ClassHead(jet_mass)),
        ScoredModel("reweight_fsr", ZooInput(BatchConfig(max_constituents=128, max_batch_size=BATCH_SIZE)),
                    reweighter, WeightHead(fsr)),
    ]
    events = open_events(pfnano_file)
    before = read_server_statistics(url, ["lorentz_efn", "mass", "reweight_fsr"])
    scored = score_events(events, models, source=str(pfnano_file))
    after = read_server_statistics(url, ["lorentz_efn", "mass", "reweight_fsr"], settle_s=0.2)

    calls = [call for backend in (tagger, brought, reweighter) for call in backend.calls]
    assert len(calls) == 3, calls
    # All three started before any of them finished: their requests were on the server together.
    assert max(start for _, start, _ in calls) < min(end for _, _, end in calls), calls
    threads = {name for name, _, _ in calls}
    assert len(threads) == 3 and threading.current_thread().name not in threads, threads
    jets = int(ak.sum(ak.num(events.FatJet, axis=1)))
    for model in ("lorentz_efn", "mass", "reweight_fsr"):  # each model answered its own requests, several each
        delta = after[model].requests - before[model].requests
        assert delta >= jets // BATCH_SIZE - 2, (model, delta)

    assert list(scored.jet_branches) == ["lorentz_efn_score", "mass_light", "mass_heavy", "weight_fsr"]
    assert list(scored.event_branches) == ["weight_fsr"]
    alone = {
        **tag_events(events, {"lorentz_efn": TritonBackend(url, "lorentz_efn")},
                     batch_config=BatchConfig(max_constituents=32, max_batch_size=BATCH_SIZE)).scores,
        **{f"mass_{label}": values for label, values in score_with_spec(
            events, jet_mass, TritonSpecBackend(url, "mass", jet_mass.spec), batch_size=BATCH_SIZE).items()},
    }
    weights, event_weights, _ = reweight_events(events, [fsr], batch_config=BatchConfig(max_batch_size=BATCH_SIZE))
    alone.update(weights)
    for name, values in alone.items():
        np.testing.assert_allclose(ak.to_numpy(ak.flatten(scored.jet_branches[name])),
                                   ak.to_numpy(ak.flatten(values)), rtol=0, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(scored.event_branches["weight_fsr"], event_weights["weight_fsr"], rtol=0, atol=1e-6)
    assert np.isfinite(ak.to_numpy(ak.flatten(scored.jet_branches["lorentz_efn_score"]))).any()


def test_the_processor_scores_all_three_in_one_pass_and_writes_them(server, jet_mass, pfnano_file, tmp_path):
    from coffea_lorentz.infer import BackendSpec
    from coffea_lorentz.processors import TaggerProcessor

    url = server.grpc_url
    processor = TaggerProcessor(backends=[BackendSpec.make("lorentz_efn", kind="triton", url=url)],
                                reweighters=[ReweighterSpec.from_file("fsr", kind="triton", url=url)],
                                models=[(jet_mass, ("triton", url, ()))], output=tmp_path,
                                batch_config=BatchConfig(max_constituents=32))
    names = [model.name for model in processor.scored_models()]
    assert names == ["lorentz_efn", "mass", "reweight_fsr"]
    events = NanoEventsFactory.from_root({str(pfnano_file): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual",
                                         metadata={"dataset": "cms", "filename": str(pfnano_file)}).events()
    summary = processor.process(events)
    (written,) = summary["outputs"]
    arrays = uproot.open(tmp_path / written)["Events"].arrays(library="ak")
    expected = tag_events(events, {"lorentz_efn": TritonBackend(url, "lorentz_efn")},
                          batch_config=BatchConfig(max_constituents=32)).scores["lorentz_efn_score"]
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(arrays["FatJet_lorentz_efn_score"])),
                               ak.to_numpy(ak.flatten(expected)), rtol=0, atol=1e-6)
    for branch in ("FatJet_mass_light", "FatJet_mass_heavy", "FatJet_weight_fsr", "weight_fsr"):
        assert branch in arrays.fields, arrays.fields
    assert ak.all(ak.num(arrays["FatJet_mass_heavy"], axis=1) == ak.num(events.FatJet, axis=1))
