"""Jets of a coffea fileset for training: read like ``coffea-lorentz run`` reads them, selected, split by event.

``coffea-lorentz train --fileset F.json --signal … --background …`` and ``reweight-train
--fileset F.json --nominal … --alternative …`` take their jets from here. Every input file is read
chunk by chunk with the run's own reader (:func:`coffea_lorentz.run.task.read_chunk_events` →
:func:`coffea_lorentz.read.jet_constituents`), so the constituents a model is trained on are the
ones ``run`` feeds it: each jet's leading-pT constituents, ``p4`` (E, px, py, pz) in GeV, cut to
``max_constituents``. Per chunk only the selected jets are kept (float32, truncated): memory holds
the kept jets, never a whole file.

- :class:`JetSelection` — jet pT, |η| and mass ranges (NanoAOD jet branches, GeV); jets without
  constituents are never kept.
- :class:`SplitFractions` — train / validation / test shares. A jet's split follows its event:
  a 64-bit hash of (``run``, ``luminosityBlock``, ``event``) — or of the file UUID and entry when
  the file has no event numbers — taken mod 100 against the fractions, so the split is the same in
  every rerun, on any machine, whatever the chunking or file order.
- :func:`read_fileset_jets` — one class (several datasets) → :class:`FilesetJets`: a
  :class:`~coffea_lorentz.reweight.samples.JetSample` with the NanoAOD jet observables (``pt``,
  ``eta``, ``mass``, ``msoftdrop``, ``tau21``, ``tau32`` where the file has them;
  ``n_constituents`` counted by the reader), each jet's split, and a :class:`FileRecord` per file
  (name, UUID, entries, jets kept) for the training domain; with ``test_events=True`` also the
  test split's *events* (:attr:`FilesetJets.events`): each event's leading fat jet (what ``run``
  weights the event by) and its event observables, for the event-level closure of a per-jet
  reweighter.
- :func:`training_domain` — the :class:`~coffea_lorentz.reweight.domain.TrainingDomain` of the
  classes read: pT / |η| range, selection, files with UUIDs, jets per class, features.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .errors import InvalidInputError
from .progress import progress_bar
from .reweight.samples import JetSample, concatenate_samples

__all__ = ["JetSelection", "SplitFractions", "FileRecord", "FilesetJets", "SPLIT_NAMES", "event_buckets",
           "entry_buckets", "read_fileset_jets", "pad_constituents", "select_datasets", "training_domain",
           "DEFAULT_STEP", "FEATURES"]

#: The splits, in the order of their codes in :attr:`FilesetJets.split` (0, 1, 2).
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
#: Events read per chunk.
DEFAULT_STEP = 20_000
#: The per-constituent inputs of the zoo's taggers (the spec variables of a train folder), in order.
FEATURES: tuple[str, ...] = ("part_energy", "part_px", "part_py", "part_pz", "part_mask")
#: Jet-level branches read as observables (``<Collection>_<name>``) when the file has them.
_JET_FIELDS = ("pt", "eta", "mass", "msoftdrop")


@dataclass(frozen=True, kw_only=True)
class JetSelection:
    """Which jets are kept (None: no cut). A jet is kept for min ≤ value ≤ max, |η| ≤ ``max_abs_eta``.

    Attributes:
        min_pt_gev, max_pt_gev: jet pT range (``<Collection>_pt``), GeV.
        max_abs_eta: largest jet |η| (``<Collection>_eta``).
        min_mass_gev, max_mass_gev: jet mass range (``<Collection>_mass``), GeV.
    """

    min_pt_gev: float | None = None
    max_pt_gev: float | None = None
    max_abs_eta: float | None = None
    min_mass_gev: float | None = None
    max_mass_gev: float | None = None

    def __post_init__(self) -> None:
        for low, high in (("min_pt_gev", "max_pt_gev"), ("min_mass_gev", "max_mass_gev")):
            a, b = getattr(self, low), getattr(self, high)
            if a is not None and b is not None and not a < b:
                raise InvalidInputError(f"jet selection: {low} = {a} must be below {high} = {b}")
        if self.max_abs_eta is not None and not self.max_abs_eta > 0:
            raise InvalidInputError(f"jet selection: max_abs_eta must be > 0, got {self.max_abs_eta}")

    def keep(self, pt: np.ndarray, eta: np.ndarray, mass: np.ndarray) -> np.ndarray:
        """bool [n_jets]: inside the selection (``pt``, ``mass`` in GeV, each [n_jets])."""
        keep = np.ones(len(pt), dtype=bool)
        for values, low, high in ((pt, self.min_pt_gev, self.max_pt_gev), (mass, self.min_mass_gev, self.max_mass_gev)):
            if low is not None:
                keep &= values >= low
            if high is not None:
                keep &= values <= high
        if self.max_abs_eta is not None:
            keep &= np.abs(eta) <= self.max_abs_eta
        return keep

    def as_record(self) -> dict:
        """JSON-ready: the cuts set (None ones left out)."""
        return {name: value for name, value in vars(self).items() if value is not None}

    def describe(self) -> str:
        """``"pT ≥ 300 GeV, |η| ≤ 2"`` (``"all jets"`` without cuts)."""
        parts = []
        for what, low, high in (("pT", self.min_pt_gev, self.max_pt_gev), ("mass", self.min_mass_gev, self.max_mass_gev)):
            if low is not None and high is not None:
                parts.append(f"{low:g} ≤ {what} ≤ {high:g} GeV")
            elif low is not None:
                parts.append(f"{what} ≥ {low:g} GeV")
            elif high is not None:
                parts.append(f"{what} ≤ {high:g} GeV")
        if self.max_abs_eta is not None:
            parts.append(f"|η| ≤ {self.max_abs_eta:g}")
        return ", ".join(parts) or "all jets"


@dataclass(frozen=True, kw_only=True)
class SplitFractions:
    """Shares of the events in train / validation / test, whole percent (they sum to 1)."""

    train: float = 0.6
    val: float = 0.2
    test: float = 0.2

    def __post_init__(self) -> None:
        values = (self.train, self.val, self.test)
        if any(v < 0 for v in values) or abs(sum(values) - 1) > 1e-9 or self.train <= 0:
            raise InvalidInputError(f"split fractions: expected train > 0, val, test >= 0 summing to 1, got {values}")
        for name, value in zip(SPLIT_NAMES, values):
            if abs(value * 100 - round(value * 100)) > 1e-6:
                raise InvalidInputError(f"split fractions: {name} = {value} is not a whole percent")

    def codes(self, buckets: np.ndarray) -> np.ndarray:
        """int8 [n]: 0 train, 1 val, 2 test for hash buckets [n] in 0 … 99."""
        train_end = round(self.train * 100)
        val_end = train_end + round(self.val * 100)
        return np.where(buckets < train_end, 0, np.where(buckets < val_end, 1, 2)).astype(np.int8)

    def as_record(self) -> dict:
        return {"train": self.train, "val": self.val, "test": self.test,
                "by": "splitmix64 hash of (run, luminosityBlock, event), or of (file UUID, entry), mod 100"}


@dataclass(frozen=True)
class FileRecord:
    """One input file of a class: ``dataset``, ``source`` (path or URL), ROOT ``uuid``, ``entries`` read, ``jets`` kept."""

    dataset: str
    source: str
    uuid: str
    entries: int
    jets: int

    def as_record(self) -> dict:
        return {"dataset": self.dataset, "file": self.source, "uuid": self.uuid, "entries": self.entries,
                "jets": self.jets}


@dataclass(frozen=True)
class FilesetJets:
    """The kept jets of one class: ``sample`` (:class:`JetSample`), ``split`` int8 [n_jets] (0 train,
    1 val, 2 test, :data:`SPLIT_NAMES`) and the ``files`` read.

    ``events``: the events of the test split (all of them, selected jets or not), one entry per
    event, in file order — ``p4`` / ``mask`` the constituents of the event's leading fat jet (index 0
    of the collection, as ``run`` takes it; no constituents for an event without one), observables
    ``ht``, ``n_jets``, ``leading_jet_pt`` of the AK4 jets
    (:func:`~coffea_lorentz.reweight.events.event_observables`) and ``n_fat_jets``. None when not
    asked for (``test_events=False``) or when a file has no AK4 ``Jet`` collection.
    """

    sample: JetSample
    split: np.ndarray
    files: tuple[FileRecord, ...]
    events: JetSample | None = None

    def part(self, name: str) -> JetSample:
        """The jets of split ``name`` (``"train"``, ``"val"``, ``"test"``)."""
        return self.sample.subset(np.flatnonzero(self.split == SPLIT_NAMES.index(name)))

    def counts(self) -> dict[str, int]:
        """Jets per split."""
        return {name: int(np.count_nonzero(self.split == code)) for code, name in enumerate(SPLIT_NAMES)}


# -- the split hash ---------------------------------------------------------------------------------
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser of uint64 [n] (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = (values + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


def event_buckets(run: np.ndarray, luminosity_block: np.ndarray, event: np.ndarray) -> np.ndarray:
    """int64 [n] in 0 … 99: the split bucket of events with numbers (``run``, ``luminosityBlock``, ``event``) [n]."""
    h = _splitmix64(np.asarray(run).astype(np.uint64))
    h = _splitmix64(h ^ np.asarray(luminosity_block).astype(np.uint64))
    h = _splitmix64(h ^ np.asarray(event).astype(np.uint64))
    return (h % np.uint64(100)).astype(np.int64)


def entry_buckets(uuid: str, entries: np.ndarray) -> np.ndarray:
    """int64 [n] in 0 … 99: the split bucket of the ``entries`` [n] of the file with ROOT UUID ``uuid``."""
    key = np.uint64(int(uuid.replace("-", "")[:16] or "0", 16))
    h = _splitmix64(np.full(len(entries), key, dtype=np.uint64))
    h = _splitmix64(h ^ np.asarray(entries).astype(np.uint64))
    return (h % np.uint64(100)).astype(np.int64)


# -- reading -----------------------------------------------------------------------------------------
def pad_constituents(p4: np.ndarray, n_constituents: np.ndarray, max_constituents: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Flat constituents grouped jet after jet (``p4`` float32 [n_total, 4], pT-descending within a jet;
    ``n_constituents`` int [n_jets]) → p4 float32 [n_jets, N, 4] and mask bool [n_jets, N], the first
    ``max_constituents`` of each jet, N the longest kept (≥ 1), zeros after the real ones."""
    n_constituents = np.asarray(n_constituents, dtype=np.int64)
    kept = np.minimum(n_constituents, max_constituents)
    width = max(int(kept.max(initial=0)), 1)
    offsets = np.zeros(len(n_constituents), dtype=np.int64)
    np.cumsum(n_constituents[:-1], out=offsets[1:])
    mask = np.arange(width)[None, :] < kept[:, None]
    out = np.zeros((len(n_constituents), width, 4), dtype=np.float32)
    out[mask] = p4[(offsets[:, None] + np.arange(width)[None, :])[mask]]
    return out, mask


