"""Chunks: the unit of work of a run, what a finished chunk file must hold, and what a chunk did.

A :class:`Chunk` is one entry range of one input file of one dataset. Its output file name comes
from exactly those three things (:func:`coffea_lorentz.write.chunk_path`), so rerunning the same
fileset names the same files and a chunk is *done* when its file exists at the destination, holds
one row per input entry and carries a metadata record that matches the request
(:func:`verify_chunk`). :class:`RunSettings` is what must agree between the chunks of one output
folder (taggers, the served models' SHA-256, truncation and buckets, chunk size).
:class:`ChunkRecord` is what one chunk did: done, skipped (found done) or failed with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..chunk import METADATA_FORMAT, Chunk, RunSettings
from ..write import read_chunk_metadata
from .fileset import InputFile

__all__ = ["Chunk", "RunSettings", "ChunkRecord", "plan_chunks", "verify_chunk", "METADATA_FORMAT"]


@dataclass(kw_only=True)
class ChunkRecord:
    """What happened to one chunk.

    Attributes:
        chunk: the chunk.
        status: ``"done"`` (processed now), ``"skipped"`` (found done) or ``"failed"``.
        rows: event rows in the output file (0 when failed).
        jets, constituents: fat jets and constituents scored (0 when skipped or failed).
        nonfinite_jets: jets that had constituents with non-finite four-momenta (dropped).
        nonfinite_entries: the first affected entries of the input file.
        reason: one line saying why the chunk failed.
        detail: the full traceback of a failure (for the log, never the console).
        wall_s: seconds spent on the chunk by the worker.
        histograms: the chunk's score histograms (:func:`coffea_lorentz.run.histograms.fill_scores`).
    """

    chunk: Chunk
    status: str
    rows: int = 0
    jets: int = 0
    constituents: int = 0
    nonfinite_jets: int = 0
    nonfinite_entries: list[int] = field(default_factory=list)
    reason: str = ""
    detail: str = ""
    wall_s: float = 0.0
    histograms: dict | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


def plan_chunks(files: list[InputFile], chunksize: int) -> list[Chunk]:
    """Cut every usable file into chunks of at most ``chunksize`` entries (files with 0 entries give one empty chunk)."""
    chunks = []
    for info in files:
        if info.entries is None:
            continue
        starts = range(0, max(info.entries, 1), chunksize)
        for start in starts:
            stop = min(start + chunksize, info.entries)
            chunks.append(Chunk(dataset=info.dataset, source=info.source, treename=info.treename,
                                entry_start=start, entry_stop=stop, file_uuid=info.uuid))
    return chunks


def verify_chunk(store, chunk: Chunk, settings: RunSettings) -> tuple[bool, str]:
    """Whether ``chunk``'s file at ``store`` is done: present, one row per entry, matching metadata.

    Returns ``(done, why_not)``; reads only the file header, the tree's entry count and the
    metadata record.
    """
    import uproot

    if not store.exists(chunk.path):
        return False, "no file"
    try:
        with uproot.open(store.url_of(chunk.path)) as file:
            metadata = read_chunk_metadata(file)
            entries = int(file["Events"].num_entries) if "Events" in file else -1
    except Exception as err:  # noqa: BLE001 - an unreadable chunk file is simply not done
        return False, f"unreadable ({type(err).__name__})"
    if metadata is None:
        return False, "no metadata record"
    if entries != chunk.n_events:
        return False, f"{entries} rows for {chunk.n_events} entries"
    expected = chunk.metadata(settings)
    for key in ("dataset", "source", "entry_start", "entry_stop", "file_uuid"):
        if metadata.get(key) != expected[key]:
            return False, f"{key} is {metadata.get(key)!r}, expected {expected[key]!r}"
    differences = settings.differences(metadata.get("settings", {}))
    if differences:
        return False, "; ".join(differences)
    return True, ""
