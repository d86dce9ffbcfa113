"""The task a worker runs for one chunk: skip it if done, else read, score, write — and never raise.

:class:`ChunkJob` is a small picklable callable; a run maps it over its chunks on Dask (or calls it
in-process). For each :class:`~coffea_lorentz.run.chunks.Chunk` it returns a
:class:`~coffea_lorentz.run.chunks.ChunkRecord`:

1. the chunk's output file is checked first (before the input is opened); a file that verifies
   makes the chunk ``"skipped"``;
2. otherwise the entry range is read with coffea's ``NanoEventsFactory`` and handed to the
   coffea processor (:class:`coffea_lorentz.processors.tagger.TaggerProcessor`), which scores and writes it;
3. any exception becomes a ``"failed"`` record with a one-line reason and the traceback, so one
   bad chunk never stops the others (with ``fail_fast`` the exception is raised instead).
"""

from __future__ import annotations

import time
import traceback
import warnings
from dataclasses import dataclass

from ..errors import one_line
from ..store import OutputStore
from .chunks import Chunk, ChunkRecord, RunSettings, verify_chunk
from .histograms import fill_scores

__all__ = ["ChunkJob", "read_chunk_events"]

#: How many affected entries a record names.
_NAMED_ENTRIES = 5


def read_chunk_events(chunk: Chunk):
    """The chunk's events as coffea NanoEvents (PFNano schema, read lazily), with coffea's chunk metadata."""
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    metadata = {"dataset": chunk.dataset, "filename": chunk.source, "treename": chunk.treename,
                "entrystart": chunk.entry_start, "entrystop": chunk.entry_stop, "fileuuid": chunk.file_uuid}
    factory = NanoEventsFactory.from_root(
        {chunk.source: chunk.treename}, entry_start=chunk.entry_start, entry_stop=chunk.entry_stop,
        schemaclass=PFNanoAODSchema, mode="virtual", metadata=metadata,
    )
    return factory.events()


@dataclass(frozen=True, kw_only=True)
class ChunkJob:
    """Everything a worker needs to do any chunk of a run.

    Attributes:
        processor: the coffea processor that scores and writes a chunk (it must write to ``store``).
        store: the output destination.
        settings: the run's settings, checked against existing chunk files.
        fail_fast: raise the first error instead of recording it.
    """

    processor: object
    store: OutputStore
    settings: RunSettings
    fail_fast: bool = False

    def _histograms(self, chunk: Chunk) -> dict:
        """Score (and weight) histograms of ``chunk``, read back from its file at the destination."""
        import uproot

        branches = self.settings.score_branches
        weights = [f"FatJet_weight_{name}" for name in self.settings.reweighters]
        with uproot.open(self.store.url_of(chunk.path)) as file:
            arrays = file["Events"].arrays(branches + weights, library="ak")
        return fill_scores(chunk.dataset, {branch: arrays[branch] for branch in branches},
                           {branch: arrays[branch] for branch in weights})

    def __call__(self, chunk: Chunk) -> ChunkRecord:
        started = time.perf_counter()
        try:
            done, _ = verify_chunk(self.store, chunk, self.settings)
            if done:
                return ChunkRecord(chunk=chunk, status="skipped", rows=chunk.n_events,
                                   histograms=self._histograms(chunk), wall_s=time.perf_counter() - started)
            with warnings.catch_warnings():
                # NanoAOD files without every cross-reference index make coffea warn per chunk.
                warnings.filterwarnings("ignore", message="Missing cross-reference index")
                warnings.filterwarnings("ignore", message="Branch .* already exists")
                events = read_chunk_events(chunk)
                result = self.processor.process(events)
        except Exception as err:  # noqa: BLE001 - every failure of a chunk is recorded, not raised
            if self.fail_fast:
                raise
            return ChunkRecord(chunk=chunk, status="failed", reason=one_line(err),
                               detail=traceback.format_exc(), wall_s=time.perf_counter() - started)
        first = [chunk.entry_start + int(i) for i in result.get("nonfinite_events", [])[:_NAMED_ENTRIES]]
        try:
            histograms = self._histograms(chunk)
        except Exception as err:  # noqa: BLE001 - the chunk file was just written; failing to read it back fails the chunk
            if self.fail_fast:
                raise
            return ChunkRecord(chunk=chunk, status="failed", reason=f"written file unreadable: {one_line(err)}",
                               detail=traceback.format_exc(), wall_s=time.perf_counter() - started)
        return ChunkRecord(histograms=histograms, 
            chunk=chunk, status="done", rows=int(result.get("events", 0)), jets=int(result.get("jets", 0)),
            constituents=int(result.get("constituents", 0)), nonfinite_jets=int(result.get("nonfinite_jets", 0)),
            nonfinite_entries=first, wall_s=time.perf_counter() - started,
            outside_domain=dict(result.get("outside_domain", {})),
        )
