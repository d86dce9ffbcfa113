"""tag_events: several taggers in flight together, batches padded on first use, the same scores as one by one."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

import awkward as ak
import numpy as np
import pytest
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz.batch import Batch, BatchConfig, LazyBatches, make_batches, scatter
from coffea_lorentz.infer.base import Backend
from coffea_lorentz.pipeline import score_branch, tag_events
from coffea_lorentz.read import jet_constituents

#: Small batches, so the sample's jets make several requests.
CONFIG = BatchConfig(max_constituents=128, buckets=(4, 16, 64), max_batch_size=2)


class MeanEnergy(Backend):
    """Probabilities (1 − s, s) with s = mean E of the real constituents / (1 + that), in float32.

    ``remote`` as given; ``barrier`` is awaited inside each call (two backends that must be in
    flight together); ``error`` is raised instead of answering.
    """

    def __init__(self, *, remote: bool = False, barrier: threading.Barrier | None = None,
                 error: BaseException | None = None, release: threading.Event | None = None):
        self.remote = remote
        self.barrier = barrier
        self.release = release
        self.error = error
        self.calls: list[dict] = []

    def infer_batches(self, batches: Sequence[Batch]) -> list[np.ndarray]:
        padded_before = sum(batch is not None for batch in batches._built) if isinstance(batches, LazyBatches) else None
        self.calls.append({"thread": threading.current_thread(), "lazy": isinstance(batches, LazyBatches),
                           "padded_before": padded_before})
        if self.barrier is not None:
            self.barrier.wait()
        if self.release is not None:
            self.release.wait()
        if self.error is not None:
            raise self.error
        outputs = []
        for batch in batches:
            mean = (batch.p4[..., 0] * batch.mask).sum(axis=1) / batch.mask.sum(axis=1)
            signal = (mean / (1.0 + mean)).astype(np.float32)
            outputs.append(np.stack([1.0 - signal, signal], axis=-1))
        return outputs


def open_events(path):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual").events()


def expected_scores(path) -> np.ndarray:
    """Flat per-jet scores of :class:`MeanEnergy` computed without tag_events: plain batches, no merging."""
    jets = jet_constituents(open_events(path))
    batches = make_batches(jets, replace(CONFIG, request_cost_slots=0))
    return scatter(batches, MeanEnergy().infer_batches(batches), jets.total_jets)[:, 1]


def flat(tagged, tagger: str) -> np.ndarray:
    return ak.to_numpy(ak.flatten(tagged.scores[score_branch(tagger)]))


def test_remote_backends_are_in_flight_together(small_pfnano):
    barrier = threading.Barrier(2, timeout=60)  # each waits for the other: one after the other would break it
    first, second = MeanEnergy(remote=True, barrier=barrier), MeanEnergy(remote=True, barrier=barrier)
    local = MeanEnergy()
    tagged = tag_events(open_events(small_pfnano), {"a": first, "b": second, "c": local}, batch_config=CONFIG)
    expected = expected_scores(small_pfnano)
    for tagger in "abc":
        np.testing.assert_array_equal(flat(tagged, tagger), expected)
    assert np.isnan(expected).sum() == 1 and not np.isnan(expected).all()  # the jet without constituents
    threads = {first.calls[0]["thread"], second.calls[0]["thread"]}
    assert len(threads) == 2 and threading.main_thread() not in threads
    assert local.calls[0]["thread"] is threading.current_thread()


def test_batches_are_padded_when_a_backend_takes_them(small_pfnano):
    lone = MeanEnergy(remote=True)
    tagged = tag_events(open_events(small_pfnano), {"a": lone}, batch_config=CONFIG)
    (call,) = lone.calls
    assert call["lazy"] and call["padded_before"] == 0
    assert call["thread"] is threading.current_thread()  # a lone remote backend needs no thread
    np.testing.assert_array_equal(flat(tagged, "a"), expected_scores(small_pfnano))


def test_one_backend_under_two_names_is_called_once(small_pfnano):
    shared = MeanEnergy(remote=True)
    tagged = tag_events(open_events(small_pfnano), {"a": shared, "b": shared}, batch_config=CONFIG)
    assert len(shared.calls) == 1
    np.testing.assert_array_equal(flat(tagged, "a"), flat(tagged, "b"))


def test_the_first_failing_backend_is_reported_after_the_others_finish(small_pfnano):
    survivor = MeanEnergy(remote=True)
    failing = [MeanEnergy(remote=True, error=RuntimeError("first")), MeanEnergy(error=ValueError("second"))]
    with pytest.raises(RuntimeError, match="first"):
        tag_events(open_events(small_pfnano), {"x": failing[0], "ok": survivor, "y": failing[1]}, batch_config=CONFIG)
    assert len(survivor.calls) == 1 and all(len(backend.calls) == 1 for backend in failing)


def test_an_interrupt_does_not_wait_for_requests_in_flight(small_pfnano):
    release = threading.Event()
    stuck = [MeanEnergy(remote=True, release=release), MeanEnergy(remote=True, release=release)]
    try:
        with pytest.raises(KeyboardInterrupt):
            backends = {"a": stuck[0], "b": stuck[1], "c": MeanEnergy(error=KeyboardInterrupt())}
            tag_events(open_events(small_pfnano), backends, batch_config=CONFIG)
        assert not release.is_set()  # the stuck backends could not have answered yet
        assert all(backend.calls[0]["thread"].daemon for backend in stuck)
    finally:
        release.set()


def test_the_identity_model_scores_as_before(small_pfnano):
    """In-process identity: tag_events (merged, lazily padded batches) == plain batches, bit for bit."""
    pytest.importorskip("torch")
    from coffea_lorentz.infer import TorchBackend

    backend = TorchBackend("identity")
    tagged = tag_events(open_events(small_pfnano), {"identity": backend, "twice": TorchBackend("identity")})
    jets = jet_constituents(open_events(small_pfnano))
    batches = make_batches(jets, BatchConfig(request_cost_slots=0))
    expected = scatter(batches, backend.infer_batches(batches), jets.total_jets)[:, 1]
    np.testing.assert_array_equal(flat(tagged, "identity"), expected)
    np.testing.assert_array_equal(flat(tagged, "twice"), expected)
