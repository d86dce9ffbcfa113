"""Inputs through Triton system shared memory against a real server: the same scores as plain gRPC,
regions released at close, and the request size taken from the served model. (A server killed and
restarted mid-call with shared memory on: ``test_triton_faults.py``.)"""

from __future__ import annotations

import os

import awkward as ak
import numpy as np
import pytest

from coffea_lorentz.batch import BatchConfig
from coffea_lorentz.errors import ConfigurationError, InvalidInputError
from coffea_lorentz.infer import TritonBackend, inspect_served_models
from coffea_lorentz.infer.shared_memory import REGION_PREFIX, SHM_FOLDER, stale_regions
from coffea_lorentz.pipeline import score_branch, tag_events
from coffea_lorentz.testing import require_triton, server_unavailable_reason, triton_server_fixture
from test_triton_batching import SMALL_MAX_BATCH, make_batches
from test_triton_faults import TAGGER

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                       reason=f"no local Triton server: {server_unavailable_reason()}"),
]

small_server = triton_server_fixture((TAGGER,), scope="module", name="small_server", max_batch_size=SMALL_MAX_BATCH)
one_jet_server = triton_server_fixture((TAGGER,), scope="module", name="one_jet_server", max_batch_size=1)


def own_regions() -> set[str]:
    """This process's region files in /dev/shm."""
    return {path.name for path in SHM_FOLDER.glob(f"{REGION_PREFIX}{os.getpid()}-*")}


def server_regions(backend: TritonBackend) -> set[str]:
    """Names of the shared memory regions registered with ``backend``'s server."""
    return set(backend.client.get_system_shared_memory_status(as_json=True).get("regions", {}))


def test_shared_memory_gives_the_scores_of_plain_grpc_and_is_released_at_close(small_server):
    batches = make_batches([100, 5, 64, 33, 1, 32], n_constituents=24)
    plain = TritonBackend(small_server.grpc_url, TAGGER).infer_batches(batches)
    backend = TritonBackend(small_server.grpc_url, TAGGER, shared_memory=True, max_in_flight=3)
    before = own_regions()
    for _ in range(2):  # the second call reuses the slots of the first
        scored = backend.infer_batches(batches)
        assert [len(score) for score in scored] == [len(batch) for batch in batches]
        for got, want in zip(scored, plain, strict=True):
            np.testing.assert_array_equal(got, want)
    names = set(backend._shared.names)
    assert names and names <= own_regions() - before
    assert names <= server_regions(backend)
    assert len(names) <= 2 * 3  # one p4 and one mask region per request in flight
    backend.close()
    backend.close()  # idempotent
    assert not names & own_regions()
    assert not names & server_regions(TritonBackend(small_server.grpc_url, TAGGER))
    # usable again after close: new regions, the same scores
    again = backend.infer_batches(batches[:2])
    np.testing.assert_array_equal(again[0], plain[0])
    backend.close()
    assert not own_regions() - before


def test_regions_grow_for_larger_batches(small_server):
    backend = TritonBackend(small_server.grpc_url, TAGGER, shared_memory=True, max_in_flight=1)
    small, large = make_batches([2], n_constituents=8), make_batches([SMALL_MAX_BATCH], n_constituents=128, seed=5)
    plain = TritonBackend(small_server.grpc_url, TAGGER)
    for batches in (small, large, small):
        np.testing.assert_array_equal(backend.infer_batches(batches)[0], plain.infer_batches(batches)[0])
    assert len(backend._shared.names) == 2
    assert set(backend._shared.names) <= server_regions(backend)
    backend.close()


def test_regions_are_unregistered_when_the_backend_is_collected(small_server):
    backend = TritonBackend(small_server.grpc_url, TAGGER, shared_memory=True)
    backend.infer_batches(make_batches([3]))
    names = set(backend._shared.names)
    assert names <= own_regions()
    del backend
    import gc

    gc.collect()
    assert not names & own_regions()
    assert not names & server_regions(TritonBackend(small_server.grpc_url, TAGGER))


def test_stale_regions_name_their_process():
    assert stale_regions(lambda pid: True) == []
    path = SHM_FOLDER / f"{REGION_PREFIX}{os.getpid()}-test-0-p4-1"
    if not SHM_FOLDER.is_dir():
        pytest.skip("no /dev/shm")
    path.write_bytes(b"")
    try:
        assert path in stale_regions(lambda pid: pid != os.getpid())
        assert path not in stale_regions(lambda pid: True)
    finally:
        path.unlink()


def test_shared_memory_needs_one_server():
    with pytest.raises(InvalidInputError, match="one server"):
        TritonBackend("127.0.0.1:1,127.0.0.1:2", TAGGER, shared_memory=True)


def test_default_request_size_is_the_served_max_batch_size(small_server):
    backend = TritonBackend(small_server.grpc_url, TAGGER)
    assert BatchConfig().max_batch_size is None
    assert backend.request_size() == SMALL_MAX_BATCH
    assert inspect_served_models(small_server.grpc_url, [TAGGER])[TAGGER].max_batch_size == SMALL_MAX_BATCH
    with pytest.raises(ConfigurationError, match=f"above the served max_batch_size {SMALL_MAX_BATCH}"):
        inspect_served_models(small_server.grpc_url, [TAGGER], max_batch_size=SMALL_MAX_BATCH + 1)
    backend.close()


class SizesSeen(TritonBackend):
    """The Triton client, noting the jets of each batch it is given."""

    def infer_batches(self, batches):
        self.sizes = [len(batch) for batch in batches]
        return super().infer_batches(batches)


def test_tag_events_cuts_batches_at_the_served_size(one_jet_server, small_pfnano):
    """No batch size chosen: the batches are cut at the served max_batch_size (1 jet here), not at
    the in-process 256; a chosen one is kept."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    events = NanoEventsFactory.from_root({str(small_pfnano): "Events"}, schemaclass=PFNanoAODSchema,
                                         mode="virtual").events()
    config = BatchConfig(max_constituents=128, buckets=(4, 16, 64))
    backend = SizesSeen(one_jet_server.grpc_url, TAGGER)
    tagged = tag_events(events, {TAGGER: backend}, batch_config=config)
    assert backend.sizes and set(backend.sizes) == {1}
    chosen = tag_events(events, {TAGGER: backend}, batch_config=BatchConfig(max_constituents=128, buckets=(4, 16, 64),
                                                                           max_batch_size=256))
    assert max(backend.sizes) > 1  # the client splits these into 1-jet requests itself
    score = score_branch(TAGGER)
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(tagged.scores[score])),
                                  ak.to_numpy(ak.flatten(chosen.scores[score])))
    backend.close()
