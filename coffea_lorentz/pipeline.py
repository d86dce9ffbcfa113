"""One chunk through the whole flow: read → batch → infer → unflatten, every model in one pass.

To the pipeline a tagger of the zoo, a reweighter and a model you bring are the same thing, a
:class:`ScoredModel`: an **input** builder (:class:`ZooInput`: constituents truncated and bucketed
into ``p4`` + ``mask``; :class:`SpecInput`: the named tensors of a model spec), a **backend** that
runs it (in-process or on a Triton server) and a **head** that turns its per-jet outputs into
branches (:class:`ScoreHead`: the signal probability; :class:`ClassHead`: one branch per class;
``reweighter.WeightHead``: w = f/(1 − f) per jet and per event). :func:`score_events` runs any
list of them over one chunk:

- one read: the chunk's inputs (:class:`ChunkInputs`) read each column once — the constituents
  of the collection for every zoo model, each spec's objects and variables — and models with the
  same batching share one set of batches;
- every read and batch plan happens before the first request, so a missing branch stops the chunk
  before anything is sent;
- all backends that wait on a server (``remote``) run in a thread each, so the requests of every
  Triton-served model — taggers, reweighters and models you bring — are in flight together;
  in-process backends run one after another in the calling thread meanwhile (torch's thread count
  is process-wide); a backend given twice with the same inputs is called once; Ctrl-C or SIGTERM
  does not wait for requests in flight;
- padding and sending overlap: zoo batches are planned at once but padded on first use
  (:class:`~coffea_lorentz.batch.LazyBatches`), spec tensors are filled when a batch is taken, so
  later batches are built while earlier requests are in flight;
- each model's outputs go back to their jets as soon as its last answer is in.

:func:`tag_events` (taggers → ``<tagger>_score``), :func:`score_with_spec` (a model you bring →
its classes) and :func:`coffea_lorentz.reweighter.reweight_events` are this pass with one kind of
model. Reading is not split into parts that overlap inference: NanoEvents reads a whole column of
the chunk on first access, so the first part would pay for reading nearly all of it.
(``bench/bench_pipeline.py`` times every stage.)
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import awkward as ak
import numpy as np

from .batch import BatchConfig, LazyBatches, plan_batches, scatter, unflatten
from .infer.base import Backend
from .read import JetConstituents, jet_constituents

__all__ = ["TaggedChunk", "ScoredChunk", "ScoredModel", "ChunkInputs", "ZooInput", "SpecInput", "Head", "ScoreHead",
           "ClassHead", "score_events", "tag_events", "score_branch", "score_with_spec", "output_size",
           "resolved_batch_config"]


def score_branch(tagger: str) -> str:
    """Name of the per-jet score field of ``tagger`` (written as ``<Collection>_<tagger>_score``, e.g.
    ``FatJet_lloca_score``)."""
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



# -- the chunk's inputs, each read once ------------------------------------------------------------
class ChunkInputs:
    """What the models of one pass read from one chunk, each read (and each batching planned) once.

    Args:
        events: one chunk of coffea NanoEvents (``PFNanoAODSchema``), eager or virtual.
        collection: the jets scored (``"FatJet"``, ``"Jet"``, …; the collection needs ``<C>PFCands``).
        source: names the input in error messages (a file and entry range, say).
        jets: the collection's constituents when already read (:func:`~coffea_lorentz.read.jet_constituents`).
    """

    def __init__(self, events: ak.Array, *, collection: str = "FatJet", source: str = "<events>",
                 jets: JetConstituents | None = None):
        self.events = events
        self.collection = str(collection)
        self.source = source
        self._jets = jets
        self._batches: dict[BatchConfig, LazyBatches] = {}
        self._objects: dict[tuple[str, tuple[str, ...]], object] = {}
        self._spec_inputs: dict[tuple[int, int], object] = {}

    @property
    def jets(self) -> JetConstituents:
        """The constituents of every jet of the collection (read on first access, then kept)."""
        if self._jets is None:
            self._jets = jet_constituents(self.events, source=self.source, collection=self.collection)
        return self._jets

    def batches(self, config: BatchConfig) -> LazyBatches:
        """The zoo's batches (``p4`` [B, N, 4] GeV + ``mask`` [B, N]) for ``config``, planned once per
        config and padded on first use; models batched alike share them."""
        if config not in self._batches:
            self._batches[config] = LazyBatches(self.jets, plan_batches(self.jets, config))
        return self._batches[config]

    def objects(self, kind: str, names: Sequence[str]):
        """:class:`~coffea_lorentz.features.JetObjects` of ``kind`` (``"PFCands"``, ``"SV"``) for the
        variables ``names``, read once per (kind, variables)."""
        from .features import read_objects

        key = (kind, tuple(sorted(names)))
        if key not in self._objects:
            self._objects[key] = read_objects(self.events, self.collection, kind, list(names), source=self.source)
        return self._objects[key]

    def spec_inputs(self, spec, batch_size: int):
        """:class:`~coffea_lorentz.spec_batch.SpecInputs` of the model spec ``spec``, cut into batches
        of at most ``batch_size`` jets (filled when a batch is taken)."""
        from .spec_batch import SpecInputs

        key = (id(spec), int(batch_size))
        if key not in self._spec_inputs:
            kinds = dict.fromkeys(spec_input.objects for spec_input in spec.inputs)
            objects = {kind: self.objects(kind, spec.variables(kind)) for kind in kinds}
            # the spec is kept beside its inputs, so its id cannot be reused while the key is in use
            self._spec_inputs[key] = (spec, SpecInputs(objects, spec, int(batch_size)))
        return self._spec_inputs[key][1]


# -- inputs: what a model takes --------------------------------------------------------------------
def resolved_batch_config(batch_config: BatchConfig, backends) -> BatchConfig:
    """``batch_config`` with a None ``max_batch_size`` set to the smallest
    :meth:`~coffea_lorentz.infer.base.Backend.request_size` of ``backends`` (a Triton-served tagger:
    the served ``max_batch_size``); unchanged when it has one or there are no backends."""
    backends = list(backends)
    if batch_config.max_batch_size is not None or not backends:
        return batch_config
    return dataclasses.replace(batch_config, max_batch_size=min(backend.request_size() for backend in backends))


@dataclass(frozen=True)
class ZooInput:
    """The zoo's contract: each jet's leading-pT constituents (``batch_config.max_constituents``),
    bucketed and padded into ``p4`` [B, N, 4] (E, px, py, pz) GeV + ``mask`` [B, N] bool; the output
    is the probability of ``signal_class``, float32 [n_jets] (NaN for a jet without constituents).

    A ``batch_config`` without ``max_batch_size`` takes the backend's request size.
    """

    batch_config: BatchConfig = BatchConfig()
    signal_class: int = 1

    def prepare(self, chunk: ChunkInputs, backend: Backend) -> LazyBatches:
        return chunk.batches(resolved_batch_config(self.batch_config, [backend]))

    def infer(self, backend: Backend, batches: LazyBatches, chunk: ChunkInputs) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [total_jets] probabilities, int64 [n_events] jets per event)."""
        jets = chunk.jets
        if not len(batches):
            return np.full(jets.total_jets, np.nan, dtype=np.float32), jets.n_jets
        return scatter(batches, backend.infer_batches(batches), jets.total_jets)[:, self.signal_class], jets.n_jets


