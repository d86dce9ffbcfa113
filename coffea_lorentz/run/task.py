"""The task a worker runs for one chunk: skip it if done, else read, score, write — and never raise.

:class:`ChunkJob` is a small picklable callable; a run maps it over its chunks on Dask (or calls it
in-process). For each :class:`~coffea_lorentz.run.chunks.Chunk` it returns a
:class:`~coffea_lorentz.run.chunks.ChunkRecord`:

1. the chunk's output file is checked first (before the input is opened); a file that verifies,
   every value of it read and checked against the checksum written with it, makes the chunk
   ``"skipped"`` (a file cut short or damaged is redone);
2. otherwise the entry range is read with coffea's ``NanoEventsFactory`` and handed to the
   coffea processor (:class:`coffea_lorentz.processors.tagger.TaggerProcessor`), which scores and writes it;
3. any exception becomes a ``"failed"`` record with a one-line reason and the traceback, so one
   bad chunk never stops the others (with ``fail_fast`` the exception is raised instead).
"""

from __future__ import annotations

import hashlib
import time
import traceback
import warnings
from dataclasses import dataclass

from ..errors import one_line
from ..store import OutputStore
from .chunks import FIGURES_KEY, Chunk, ChunkRecord, RunSettings, check_chunk_file, figure_fields
from .histograms import fill_scores

__all__ = ["ChunkJob", "read_chunk_events"]

#: What uproot and zlib/lz4 say about input bytes that are missing or damaged.
_DAMAGED_INPUT = ("expected Chunk of length", "decompress", "invalid block type", "incorrect header check",
                  "invalid distance", "invalid stored block")


def _failure_reason(error: BaseException) -> str:
    """One line for a failed chunk; an input damaged or cut short in the chunk's range says what to do first."""
    text = one_line(error)
    if any(sign in text for sign in _DAMAGED_INPUT):
        return f"input damaged or cut short in this range: replace the file (copy it again) and rerun; {text}"
    return text


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
        served: the specs (:class:`~coffea_lorentz.infer.BackendSpec`) of the Triton-served models the
            processor calls; their clients' retries and waits during a chunk go into its record.
    """

    processor: object
    store: OutputStore
    settings: RunSettings
    fail_fast: bool = False
    served: tuple = ()

    def _retry_counts(self) -> tuple[int, float]:
        """``(retries, waited_s)`` of this process's clients of :attr:`served` so far."""
        if not self.served:
            return 0, 0.0
        from ..infer import process_backend

        retries, waited_s = 0, 0.0
        for spec in self.served:
            counts = getattr(process_backend(spec), "retry_counts", None)
            if counts is not None:
                more, longer = counts()
                retries, waited_s = retries + more, waited_s + longer
        return retries, waited_s

    def __call__(self, chunk: Chunk) -> ChunkRecord:
        retries, waited_s = self._retry_counts()
        record = self._run(chunk)
        after = self._retry_counts()
        record.retries, record.retry_wait_s = after[0] - retries, after[1] - waited_s
        return record

    def _histograms(self, chunk: Chunk, data: bytes) -> dict:
        """Score (and weight) histograms of ``chunk``, from its file's bytes ``data``."""
        import io

        import uproot

        branches = self.settings.score_branches
        weights = self.settings.weight_branches
        with uproot.open(io.BytesIO(data)) as file:
            arrays = file["Events"].arrays(branches + weights, library="ak")
        return fill_scores(chunk.dataset, {branch: arrays[branch] for branch in branches},
                           {branch: arrays[branch] for branch in weights})

    def _found_done(self, chunk: Chunk) -> ChunkRecord | None:
        """A ``"skipped"`` record when ``chunk``'s file is there and whole (every value read and checked
        against the checksum written with it), else None: the chunk is (re)done. The record carries the
        figures stored in the file's metadata record (none in a file of an older version: ``figures_stored`` False)."""
        if not self.store.exists(chunk.path):
            return None
        data = self.store.read_bytes(chunk.path)
        check = check_chunk_file(self.store, chunk, self.settings, content=True, data=data)
        if not check.done:
            return None
        figures = (check.metadata or {}).get(FIGURES_KEY)
        return ChunkRecord(chunk=chunk, status="skipped", rows=chunk.n_events, histograms=self._histograms(chunk, data),
                           sha256=check.sha256, n_bytes=check.n_bytes, figures_stored=isinstance(figures, dict),
                           **(figure_fields(chunk, figures) if isinstance(figures, dict) else {}))

    def _run(self, chunk: Chunk) -> ChunkRecord:
        started = time.perf_counter()
        try:
            found = self._found_done(chunk)
            if found is not None:
                found.wall_s = time.perf_counter() - started
                return found
            with warnings.catch_warnings():
                # NanoAOD files without every cross-reference index make coffea warn per chunk.
                warnings.filterwarnings("ignore", message="Missing cross-reference index")
                warnings.filterwarnings("ignore", message="Branch .* already exists")
                events = read_chunk_events(chunk)
                result = self.processor.process(events)
        except Exception as err:  # noqa: BLE001 - every failure of a chunk is recorded, not raised
            if self.fail_fast:
                raise
            return ChunkRecord(chunk=chunk, status="failed", reason=_failure_reason(err),
                               detail=traceback.format_exc(), wall_s=time.perf_counter() - started)
        try:
            data = self.store.read_bytes(chunk.path)
            histograms = self._histograms(chunk, data)
        except Exception as err:  # noqa: BLE001 - the chunk file was just written; failing to read it back fails the chunk
            if self.fail_fast:
                raise
            return ChunkRecord(chunk=chunk, status="failed", reason=f"written file unreadable: {one_line(err)}",
                               detail=traceback.format_exc(), wall_s=time.perf_counter() - started)
        return ChunkRecord(
            histograms=histograms, sha256=hashlib.sha256(data).hexdigest(), n_bytes=len(data),
            chunk=chunk, status="done", rows=int(result.get("events", 0)), jets=int(result.get("jets", 0)),
            constituents=int(result.get("constituents", 0)), wall_s=time.perf_counter() - started,
            **figure_fields(chunk, result),
        )
