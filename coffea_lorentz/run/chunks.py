"""Chunks: the unit of work of a run, what a finished chunk file must hold, and what a chunk did.

A :class:`Chunk` is one entry range of one input file of one dataset. Its output file name comes
from exactly those three things (:func:`coffea_lorentz.write.chunk_path`), so rerunning the same
fileset names the same files and a chunk is *done* when its file exists at the destination, holds
one row per input entry and carries a metadata record that matches the request
(:func:`check_chunk_file`; before a chunk is skipped, every value of its file is read and checked
against the checksum written with it). :class:`RunSettings` is what must agree between the chunks of one output
folder (taggers, the served models' SHA-256, truncation and buckets, chunk size).
:class:`ChunkRecord` is what one chunk did: done, skipped (found done) or failed with a one-line reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..chunk import FIGURES_KEY, METADATA_FORMAT, Chunk, RunSettings
from ..write import CONTENT_KEY, content_sha256, read_chunk_metadata
from .fileset import InputFile

__all__ = ["Chunk", "RunSettings", "ChunkRecord", "ChunkFileCheck", "plan_chunks", "verify_chunk", "check_chunk_file",
           "METADATA_FORMAT", "FIGURES_KEY", "figure_fields"]

#: How many affected entries a record names.
NAMED_ENTRIES = 5


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
        sha256, n_bytes: SHA-256 and size of the chunk file's bytes as the worker read them back
            ("" and 0 when failed); the manifest lists them.
        retries, retry_wait_s: tries the Triton client retried during the chunk, and seconds it
            waited on an unavailable or busy (rate-limited, RESOURCE_EXHAUSTED) server.
        outside_domain: reweighter → jets outside its training domain
            (:func:`coffea_lorentz.reweight.domain.outside_domain_counts`).
        weights: reweighter → sums of its per-event weights (events, Σw, Σw², clipped;
            :func:`coffea_lorentz.reweight.diagnostics.event_weight_counts`).
        figures_stored: whether ``nonfinite_*``, ``outside_domain`` and ``weights`` are the chunk's:
            False for a chunk found done in a file of an older version, whose metadata record has no
            figures (:data:`FIGURES_KEY`); a skipped chunk's figures are read from its file's record.
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
    sha256: str = ""
    n_bytes: int = 0
    retries: int = 0
    retry_wait_s: float = 0.0
    outside_domain: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    figures_stored: bool = True

    @property
    def ok(self) -> bool:
        return self.status in ("done", "skipped")


def figure_fields(chunk: Chunk, figures: dict) -> dict:
    """:class:`ChunkRecord` fields from a chunk's figures (what the processor returns, or the
    :data:`FIGURES_KEY` of its file's metadata record): ``nonfinite_jets``, ``nonfinite_entries``
    (entries of the input file: the figures' chunk-relative ``nonfinite_events`` + the chunk's first
    entry), ``outside_domain`` and ``weights``."""
    events = list(figures.get("nonfinite_events", []))[:NAMED_ENTRIES]
    return {"nonfinite_jets": int(figures.get("nonfinite_jets", 0)),
            "nonfinite_entries": [chunk.entry_start + int(i) for i in events],
            "outside_domain": dict(figures.get("outside_domain", {})), "weights": dict(figures.get("weights", {}))}


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


@dataclass(frozen=True, kw_only=True)
class ChunkFileCheck:
    """What :func:`check_chunk_file` found: ``done``, else ``why_not``; ``n_bytes``, the file's size
    (0 when there is none); with the file's bytes read, their ``sha256``; ``metadata``, the file's
    metadata record when it could be read (None otherwise)."""

    done: bool
    why_not: str = ""
    sha256: str = ""
    n_bytes: int = 0
    metadata: dict | None = None
    retries: int = 0
    retry_wait_s: float = 0.0


def check_chunk_file(store, chunk: Chunk, settings: RunSettings, *, content: bool = False,
                     data: bytes | None = None) -> ChunkFileCheck:
    """Whether ``chunk``'s file at ``store`` is done: present, one row per entry, matching metadata
    and, with ``content``, every value intact.

    The file's size must be where its ROOT header says it ends (``fEND``). Without ``content`` only
    the file header, the tree's entry count and the metadata record are read. With ``content`` the
    whole file is read (or ``data``, its bytes, when the caller has them already): every branch is
    decompressed and its values must hash to the record's ``content_sha256``, so a file cut short
    — even one uproot still opens — or damaged since it was written is not done.
    """
    import io

    import uproot

    if data is None and content:
        if not store.exists(chunk.path):
            return ChunkFileCheck(done=False, why_not="no file")
        data = store.read_bytes(chunk.path)
    if data is not None:
        size = len(data)
        digest = {"sha256": hashlib.sha256(data).hexdigest(), "n_bytes": size}
    else:  # one stat answers both "is it there" and "how big" (a round trip each on a remote store)
        try:
            size = store.size(chunk.path)
        except OSError:  # missing (XRootD says so with a plain OSError), or not reachable: not done
            return ChunkFileCheck(done=False, why_not="no file")
        digest = {"n_bytes": size}
    source = io.BytesIO(data) if data is not None else store.url_of(chunk.path)
    try:
        with uproot.open(source) as file:
            end = int(file.file.fEND)  # where ROOT's header says the file ends
            if end != size:
                return ChunkFileCheck(done=False, why_not=f"{size} bytes, its header says {end} (cut short)", **digest)
            metadata = read_chunk_metadata(file)
            entries = int(file["Events"].num_entries) if "Events" in file else -1
            found = content_sha256(file["Events"]) if content and entries >= 0 and metadata is not None else None
    except Exception as err:  # noqa: BLE001 - an unreadable chunk file is simply not done
        return ChunkFileCheck(done=False, why_not=f"unreadable ({type(err).__name__})", **digest)
    why_not = _why_not_done(metadata, entries, chunk, settings)
    if not why_not and content and metadata.get(CONTENT_KEY) != found:
        why_not = ("no content checksum (written by an older version)" if CONTENT_KEY not in metadata
                   else "its values differ from the checksum written with them (damaged)")
    return ChunkFileCheck(done=not why_not, why_not=why_not, metadata=metadata, **digest)


def _why_not_done(metadata: dict | None, entries: int, chunk: Chunk, settings: RunSettings) -> str:
    if metadata is None:
        return "no metadata record"
    if entries != chunk.n_events:
        return f"{entries} rows for {chunk.n_events} entries"
    expected = chunk.metadata(settings)
    for key in ("format", "dataset", "source", "entry_start", "entry_stop", "file_uuid"):
        if metadata.get(key) != expected[key]:
            return f"{key} is {metadata.get(key)!r}, expected {expected[key]!r}"
    return "; ".join(settings.differences(metadata.get("settings", {})))


def verify_chunk(store, chunk: Chunk, settings: RunSettings, *, content: bool = False) -> tuple[bool, str]:
    """``(done, why_not)`` of :func:`check_chunk_file`."""
    check = check_chunk_file(store, chunk, settings, content=content)
    return check.done, check.why_not