@dataclass(frozen=True)
class SpecInput:
    """A model's own spec (:class:`~coffea_lorentz.user_model.SpecModel`): its named tensors built
    by :mod:`coffea_lorentz.spec_batch`; the output is float32 [n_jets, K] (the spec's softmax
    applied when it asks for one; NaN rows for jets without objects).

    ``batch_size``: jets per request (None: the backend's
    :meth:`~coffea_lorentz.infer.base.NamedBackend.request_size`).
    """

    model: object
    batch_size: int | None = None

    def prepare(self, chunk: ChunkInputs, backend):
        return chunk.spec_inputs(self.model.spec, self.batch_size or backend.request_size())

    def infer(self, backend, inputs, chunk: ChunkInputs) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [total_jets, K] outputs, int64 [n_events] jets per event)."""
        outputs = backend.infer_named(inputs) if len(inputs) else []
        values = inputs.scatter(outputs) if outputs else np.full((inputs.total_jets, output_size(self.model, backend)),
                                                                 np.nan, dtype=np.float32)
        if self.model.spec.softmax:
            shifted = np.exp(values - values.max(axis=1, keepdims=True))
            values = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
        return values, inputs.n_jets


# -- heads: outputs → branches ---------------------------------------------------------------------
class Head(Protocol):
    """Turns one model's per-jet outputs into branches."""

    def branches(self, name: str, values: np.ndarray, n_jets: np.ndarray
                 ) -> tuple[dict[str, ak.Array], dict[str, np.ndarray]]:
        """(jet field → jagged float32 [n_events][jets], event branch → [n_events]) of model ``name``
        from ``values`` [total_jets] or [total_jets, K] and ``n_jets`` int64 [n_events]."""


