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

from dataclasses import asdict, dataclass, field

from ..write import chunk_path, read_chunk_metadata
from .fileset import InputFile

__all__ = ["Chunk", "RunSettings", "ChunkRecord", "plan_chunks", "verify_chunk", "METADATA_FORMAT"]

#: Version of the layout of the metadata record in each chunk file.
METADATA_FORMAT = 1


@dataclass(frozen=True, kw_only=True)
class Chunk:
    """Entries [entry_start, entry_stop) of ``source`` in ``dataset``."""

    dataset: str
    source: str
    treename: str
    entry_start: int
    entry_stop: int
    file_uuid: str | None = None

    @property
    def path(self) -> str:
        """The output file of this chunk, relative to the output folder."""
        return chunk_path(self.dataset, self.source, self.entry_start, self.entry_stop)

    @property
    def n_events(self) -> int:
        return self.entry_stop - self.entry_start

    @property
    def where(self) -> str:
        """``source [start, stop)`` for messages."""
        return f"{self.source} entries [{self.entry_start}, {self.entry_stop})"

    def metadata(self, settings: "RunSettings") -> dict:
        """The record stored in this chunk's file."""
        return {
            "format": METADATA_FORMAT,
            "dataset": self.dataset,
            "source": self.source,
            "treename": self.treename,
            "entry_start": self.entry_start,
            "entry_stop": self.entry_stop,
            "file_uuid": self.file_uuid,
            "rows": self.n_events,
            "settings": settings.to_json(),
        }


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """What every chunk file of one output folder must agree on.

    Attributes:
        taggers: tagger names, in branch order.
        model_sha256: tagger → SHA-256 of the model that scored it (the served ``model.pt``, or the
            weights file in-process).
        max_constituents: leading-pT constituents kept per jet.
        buckets: padded lengths N in use.
        chunksize: events per chunk (fixes the entry ranges, hence the file names).
        copy_branches: globs of input branches copied into every chunk file.
        reweighters: short names of the reweighters whose weights every chunk file holds (their
            classifiers' SHA-256 are in ``model_sha256`` under ``reweight_<name>``).
        models: models brought by the user (:mod:`coffea_lorentz.user_model`), as (name, class
            names) pairs: each adds ``FatJet_<name>_<class>``; their identities are in ``model_sha256``.
        backend: ``"triton"`` or ``"torch"`` (recorded, not compared).
        version: coffea-lorentz version (recorded, not compared).
    """

    taggers: tuple[str, ...]
    model_sha256: tuple[tuple[str, str], ...]
    max_constituents: int
    buckets: tuple[int, ...]
    chunksize: int
    copy_branches: tuple[str, ...] = ()
    reweighters: tuple[str, ...] = ()
    models: tuple[tuple[str, tuple[str, ...]], ...] = ()
    backend: str = "triton"
    version: str = ""

    #: Fields that must be equal for two runs to share an output folder.
    COMPARED = ("taggers", "model_sha256", "max_constituents", "buckets", "chunksize", "copy_branches", "reweighters",
                "models")

    def to_json(self) -> dict:
        record = asdict(self)
        record["taggers"] = list(self.taggers)
        record["model_sha256"] = dict(self.model_sha256)
        record["buckets"] = list(self.buckets)
        record["copy_branches"] = list(self.copy_branches)
        record["reweighters"] = list(self.reweighters)
        record["models"] = {name: list(classes) for name, classes in self.models}
        return record

    @property
    def score_branches(self) -> list[str]:
        """Every per-jet score branch a chunk file holds: the taggers', then each model's classes."""
        return ([f"FatJet_{tagger}_score" for tagger in self.taggers]
                + [f"FatJet_{name}_{label}" for name, classes in self.models for label in classes])

    def differences(self, other: dict) -> list[str]:
        """Human-readable differences between these settings and a stored ``other`` record."""
        mine = self.to_json()
        found = []
        for name in self.COMPARED:
            theirs = other.get(name, {"copy_branches": [], "reweighters": [], "models": {}}.get(name))
            if theirs != mine[name]:
                found.append(f"{name}: {_short(theirs)} there, {_short(mine[name])} now")
        return found


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {str(v)[:12]}" for k, v in value.items()) + "}"
    return repr(value)


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
        outside_domain: reweighter → jets outside its training domain
            (:func:`coffea_lorentz.reweight.domain.outside_domain_counts`; empty when skipped).
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
    outside_domain: dict = field(default_factory=dict)

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
