"""A coffea processor that adds ``FatJet_<tagger>_score`` for one or more taggers (and reweighting
weights ``FatJet_weight_<name>`` / ``weight_<name>`` for any reweighters, ``FatJet_<model>_<class>``
for models brought with a spec) and writes them out; ``collection="Jet"`` scores AK4 jets instead
(``Jet_<tagger>_score``, …).

Every model of a chunk is scored in one pass (:func:`coffea_lorentz.pipeline.score_events`): one
read of the events, each model batched with its own inputs, all served models' requests in flight
together.

Each chunk of each input file becomes one output ROOT file (see :mod:`coffea_lorentz.write`) with
``run``, ``luminosityBlock``, ``event``, ``nFatJet`` and the score branches, one row per input event,
plus a metadata record naming the input file, the entry range and the run settings, and holding the
chunk's figures (non-finite inputs, jets outside a reweighter's training domain, weight sums). The file is
written straight to the output — a local folder or an fsspec URL such as ``root://host//path`` —
under a name that depends only on (dataset, input file, entry range), so processing a chunk twice
writes the same file once. The processor is stateless and pickles: backends are created lazily
on each worker.

Usage with coffea's Runner::

    from coffea import processor
    from coffea.nanoevents import PFNanoAODSchema
    from coffea_lorentz.infer import BackendSpec
    from coffea_lorentz.processors import TaggerProcessor

    proc = TaggerProcessor(backends=[BackendSpec.make("lloca", kind="triton", url="localhost:8001")],
                           output="out/")
    runner = processor.Runner(processor.IterativeExecutor(), schema=PFNanoAODSchema)
    result = runner({"ttbar": {"files": {"nano.root": "Events"}}}, proc, treename="Events")

``coffea-lorentz run`` (:func:`coffea_lorentz.run.run_tagging`) drives the same processor with
resume, fault isolation and a completion marker.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
from coffea import processor

from ..batch import BatchConfig
from ..chunk import Chunk, RunSettings
from ..errors import InvalidInputError
from ..infer import BackendSpec, process_backend
from ..pipeline import (ChunkInputs, ClassHead, ScoredModel, ScoreHead, SpecInput, TaggedChunk, ZooInput,
                        resolved_batch_config, score_events)
from ..reweight.diagnostics import event_weight_counts
from ..reweight.domain import outside_domain_counts
from ..reweighter import ReweighterSpec, reweighter_models
from ..store import OutputStore
from ..user_model import process_model_backend
from ..write import write_chunk

__all__ = ["TaggerProcessor", "chunk_of"]


def chunk_of(events: ak.Array) -> Chunk:
    """The chunk a coffea ``events`` array was read from, from coffea's ``events.metadata``."""
    metadata = events.metadata
    start = int(metadata.get("entrystart", 0))
    return Chunk(dataset=str(metadata.get("dataset", "events")), source=str(metadata.get("filename", "<events>")),
                 treename=str(metadata.get("treename", "Events")), entry_start=start,
                 entry_stop=int(metadata.get("entrystop", start + len(events))), file_uuid=metadata.get("fileuuid"))