@dataclass(frozen=True)
class ScoreHead:
    """A tagger's score: ``<name>_score`` per jet (written ``<Collection>_<name>_score``)."""

    def branches(self, name: str, values: np.ndarray, n_jets: np.ndarray):
        return {score_branch(name): unflatten(values, n_jets)}, {}


@dataclass(frozen=True)
class ClassHead:
    """One field per class, ``<name>_<class>`` (``prefix`` False: ``<class>``), class names from the
    model (:meth:`~coffea_lorentz.user_model.SpecModel.class_names`)."""

    model: object
    prefix: bool = True

    def branches(self, name: str, values: np.ndarray, n_jets: np.ndarray):
        labels = self.model.class_names(values.shape[1])
        return {(f"{name}_{label}" if self.prefix else label): unflatten(np.ascontiguousarray(values[:, index]), n_jets)
                for index, label in enumerate(labels)}, {}


@dataclass(frozen=True)
class ScoredModel:
    """One model of a pass: its ``input`` (:class:`ZooInput` or :class:`SpecInput`), the ``backend``
    that runs it (a :class:`~coffea_lorentz.infer.base.Backend` for the zoo's input, a
    :class:`~coffea_lorentz.infer.base.NamedBackend` for a spec's) and its ``head`` (:class:`Head`).
    ``name`` is unique within a pass."""

    name: str
    input: ZooInput | SpecInput
    backend: object
    head: Head = ScoreHead()


@dataclass(frozen=True)
class ScoredChunk:
    """What one pass gave for one chunk.

    Attributes:
        inputs: the chunk's inputs (``inputs.jets``: the constituents, read when a zoo model ran or
            when first asked for).
        values: model name → its per-jet outputs, float32 [total_jets] or [total_jets, K].
        jet_branches: jet field → jagged [n_events][jets], in the models' order.
        event_branches: branch → [n_events].
    """

    inputs: ChunkInputs
    values: dict[str, np.ndarray] = field(default_factory=dict)
    jet_branches: dict[str, ak.Array] = field(default_factory=dict)
    event_branches: dict[str, np.ndarray] = field(default_factory=dict)


def score_events(events: ak.Array | None, models: Sequence[ScoredModel], *, collection: str = "FatJet",
                 source: str = "<events>", jets: JetConstituents | None = None,
                 inputs: ChunkInputs | None = None) -> ScoredChunk:
    """Every model of ``models`` over one chunk, in one pass (see the module docstring).

    ``inputs``: the chunk's :class:`ChunkInputs` when the caller made them (then ``events``,
    ``collection``, ``source`` and ``jets`` are theirs). When several models fail, the first one's
    error (in ``models`` order) is raised after the others have finished.
    """
    names = [model.name for model in models]
    if len(set(names)) != len(names):
        from .errors import InvalidInputError

        raise InvalidInputError(f"score_events: model names must be distinct, got {names}")
    chunk = inputs or ChunkInputs(events, collection=collection, source=source, jets=jets)
    prepared = [model.input.prepare(chunk, model.backend) for model in models]  # every read, before any request
    calls: dict[tuple, tuple[str, bool, Callable[[], tuple[np.ndarray, np.ndarray]]]] = {}
    keys = []
    for model, ready in zip(models, prepared):
        key = (id(model.backend), id(ready), model.input)  # one backend given twice with one input: one call
        keys.append(key)
        if key not in calls:
            calls[key] = (model.name, bool(getattr(model.backend, "remote", False)),
                          _bound(model.input.infer, model.backend, ready, chunk))
    results = _run_together(calls)
    scored = ScoredChunk(inputs=chunk)
    for model, key in zip(models, keys):
        values, n_jets = results[key]
        scored.values[model.name] = values
        jet_branches, event_branches = model.head.branches(model.name, values, n_jets)
        scored.jet_branches.update(jet_branches)
        scored.event_branches.update(event_branches)
    return scored


