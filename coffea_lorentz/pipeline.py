"""One chunk through the whole flow: read → batch → infer → unflatten.

:func:`tag_events` is what a coffea processor calls per chunk; it is also usable directly on a
NanoEvents array in a notebook.

What overlaps inside one call:

- padding and sending: the batches are planned at once but padded on first use
  (:class:`~coffea_lorentz.batch.LazyBatches`); the Triton client takes a batch only when it sends
  it, so later batches are padded while earlier requests are in flight;
- taggers: every backend that waits on a server (``Backend.remote``) runs in a thread of its own,
  so all taggers' requests are in flight together rather than tagger after tagger; in-process
  backends run one after another in the calling thread meanwhile (torch's thread count is
  process-wide); a backend object given under several names is called once; Ctrl-C or SIGTERM
  does not wait for requests in flight;
- scattering: each tagger's scores go back to their jets as soon as its last answer is in.

Reading is not split into parts that overlap inference: NanoEvents reads a whole column of the chunk
on first access, so the first part would pay for reading nearly all of it.
(``bench/bench_pipeline.py`` times every stage.)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .batch import BatchConfig, LazyBatches, plan_batches, scatter, unflatten
from .infer.base import Backend
from .read import JetConstituents, jet_constituents

__all__ = ["TaggedChunk", "tag_events", "score_branch", "score_with_spec", "output_size"]


def score_branch(tagger: str) -> str:
    """Name of the per-jet score field of ``tagger`` (written as ``FatJet_<tagger>_score``)."""
    return f"{tagger}_score"


@dataclass(frozen=True)
class TaggedChunk:
    """Scores of one chunk.

    Attributes:
        jets: the constituents that were scored; ``jets.n_dropped`` [n_jets] counts the
            constituents dropped per jet for non-finite values (see :mod:`coffea_lorentz.read`).
        scores: field name → jagged [n_events][jets] float32 probability of class 1 (signal);
            NaN for a jet with no constituents, including one whose constituents were all dropped.
    """

    jets: JetConstituents
    scores: dict[str, ak.Array]

    @property
    def nonfinite_jets(self) -> int:
        """Jets of this chunk that lost at least one constituent to a non-finite value."""
        return int(np.count_nonzero(self.jets.affected_jets))

    @property
    def nonfinite_constituents(self) -> int:
        """Constituents of this chunk dropped for non-finite values."""
        return int(self.jets.n_dropped.sum())

    def first_affected_events(self, limit: int = 5) -> list[int]:
        """Up to ``limit`` (≥ 0; a negative limit gives none) ascending indices, within the chunk, of
        events with a jet that lost constituents to non-finite values.

        Add the chunk's first entry in its file to get the file's entry numbers.
        """
        return [int(i) for i in self.jets.affected_events()[: max(int(limit), 0)]]

    def summary(self, source: str, output: str) -> dict:
        """The processor's accumulator for this chunk: counts, the output file, the input file.

        ``nonfinite_jets`` counts jets with at least one constituent dropped for a non-finite value,
        ``nonfinite_constituents`` the constituents dropped; both add up over chunks.
        """
        return {
            "events": self.jets.n_events,
            "jets": self.jets.total_jets,
            "constituents": int(self.jets.n_constituents.sum()),
            "nonfinite_jets": self.nonfinite_jets,
            "nonfinite_constituents": self.nonfinite_constituents,
            "outputs": [output],
            "files": {source},
        }


def tag_events(events: ak.Array, backends: dict[str, Backend], *, batch_config: BatchConfig = BatchConfig(),
               source: str = "<events>", signal_class: int = 1, jets: JetConstituents | None = None) -> TaggedChunk:
    """Score every ``FatJet`` of ``events`` with each backend in ``backends`` (tagger name → backend).

    See the module docstring for what runs concurrently; the scores are the same as one backend
    after the other. A ``batch_config`` without ``max_batch_size`` cuts batches at the smallest
    :meth:`~coffea_lorentz.infer.base.Backend.request_size` of the backends (a Triton-served tagger:
    the served ``max_batch_size``). When several backends fail, the first one's error (in ``backends`` order) is
    raised after the others have finished. ``jets``: the constituents of ``events`` when already
    read (:func:`~coffea_lorentz.read.jet_constituents`), so passes with other batchings share one read.
    """
    if jets is None:
        jets = jet_constituents(events, source=source)
    if batch_config.max_batch_size is None:
        size = min(backend.request_size() for backend in backends.values()) if backends else None
        batch_config = dataclasses.replace(batch_config, max_batch_size=size)
    batches = LazyBatches(jets, plan_batches(jets, batch_config))

    def signal_probability(backend: Backend) -> np.ndarray:
        """float32 [total_jets]: the signal-class probability of every jet; NaN where not scored."""
        if not len(batches):
            return np.full(jets.total_jets, np.nan, dtype=np.float32)
        return scatter(batches, backend.infer_batches(batches), jets.total_jets)[:, signal_class]

    per_jet = _call_each(backends, signal_probability)
    scores = {score_branch(tagger): unflatten(per_jet[tagger], jets.n_jets) for tagger in backends}
    return TaggedChunk(jets=jets, scores=scores)


def _call_each(backends: Mapping[str, Backend], call: Callable[[Backend], np.ndarray]) -> dict[str, np.ndarray]:
    """``call(backend)`` for each distinct backend of ``backends``: remote ones each in a thread of
    their own, in-process ones in this thread meanwhile; returns tagger name → result.

    The threads are daemon threads: a ``KeyboardInterrupt`` or ``SystemExit`` (SIGTERM) in this
    thread propagates at once, without waiting for requests still in flight.
    """
    distinct = {id(backend): (tagger, backend) for tagger, backend in backends.items()}
    remote = [key for key, (_, backend) in distinct.items() if backend.remote]
    if len(remote) == len(distinct) == 1:
        remote = []  # a lone remote backend needs no thread
    results: dict[int, np.ndarray] = {}
    errors: dict[int, BaseException] = {}

    def run(key: int) -> None:
        try:
            results[key] = call(distinct[key][1])
        except Exception as err:  # noqa: BLE001 - raised below, in backends order
            errors[key] = err

    threads = [threading.Thread(target=run, args=(key,), name=f"coffea-lorentz-infer-{distinct[key][0]}", daemon=True)
               for key in remote]
    for thread in threads:
        thread.start()
    for key in distinct:
        if key not in remote:
            run(key)
    for thread in threads:
        thread.join()
    for backend in backends.values():
        if id(backend) in errors:
            raise errors[id(backend)]
    return {tagger: results[id(backend)] for tagger, backend in backends.items()}


def output_size(model, backend) -> int:
    """Outputs per jet of a spec'd model: what it gives for one jet of padding only."""
    from .spec_batch import SpecBatch

    tensors = {}
    for spec_input in model.spec.inputs:
        shape = [1, *spec_input.shape(spec_input.length or spec_input.min_length)]
        tensors[spec_input.name] = np.zeros(shape, dtype=np.float32)
    (values,) = backend.infer_named([SpecBatch(jet_index=np.zeros(1, dtype=np.int64), tensors=tensors)])
    return int(values.shape[-1])