class TaggerProcessor(processor.ProcessorABC):
    """Scores the jets of one collection and writes the scores, one output file per chunk.

    Args:
        backends: one :class:`~coffea_lorentz.infer.BackendSpec` per tagger.
        output: where chunk files go: a local folder, an fsspec URL or an
            :class:`~coffea_lorentz.store.OutputStore`.
        batch_config: truncation, bucket lengths and batch size.
        settings: the run settings recorded in each chunk file (default: taggers and batching only).
        copy_branches: globs of input branches copied into each output file (``("FatJet_*",)``);
            default: ``settings.copy_branches``.
        reweighters: one :class:`~coffea_lorentz.reweighter.ReweighterSpec` per reweighting; each
            adds ``FatJet_weight_<name>`` (per jet) and ``weight_<name>`` (per event, the leading
            jet's). Each is batched with the constituents its classifier was trained on.
        models: (model, backend kind) pairs of models brought by the user
            (:class:`~coffea_lorentz.user_model.SpecModel`; ``"onnx"``, ``"torch"`` or None: by its
            format, in-process; ``("triton", url, client options)``: served); each adds
            ``FatJet_<name>_<class>`` per class, built from its own spec (one backend per worker
            process, :func:`~coffea_lorentz.user_model.process_model_backend`).
        collection: the jets scored, ``"FatJet"`` (default: ``settings.collection``) or any other
            collection with ``<C>PFCands`` (``"Jet"``); every per-jet branch is ``<C>_<name>``.
    """

    def __init__(self, *, backends: list[BackendSpec], output: str | Path | OutputStore | None = None,
                 batch_config: BatchConfig = BatchConfig(), settings: RunSettings | None = None,
                 output_dir: str | Path | None = None, copy_branches: tuple[str, ...] | None = None,
                 reweighters: list[ReweighterSpec] = (), models: list = (), collection: str | None = None):
        self.backends = list(backends)
        self.reweighters = list(reweighters)
        self.models = list(models)
        models = ([spec.tagger for spec in self.backends] + [spec.backend.tagger for spec in self.reweighters]
                  + [model.name for model, _ in self.models])
        if len(set(models)) != len(models) or len({spec.name for spec in self.reweighters}) != len(self.reweighters):
            raise InvalidInputError(f"{type(self).__name__}: tagger and reweighter names must be distinct, got {models}")
        target = output if output is not None else output_dir
        if target is None:
            raise TypeError("TaggerProcessor: give output= (a folder, an fsspec URL or an OutputStore)")
        self.output = target if isinstance(target, OutputStore) else OutputStore(target)
        self.batch_config = batch_config
        self.collection = str(collection or (settings.collection if settings is not None else "FatJet"))
        if settings is not None and settings.collection != self.collection:
            raise InvalidInputError(f"{type(self).__name__}: collection={self.collection!r} but the settings record "
                                    f"collection {settings.collection!r}; give one")
        self.settings = settings or RunSettings(
            taggers=tuple(spec.tagger for spec in self.backends), model_sha256=(),
            max_constituents=batch_config.max_constituents, buckets=tuple(int(n) for n in batch_config.lengths),
            chunksize=0, backend=self.backends[0].kind if self.backends else "",
            reweighters=tuple(spec.name for spec in self.reweighters if spec.level == "jet"), collection=self.collection)
        self.copy_branches = tuple(copy_branches if copy_branches is not None else self.settings.copy_branches)

    def scored_models(self) -> list[ScoredModel]:
        """The models of one chunk's scoring pass, in branch order, with this process's backends:
        the taggers (one batching, cut at their smallest request size), the models brought with a
        spec (each batched with its own spec), the reweighters (each with its own truncation)."""
        backends = {spec.tagger: process_backend(spec) for spec in self.backends}
        zoo = ZooInput(resolved_batch_config(self.batch_config, backends.values()))
        return ([ScoredModel(tagger, zoo, backend, ScoreHead()) for tagger, backend in backends.items()]
                + [ScoredModel(model.name, SpecInput(model), process_model_backend(model, kind), ClassHead(model))
                   for model, kind in self.models]
                + reweighter_models(self.reweighters, batch_config=self.batch_config))

    def process(self, events: ak.Array) -> dict:
        chunk = chunk_of(events)
        inputs = ChunkInputs(events, collection=self.collection, source=chunk.where)
        scored = score_events(events, self.scored_models(), inputs=inputs)  # one read, every request in flight
        tagged = TaggedChunk(jets=inputs.jets, scores={})  # the constituents are read for the counts in any case
        # the chunk's figures go into its file too: a resumed run that skips the chunk reads them there
        figures = {"nonfinite_jets": tagged.nonfinite_jets, "nonfinite_events": tagged.first_affected_events(),
                   "outside_domain": outside_domain_counts(events, self.reweighters, collection=self.collection,
                                                           models=[model for model, _ in self.models]),
                   "weights": event_weight_counts(scored.event_branches, self.reweighters)}
        output = write_chunk(events, self.output, jet_branches=scored.jet_branches,
                             event_branches=scored.event_branches, metadata=chunk.metadata(self.settings, figures),
                             copy_branches=self.copy_branches, collection=self.collection)
        summary = tagged.summary(chunk.source, output)
        summary.update((key, figures[key]) for key in ("nonfinite_events", "outside_domain", "weights"))
        return summary

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator
