"""A coffea processor that adds ``FatJet_<tagger>_score`` for one or more taggers and writes it out.

Each chunk of each input file becomes one output ROOT file (see :mod:`coffea_lorentz.write`) with
``run``, ``luminosityBlock``, ``event``, ``nFatJet`` and the score branches, one row per input event.
The processor is stateless and pickles: backends are created lazily on each worker.

Usage with coffea's Runner::

    from coffea import processor
    from coffea.nanoevents import PFNanoAODSchema
    from coffea_lorentz.infer import BackendSpec
    from processors import TaggerProcessor

    proc = TaggerProcessor(backends=[BackendSpec.make("lorentznet", kind="triton", url="localhost:8001")],
                           output_dir="staging/")
    runner = processor.Runner(processor.IterativeExecutor(), schema=PFNanoAODSchema)
    result = runner({"ttbar": {"files": {"nano.root": "Events"}}}, proc, treename="Events")
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
from coffea import processor

from coffea_lorentz.batch import BatchConfig
from coffea_lorentz.infer import BackendSpec, process_backend
from coffea_lorentz.pipeline import tag_events
from coffea_lorentz.write import write_chunk

__all__ = ["TaggerProcessor"]


class TaggerProcessor(processor.ProcessorABC):
    """Scores fat jets and writes the scores, one output file per chunk.

    Args:
        backends: one :class:`~coffea_lorentz.infer.BackendSpec` per tagger.
        output_dir: folder the chunk files are written to (a run's staging folder).
        batch_config: truncation, bucket lengths and batch size.
    """

    def __init__(self, *, backends: list[BackendSpec], output_dir: str | Path, batch_config: BatchConfig = BatchConfig()):
        self.backends = list(backends)
        self.output_dir = str(output_dir)
        self.batch_config = batch_config

    def process(self, events: ak.Array) -> dict:
        source = events.metadata.get("filename", "<events>")
        backends = {spec.tagger: process_backend(spec) for spec in self.backends}
        tagged = tag_events(events, backends, batch_config=self.batch_config, source=source)
        output = write_chunk(events, self.output_dir, jet_branches=tagged.scores)
        return tagged.summary(source, output)

    def postprocess(self, accumulator: dict) -> dict:
        return accumulator