def _bound(function: Callable, *args) -> Callable[[], object]:
    return lambda: function(*args)


def _run_together(calls: Mapping[object, tuple[str, bool, Callable[[], object]]]) -> dict:
    """Run every call of ``calls`` (key → (label, remote, call)): remote ones each in a thread of
    their own, in-process ones in this thread meanwhile; returns key → result.

    The threads are daemon threads: a ``KeyboardInterrupt`` or ``SystemExit`` (SIGTERM) in this
    thread propagates at once, without waiting for requests still in flight. The first error, in
    ``calls`` order, is raised after every call has finished.
    """
    remote = [key for key, (_, is_remote, _) in calls.items() if is_remote]
    if len(remote) == len(calls) == 1:
        remote = []  # a lone remote call needs no thread
    results: dict = {}
    errors: dict = {}

    def run(key) -> None:
        try:
            results[key] = calls[key][2]()
        except Exception as err:  # noqa: BLE001 - raised below, in calls order
            errors[key] = err

    threads = [threading.Thread(target=run, args=(key,), name=f"coffea-lorentz-infer-{calls[key][0]}", daemon=True)
               for key in remote]
    for thread in threads:
        thread.start()
    for key in calls:
        if key not in remote:
            run(key)
    for thread in threads:
        thread.join()
    for key in calls:
        if key in errors:
            raise errors[key]
    return results


def _call_each(backends: Mapping[str, Backend], call: Callable[[Backend], np.ndarray]) -> dict[str, np.ndarray]:
    """``call(backend)`` for each distinct backend of ``backends`` as :func:`score_events` runs its
    models (remote ones together); returns tagger name → result."""
    calls = {id(backend): (tagger, backend.remote, _bound(call, backend)) for tagger, backend in backends.items()}
    results = _run_together(calls)
    return {tagger: results[id(backend)] for tagger, backend in backends.items()}


# -- the pass with one kind of model ---------------------------------------------------------------
def tag_events(events: ak.Array, backends: dict[str, Backend], *, batch_config: BatchConfig = BatchConfig(),
               source: str = "<events>", signal_class: int = 1, jets: JetConstituents | None = None,
               collection: str = "FatJet") -> TaggedChunk:
    """Score every jet of ``collection`` (default ``FatJet``) of ``events`` with each backend in
    ``backends`` (tagger name → backend): :func:`score_events` with the zoo's input and a score head.

    The scores are the same as one backend after the other. A ``batch_config`` without
    ``max_batch_size`` cuts batches at the smallest
    :meth:`~coffea_lorentz.infer.base.Backend.request_size` of the backends (a Triton-served tagger:
    the served ``max_batch_size``). When several backends fail, the first one's error (in
    ``backends`` order) is raised after the others have finished. ``jets``: the constituents of
    ``events`` when already read (:func:`~coffea_lorentz.read.jet_constituents`), so passes with
    other batchings share one read.
    """
    zoo = ZooInput(resolved_batch_config(batch_config, backends.values()), int(signal_class))
    scored = score_events(events, [ScoredModel(tagger, zoo, backend, ScoreHead()) for tagger, backend in backends.items()],
                          collection=collection, source=source, jets=jets)
    return TaggedChunk(jets=scored.inputs.jets, scores=dict(scored.jet_branches))


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

    :func:`score_events` with the model's :class:`SpecInput` and a :class:`ClassHead`: read (only
    the branches the spec's variables need) → batch (:mod:`coffea_lorentz.spec_batch`) →
    ``backend.infer_named`` → scatter → unflatten. ``batch_size``: jets per request (default: the
    backend's :meth:`~coffea_lorentz.infer.base.NamedBackend.request_size`).
    """
    scored = score_events(events, [ScoredModel(model.name, SpecInput(model, batch_size), backend,
                                               ClassHead(model, prefix=False))],
                          collection=collection, source=source)
    return dict(scored.jet_branches)