def select_datasets(fileset: Mapping[str, dict], names: Sequence[str], option: str) -> dict[str, dict]:
    """The datasets ``names`` of ``fileset`` (``{dataset: {"files": …}}``); an unknown name is refused
    with the closest ones (``option`` names the command-line option in the message)."""
    if not names:
        raise InvalidInputError(f"{option}: name at least one dataset of the fileset ({', '.join(fileset)})")
    chosen = {}
    for name in names:
        if name not in fileset:
            close = difflib.get_close_matches(name, list(fileset), n=3)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InvalidInputError(f"{option}: no dataset {name!r} in the fileset (it has {', '.join(fileset)}){hint}")
        chosen[name] = fileset[name]
    return chosen


def _flat(events: ak.Array, collection: str, field: str) -> np.ndarray | None:
    jets = events[collection]
    if field not in jets.fields:
        return None
    return np.asarray(ak.to_numpy(ak.flatten(jets[field])), dtype=np.float32)


def _gather(constituents, index: np.ndarray, counts: np.ndarray, max_constituents: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """The leading ``min(counts, max_constituents)`` constituents of the jets at ``index`` [n]
    (``counts`` int [n], 0 for no jet), padded: p4 float32 [n, N, 4], mask bool [n, N]."""
    kept = np.minimum(counts, max_constituents)
    # positions within each jet, after its first constituent
    take = np.repeat(constituents.offsets[index], kept) + (np.arange(int(kept.sum())) - np.repeat(np.cumsum(kept) - kept, kept))
    return pad_constituents(constituents.p4[take], kept, max_constituents)


def _test_events(events: ak.Array, constituents, event_split: np.ndarray, *, source: str, max_constituents: int) -> tuple[JetSample, np.ndarray] | None:
    """The test-split events of one chunk (see :attr:`FilesetJets.events`) and their indices in the
    chunk; None when the chunk has no AK4 ``Jet`` pT."""
    from .reweight.events import event_observables

    if "Jet" not in events.fields or "pt" not in events["Jet"].fields:
        return None
    chosen = np.flatnonzero(event_split == SPLIT_NAMES.index("test"))
    n_fat = constituents.n_jets[chosen]
    first = (np.cumsum(constituents.n_jets) - constituents.n_jets)[chosen]  # the leading fat jet's index
    has = n_fat > 0
    index = np.where(has, first, 0)
    counts = np.where(has, constituents.n_constituents[index] if constituents.total_jets else 0, 0)
    p4, mask = _gather(constituents, index, counts, max_constituents)
    observables = {name: values[chosen] for name, values in event_observables(events, source=source).items()}
    observables["n_fat_jets"] = n_fat.astype(np.int32)
    return JetSample(p4=p4, mask=mask, observables=observables), chosen


def _chunk_jets(events: ak.Array, *, source: str, uuid: str, entry_start: int, collection: str,
                max_constituents: int, selection: JetSelection, fractions: SplitFractions,
                test_events: bool = False
                ) -> tuple[JetSample, np.ndarray, np.ndarray, tuple[JetSample, np.ndarray] | None]:
    """The kept jets of one chunk of NanoEvents, their split codes and the chunk's index of their
    event; with ``test_events``, the test split's events and their chunk indices (None without AK4 jets)."""
    from .read import jet_constituents

    constituents = jet_constituents(events, source=source, collection=collection)
    observables = {name: _flat(events, collection, name) for name in _JET_FIELDS}
    tau = {name: _flat(events, collection, name) for name in ("tau1", "tau2", "tau3")}
    with np.errstate(divide="ignore", invalid="ignore"):
        if tau["tau1"] is not None and tau["tau2"] is not None:
            observables["tau21"] = np.where(tau["tau1"] > 0, tau["tau2"] / tau["tau1"], 0).astype(np.float32)
        if tau["tau2"] is not None and tau["tau3"] is not None:
            observables["tau32"] = np.where(tau["tau2"] > 0, tau["tau3"] / tau["tau2"], 0).astype(np.float32)
    observables = {name: values for name, values in observables.items() if values is not None}
    observables["n_constituents"] = constituents.n_constituents.astype(np.int32)

    n_total = constituents.total_jets
    pt = observables.get("pt", np.zeros(n_total, dtype=np.float32))
    eta = observables.get("eta", np.zeros(n_total, dtype=np.float32))
    mass = observables.get("mass", np.zeros(n_total, dtype=np.float32))
    needs = [name for name, cut in (("pt", selection.min_pt_gev is not None or selection.max_pt_gev is not None),
                                    ("eta", selection.max_abs_eta is not None),
                                    ("mass", selection.min_mass_gev is not None or selection.max_mass_gev is not None))
             if cut and name not in observables]
    if needs:
        raise InvalidInputError(f"{source}: the jet selection cuts on {', '.join(needs)} but the file has no "
                                f"{', '.join(f'{collection}_{n}' for n in needs)} branch")
    keep = selection.keep(pt, eta, mass) & (constituents.n_constituents > 0)

    if all(name in events.fields for name in ("run", "luminosityBlock", "event")):
        buckets = event_buckets(ak.to_numpy(events.run), ak.to_numpy(events.luminosityBlock), ak.to_numpy(events.event))
    else:
        buckets = entry_buckets(uuid, np.arange(entry_start, entry_start + constituents.n_events))
    event_split = fractions.codes(buckets)
    jet_event = np.repeat(np.arange(constituents.n_events), constituents.n_jets)[keep]
    split = event_split[jet_event]

    index = np.flatnonzero(keep)
    # only the kept jets' leading constituents are gathered
    p4, mask = _gather(constituents, index, constituents.n_constituents[index], max_constituents)
    sample = JetSample(p4=p4, mask=mask, observables={name: values[index] for name, values in observables.items()})
    held_out = (_test_events(events, constituents, event_split, source=source, max_constituents=max_constituents)
                if test_events else None)
    return sample, split, jet_event, held_out


def read_fileset_jets(
    fileset: Mapping[str, dict],
    *,
    collection: str = "FatJet",
    max_constituents: int = 128,
    selection: JetSelection = JetSelection(),
    fractions: SplitFractions = SplitFractions(),
    max_jets: int | None = None,
    step: int = DEFAULT_STEP,
    what: str = "jets",
    progress: bool = True,
    test_events: bool = False,
) -> FilesetJets:
    """The kept jets of every file of ``fileset`` (``{dataset: {"files": {source: tree}}}``, one class).

    Files are read in the fileset's order, ``step`` events at a time, with the run's reader.
    ``max_jets`` stops reading once that many jets are kept (test events after the event of the
    last kept jet are then left out too). ``what`` names the class on the progress bar (stderr).
    ``test_events``: also keep the test split's events (:attr:`FilesetJets.events`). Raises :class:`~coffea_lorentz.errors.InputFileError` /
    :class:`~coffea_lorentz.errors.MissingBranchError` naming a file that cannot be read.
    """
    from .chunk import Chunk
    from .run.fileset import _open_checked
    from .run.task import read_chunk_events

    if max_constituents < 1:
        raise InvalidInputError(f"max_constituents: expected >= 1, got {max_constituents}")
    if max_jets is not None and max_jets < 1:
        raise InvalidInputError(f"max_jets: expected >= 1 or None, got {max_jets}")
    files = [(dataset, source, tree) for dataset, spec in fileset.items() for source, tree in spec["files"].items()]
    opened = [(dataset, source, tree, *_open_checked(source, tree, collection)) for dataset, source, tree in files]
    samples, splits, records, held_out = [], [], [], []
    n_kept = 0
    with progress_bar(sum(entries for *_, entries, _ in opened), f"reading {what}", unit="events",
                      enabled=progress) as advance:
        for dataset, source, tree, entries, uuid in opened:
            file_jets = 0
            for start in range(0, entries, step):
                if max_jets is not None and n_kept >= max_jets:
                    break
                stop = min(start + step, entries)
                chunk = Chunk(dataset=dataset, source=source, treename=tree, entry_start=start, entry_stop=stop,
                              file_uuid=uuid)
                with warnings.catch_warnings():  # the same NanoEvents notices a run leaves out
                    warnings.filterwarnings("ignore", message="Missing cross-reference index")
                    warnings.filterwarnings("ignore", message="Branch .* already exists")
                    sample, split, jet_event, chunk_events = _chunk_jets(
                        read_chunk_events(chunk), source=chunk.where, uuid=uuid, entry_start=start,
                        collection=collection, max_constituents=max_constituents, selection=selection,
                        fractions=fractions, test_events=test_events)
                if max_jets is not None and n_kept + len(sample) > max_jets:
                    room = max_jets - n_kept
                    sample, split = sample.subset(np.arange(room)), split[:room]
                    if chunk_events is not None:
                        chunk_events = (chunk_events[0].subset(np.flatnonzero(chunk_events[1] <= jet_event[room - 1])),
                                        None)
                held_out.append(chunk_events[0] if chunk_events is not None else None)
                samples.append(sample)
                splits.append(split)
                n_kept += len(sample)
                file_jets += len(sample)
                advance(stop - start)
            records.append(FileRecord(dataset=dataset, source=source, uuid=uuid, entries=entries, jets=file_jets))
    if n_kept == 0:
        raise InvalidInputError(f"{what}: no jet of {', '.join(fileset)} passes the selection ({selection.describe()}) "
                                "with at least one constituent")
    events = (concatenate_samples(held_out) if test_events and held_out and all(e is not None for e in held_out)
              else None)
    return FilesetJets(sample=concatenate_samples(samples), split=np.concatenate(splits), files=tuple(records),
                       events=events)


def training_domain(classes: Mapping[str, FilesetJets], *, collection: str, max_constituents: int,
                    selection: JetSelection, features: Sequence[str] = FEATURES):
    """The :class:`~coffea_lorentz.reweight.domain.TrainingDomain` of the jets of ``classes`` (class
    name → its jets): their pT and |η| range, the ``selection``, every file (with its class), the
    training jets per class and the ``features``."""
    from .reweight.domain import domain_of_samples

    jets = "FatJet anti-kT R=0.8" if collection == "FatJet" else collection
    files = tuple(record.as_record() | {"class": name} for name, part in classes.items() for record in part.files)
    datasets = {name: sorted({record.dataset for record in part.files}) for name, part in classes.items()}
    sample = "; ".join(f"{name}: {', '.join(names)}" for name, names in datasets.items())
    return domain_of_samples([part.sample for part in classes.values()], jets=jets, sample=sample,
                             max_constituents=max_constituents, selection=selection.as_record(), files=files,
                             class_balance={name: len(part.sample) for name, part in classes.items()},
                             features=tuple(features))