def score_with_spec(events: ak.Array, model, backend, *, collection: str = "FatJet", batch_size: int | None = None,
                    source: str = "<events>") -> dict[str, ak.Array]:
    """Outputs of the spec'd ``model`` (:class:`~coffea_lorentz.user_model.SpecModel`) for every jet of
    ``collection``: class name → jagged float32 [n_events][jets]; NaN for a jet without objects.

    Read (only the branches the spec's variables need) → batch (:mod:`coffea_lorentz.spec_batch`) →
    ``backend.infer_named`` → scatter → unflatten. ``batch_size``: jets per request (default: the
    backend's :meth:`~coffea_lorentz.infer.base.NamedBackend.request_size`).
    """
    from .spec_batch import spec_inputs

    inputs = spec_inputs(events, model.spec, collection=collection,
                         batch_size=batch_size or backend.request_size(), source=source)
    outputs = backend.infer_named(inputs) if len(inputs) else []
    values = inputs.scatter(outputs) if outputs else np.full((inputs.total_jets, output_size(model, backend)), np.nan,
                                                             dtype=np.float32)
    if model.spec.softmax:
        shifted = np.exp(values - values.max(axis=1, keepdims=True))
        values = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
    names = model.class_names(values.shape[1])
    return {name: unflatten(np.ascontiguousarray(values[:, index]), inputs.n_jets) for index, name in enumerate(names)}
