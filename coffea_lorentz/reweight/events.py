"""Events as sets of four-momenta: what an event-level reweighter's classifier sees, in training and
in a run alike.

An event-level reweighter (``level: "event"`` in its record) scores each event once: its
classifier — one of the zoo's Lorentz-invariant taggers, like a per-jet reweighter's — takes the
event's objects as ``p4`` [B, N, 4] (E, px, py, pz) GeV + ``mask`` [B, N], and
w = f/(1 − f) becomes the event's ``weight_<name>`` (no per-jet branch). Which objects
(:data:`EVENT_OBJECTS`):

- ``"pfcands"``: every PF candidate of the event (``PFCands_{pt,eta,phi,mass}``);
- ``"jets"``: the event's AK4 jets (``Jet``), electrons and muons (``Electron``, ``Muon``, when
  the file has them) and the missing transverse momentum (``MET``, when the file has it) as a
  four-vector with p_z = 0, E = |p_T|.

In both, objects are sorted by pT (descending) and the classifier keeps the leading
``max_objects``; objects with a non-finite value are dropped. :func:`event_objects` builds them as
a :class:`~coffea_lorentz.read.JetConstituents` with one "jet" per event, so the pipeline's
batching (:mod:`coffea_lorentz.batch`) and every backend — in-process or Triton — serve it
unchanged, and :func:`read_event_sample` (training) calls the same function on the same NanoEvents
as ``run`` does: the inputs of training and of a run are identical by construction.

:func:`event_observables` gives the event observables of the closure test (HT, jet multiplicity,
leading-jet pT). numpy and awkward; coffea's NanoEvents is imported when files are read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from ..batch import BatchConfig, LazyBatches, plan_batches, scatter
from ..errors import InputFileError, InvalidInputError, MissingBranchError
from ..read import JetConstituents, finite_constituents, p4_from_ptetaphim
from .samples import JetSample

__all__ = ["EVENT_OBJECTS", "event_objects", "event_observables", "pad_events", "read_event_sample", "EventInput"]

#: The object choices of an event-level reweighter.
EVENT_OBJECTS: tuple[str, ...] = ("pfcands", "jets")

#: Collections with (pt, eta, phi, mass) of the ``"jets"`` choice; the first is required.
_JET_CHOICE: tuple[str, ...] = ("Jet", "Electron", "Muon")


def _check_objects(objects: str) -> None:
    if objects not in EVENT_OBJECTS:
        raise InvalidInputError(f"event objects: expected one of {list(EVENT_OBJECTS)}, got {objects!r}")


def _numpy(array) -> np.ndarray:
    return np.asarray(ak.to_numpy(array))


def _kinematics(events: ak.Array, name: str, source: str, *, required: bool) -> dict[str, ak.Array] | None:
    """``{pt, eta, phi, mass}`` jagged [events][objects] of collection ``name``; None when absent and not required."""
    fields = list(events[name].fields) if name in events.fields else []
    missing = [f"{name}_{f}" for f in ("pt", "eta", "phi", "mass") if f not in fields]
    if missing:
        if not required and name not in events.fields:
            return None
        raise MissingBranchError(source, missing or [f"n{name}"], "event objects need their (pt, eta, phi, mass)",
                                 available=[f"{c}_{f}" for c in events.fields for f in getattr(events[c], "fields", [])])
    collection = events[name]
    return {f: collection[f] for f in ("pt", "eta", "phi", "mass")}


def event_objects(events: ak.Array, objects: str = "pfcands", *, source: str = "<events>") -> JetConstituents:
    """The objects of every event of ``events`` (coffea NanoEvents, eager or virtual) as one set each.

    Returns a :class:`~coffea_lorentz.read.JetConstituents` with one entry per event
    (``n_jets`` = 1 for every event): ``p4`` float32 [n_objects_total, 4] (E, px, py, pz) GeV,
    pT-descending within each event, ``n_constituents`` int64 [n_events] objects per event and
    ``n_dropped`` the objects dropped for a non-finite value. Raises
    :class:`~coffea_lorentz.errors.MissingBranchError` naming ``source`` when the file lacks the
    objects' branches.
    """
    _check_objects(objects)
    n_events = len(events)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # (event, pt, eta, phi, m)
    names = ("PFCands",) if objects == "pfcands" else _JET_CHOICE
    for k, name in enumerate(names):
        columns = _kinematics(events, name, source, required=k == 0)
        if columns is None:
            continue
        counts = _numpy(ak.num(columns["pt"], axis=1)).astype(np.int64)
        flat = [_numpy(ak.flatten(columns[f])).astype(np.float64) for f in ("pt", "eta", "phi", "mass")]
        parts.append((np.repeat(np.arange(n_events, dtype=np.int64), counts), *flat))
    event = np.concatenate([p[0] for p in parts])
    pt, eta, phi, mass = (np.concatenate([p[i] for p in parts]) for i in range(1, 5))
    with np.errstate(invalid="ignore", over="ignore"):
        p4 = p4_from_ptetaphim(pt, eta, phi, mass)
    keep = finite_constituents(pt, eta, phi, mass, p4)
    if objects == "jets" and "MET" in events.fields and {"pt", "phi"} <= set(events["MET"].fields):
        met_pt = _numpy(events["MET"]["pt"]).astype(np.float64)
        met_phi = _numpy(events["MET"]["phi"]).astype(np.float64)
        met = np.stack([met_pt, met_pt * np.cos(met_phi), met_pt * np.sin(met_phi), np.zeros(n_events)], axis=1)
        event = np.concatenate([event, np.arange(n_events, dtype=np.int64)])
        pt = np.concatenate([pt, met_pt])
        p4 = np.concatenate([p4, met.astype(p4.dtype)])
        keep = np.concatenate([keep, np.isfinite(met).all(axis=1)])
    n_dropped = np.bincount(event[~keep], minlength=n_events).astype(np.int64)
    event, pt, p4 = event[keep], pt[keep], p4[keep]
    order = np.lexsort((-pt, event))
    n_objects = np.bincount(event, minlength=n_events).astype(np.int64)
    return JetConstituents(p4=np.ascontiguousarray(p4[order], dtype=np.float32), pt=pt[order].astype(np.float32),
                           n_constituents=n_objects, n_jets=np.ones(n_events, dtype=np.int64), n_dropped=n_dropped)


def event_observables(events: ak.Array, *, source: str = "<events>") -> dict[str, np.ndarray]:
    """The event observables of the closure test, float64 [n_events]: ``ht`` (Σ pT of the AK4
    ``Jet`` collection, GeV), ``n_jets`` (its multiplicity) and ``leading_jet_pt`` (GeV; 0 without jets)."""
    if "Jet" not in events.fields or "pt" not in events["Jet"].fields:
        raise MissingBranchError(source, ["Jet_pt"], "the event observables HT, n_jets, leading jet pT need AK4 jets")
    pt = events["Jet"]["pt"]
    return {
        "ht": _numpy(ak.sum(pt, axis=1)).astype(np.float64),
        "n_jets": _numpy(ak.num(pt, axis=1)).astype(np.float64),
        "leading_jet_pt": _numpy(ak.fill_none(ak.max(pt, axis=1), 0.0)).astype(np.float64),
    }


def pad_events(sets: JetConstituents, max_objects: int) -> tuple[np.ndarray, np.ndarray]:
    """The leading ``max_objects`` objects of each set, padded: (``p4`` float32 [n, W, 4], ``mask`` bool
    [n, W]), W = min(``max_objects``, the largest set), real entries first."""
    if max_objects < 1:
        raise InvalidInputError(f"pad_events: max_objects must be >= 1, got {max_objects}")
    n = sets.total_jets
    kept = np.minimum(sets.n_constituents, max_objects)
    width = max(int(kept.max(initial=0)), 1)
    position = np.arange(len(sets.p4), dtype=np.int64) - np.repeat(sets.offsets[:-1], sets.n_constituents)
    owner = np.repeat(np.arange(n, dtype=np.int64), sets.n_constituents)
    take = position < width
    p4 = np.zeros((n, width, 4), dtype=np.float32)
    mask = np.zeros((n, width), dtype=bool)
    p4[owner[take], position[take]] = sets.p4[take]
    mask[owner[take], position[take]] = True
    return p4, mask


def read_event_sample(paths: Sequence[str | Path], objects: str = "pfcands", *, max_objects: int = 128,
                      max_events: int | None = None, treename: str = "Events") -> JetSample:
    """Events of PFNano ROOT files ``paths`` as a :class:`~coffea_lorentz.reweight.samples.JetSample`
    with one entry per event: ``p4`` [n_events, W, 4] GeV and ``mask`` from :func:`event_objects`
    (the leading ``max_objects``), observables ``ht``, ``n_jets``, ``leading_jet_pt`` (when the files
    have AK4 jets) and ``n_objects`` (all objects of the event, before truncation).

    Read with coffea's NanoEvents (``PFNanoAODSchema``), as a run reads them; at most
    ``max_events`` in all, the files in order.
    """
    from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

    _check_objects(objects)
    if not paths:
        raise InvalidInputError("read_event_sample: expected at least one file, got none")
    parts: list[JetSample] = []
    remaining = max_events
    for path in paths:
        if remaining is not None and remaining <= 0:
            break
        if "://" not in str(path) and not Path(path).is_file():
            raise InputFileError(str(path), "not found (expected a PFNano ROOT file)")
        try:
            events = NanoEventsFactory.from_root({str(path): treename}, schemaclass=PFNanoAODSchema, mode="virtual",
                                                 entry_stop=remaining).events()
        except (OSError, ValueError, KeyError) as err:
            raise InputFileError(str(path), f"cannot read tree {treename!r} with NanoEvents ({err})") from err
        sets = event_objects(events, objects, source=str(path))
        p4, mask = pad_events(sets, max_objects)
        observables = {"n_objects": sets.n_constituents.astype(np.float64)}
        if "Jet" in events.fields:
            observables.update(event_observables(events, source=str(path)))
        parts.append(JetSample(p4=p4, mask=mask, observables=observables))
        if remaining is not None:
            remaining -= len(events)
    from .samples import concatenate_samples

    return concatenate_samples(parts)


@dataclass(frozen=True)
class EventInput:
    """An event-level model's input in the scoring pass (:func:`coffea_lorentz.pipeline.score_events`):
    each event's ``objects`` (:func:`event_objects`), the leading ``batch_config.max_constituents``
    kept, bucketed and padded into ``p4`` [B, N, 4] + ``mask`` [B, N] like the zoo's jets; the output
    is the probability of ``signal_class``, float32 [n_events] (NaN for an event without objects),
    with one entry per event in place of jets per event."""

    batch_config: BatchConfig = BatchConfig()
    objects: str = "pfcands"
    signal_class: int = 1

    def __post_init__(self) -> None:
        _check_objects(self.objects)

    def prepare(self, chunk, backend) -> LazyBatches:
        from ..pipeline import resolved_batch_config

        sets = event_objects(chunk.events, self.objects, source=chunk.source)
        return LazyBatches(sets, plan_batches(sets, resolved_batch_config(self.batch_config, [backend])))

    def infer(self, backend, batches: LazyBatches, chunk) -> tuple[np.ndarray, np.ndarray]:
        """(float32 [n_events] probabilities, int64 [n_events] ones)."""
        n_events = len(chunk.events)
        ones = np.ones(n_events, dtype=np.int64)
        if not len(batches):
            return np.full(n_events, np.nan, dtype=np.float32), ones
        return scatter(batches, backend.infer_batches(batches), n_events)[:, self.signal_class], ones
