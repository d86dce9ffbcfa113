"""A chunk and the settings its file records: plain data the processor and the run model share.

A :class:`Chunk` is one entry range of one input file of one dataset; its output file name comes
from exactly those three things (:func:`coffea_lorentz.write.chunk_path`). :class:`RunSettings` is
what must agree between the chunks of one output folder (taggers, the served models' SHA-256,
truncation and buckets, chunk size). Both live here, beside the writer and below the run model,
so the coffea processor that writes a chunk needs nothing of :mod:`coffea_lorentz.run`;
:mod:`coffea_lorentz.run.chunks` re-exports them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .write import chunk_path

__all__ = ["Chunk", "RunSettings", "METADATA_FORMAT", "FIGURES_KEY"]

#: Version of the layout of the metadata record in each chunk file (2: with the content checksum;
#: files of format 1 do not verify and are redone).
METADATA_FORMAT = 2
#: Key, in a chunk file's metadata record, of the chunk's figures (what a run's summary adds up over
#: chunks: non-finite inputs, jets outside each reweighter's training domain, each reweighter's weight
#: sums), so that a resumed run reads them for the chunks it skips; files of older versions have none.
FIGURES_KEY = "figures"


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

    def metadata(self, settings: "RunSettings", figures: dict | None = None) -> dict:
        """The record stored in this chunk's file; ``figures`` (JSON numbers, lists and dicts), when
        given, under :data:`FIGURES_KEY`."""
        record = {
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
        if figures is not None:
            record[FIGURES_KEY] = figures
        return record


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
        collection: the jets scored (``"FatJet"``, ``"Jet"``, …): every per-jet branch is
            ``<collection>_<name>``, counted by ``n<collection>``.
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
    collection: str = "FatJet"
    backend: str = "triton"
    version: str = ""

    #: Fields that must be equal for two runs to share an output folder.
    COMPARED = ("taggers", "model_sha256", "max_constituents", "buckets", "chunksize", "copy_branches", "reweighters",
                "models", "collection")

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
        return ([f"{self.collection}_{tagger}_score" for tagger in self.taggers]
                + [f"{self.collection}_{name}_{label}" for name, classes in self.models for label in classes])

    @property
    def weight_branches(self) -> list[str]:
        """Every per-jet weight branch a chunk file holds: ``<collection>_weight_<name>`` per reweighter."""
        return [f"{self.collection}_weight_{name}" for name in self.reweighters]

    def differences(self, other: dict) -> list[str]:
        """Human-readable differences between these settings and a stored ``other`` record."""
        mine = self.to_json()
        found = []
        for name in self.COMPARED:
            theirs = other.get(name, {"copy_branches": [], "reweighters": [], "models": {}, "collection": "FatJet"}.get(name))
            if theirs != mine[name]:
                found.append(f"{name}: {_short(theirs)} there, {_short(mine[name])} now")
        return found


def _short(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {str(v)[:12]}" for k, v in value.items()) + "}"
    return repr(value)
