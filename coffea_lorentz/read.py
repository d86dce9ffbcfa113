"""Read: NanoAOD/PFNano events → jet constituents as flat float32 four-vectors.

Any jet collection ``C`` with PF candidates is read (``FatJet`` by default, ``Jet`` for AK4, …).
Two PFNano layouts are understood:

- the older one (e.g. the CMS sample ``pfnano.root``), where each ``CPFCands`` entry names its jet
  by ``CPFCands_jetIdx`` (used whenever the file has it: an explicit link);
- the newer one, without ``CPFCands_jetIdx``, where ``C_nConstituents`` counts each jet's entries
  in ``CPFCands`` and those entries are stored jet after jet.

In both, ``CPFCands_pFCandsIdx`` points into the event's ``PFCands``. The result is a
:class:`JetConstituents`: every constituent of every jet of every event, flattened, grouped jet
after jet (jets in event order, then in their collection's order) and sorted by pT (descending)
within a jet. Everything is vectorised numpy/awkward; there is no per-jet Python loop.

Non-finite inputs
-----------------
A constituent whose ``PFCands_pt``, ``_eta``, ``_phi`` or ``_mass`` is NaN or ±inf, or whose
four-vector (E, px, py, pz) is not finite in float32 (|η| large enough to overflow E or pz, say),
is **dropped** before the constituents are sorted and batched, and **counted** per jet in
:attr:`JetConstituents.n_dropped`; ``n_constituents`` counts only the constituents kept. So:

- a jet that loses some constituents is scored on the ones that remain, exactly as if the dropped
  ones were absent from the file;
- a jet that loses all its constituents has none left and is scored NaN, like a jet that never had
  any (see :mod:`coffea_lorentz.batch`); ``n_dropped > 0`` tells the two apart;
- no non-finite number ever reaches a tagger, so a score is never silently shifted by one.

:attr:`JetConstituents.affected_jets` and :meth:`JetConstituents.affected_events` name the jets and
events that lost constituents; :class:`coffea_lorentz.pipeline.TaggedChunk` reports their counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from .errors import InvalidInputError, MissingBranchError

__all__ = [
    "JetConstituents",
    "jet_constituents",
    "constituent_columns",
    "touch_constituent_columns",
    "p4_from_ptetaphim",
    "finite_constituents",
    "REQUIRED_BRANCHES",
]

#: Branches that any supported PFNano layout provides (``FatJet_nConstituents`` is optional).
REQUIRED_BRANCHES: tuple[str, ...] = (
    "nFatJet",
    "nFatJetPFCands",
    "FatJetPFCands_pFCandsIdx",
    "nPFCands",
    "PFCands_pt",
    "PFCands_eta",
    "PFCands_phi",
    "PFCands_mass",
)


@dataclass(frozen=True)
class JetConstituents:
    """The constituents of every jet of one collection in a chunk of events, flattened.

    Attributes:
        p4: float32 [n_constituents_total, 4] as (E, px, py, pz) in GeV, grouped jet after jet,
            sorted by pT (descending) within each jet.
        pt: float32 [n_constituents_total] transverse momentum in GeV, same order as ``p4``.
        n_constituents: int64 [n_jets] constituents of each jet that were kept; jets in event order.
        n_jets: int64 [n_events] jets of each event (``nFatJet``, or ``n<C>`` of the collection read).
        n_dropped: int64 [n_jets] constituents of each jet dropped for a non-finite (pt, η, φ, m) or
            four-vector (see the module docstring); all zeros when not given.
    """

    p4: np.ndarray
    pt: np.ndarray
    n_constituents: np.ndarray
    n_jets: np.ndarray
    n_dropped: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        n_jets_total = len(self.n_constituents)
        if self.n_dropped is None:
            object.__setattr__(self, "n_dropped", np.zeros(n_jets_total, dtype=np.int64))
            return
        n_dropped = np.asarray(self.n_dropped, dtype=np.int64)
        if n_dropped.shape != (n_jets_total,):
            raise InvalidInputError(
                f"n_dropped has shape {n_dropped.shape}; expected ({n_jets_total},), one count per jet"
            )
        object.__setattr__(self, "n_dropped", n_dropped)

    @property
    def n_events(self) -> int:
        return len(self.n_jets)

    @property
    def total_jets(self) -> int:
        return len(self.n_constituents)

    @property
    def affected_jets(self) -> np.ndarray:
        """bool [n_jets]: True for a jet that lost at least one constituent to a non-finite value."""
        return self.n_dropped > 0

    def affected_events(self) -> np.ndarray:
        """int64 [n_affected]: ascending indices, within this chunk, of events with an affected jet."""
        event_of_jet = np.repeat(np.arange(self.n_events, dtype=np.int64), self.n_jets)
        return np.unique(event_of_jet[self.affected_jets])

    @property
    def offsets(self) -> np.ndarray:
        """int64 [n_jets + 1]: jet j's constituents are ``p4[offsets[j]:offsets[j + 1]]``."""
        offsets = np.zeros(self.total_jets + 1, dtype=np.int64)
        np.cumsum(self.n_constituents, out=offsets[1:])
        return offsets

    def to_awkward(self) -> ak.Array:
        """Constituent four-vectors as an awkward array [events][jets][constituents] of {E, px, py, pz}."""
        record = ak.zip({name: self.p4[:, i] for i, name in enumerate(("E", "px", "py", "pz"))})
        per_jet = ak.unflatten(record, self.n_constituents)
        return ak.unflatten(per_jet, self.n_jets)


def p4_from_ptetaphim(pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """(pt, η, φ, m) in GeV → float32 [n, 4] as (E, px, py, pz) in GeV, computed in float64 with ``vector``."""
    import vector

    momentum = vector.array(
        {
            "pt": np.asarray(pt, dtype=np.float64),
            "eta": np.asarray(eta, dtype=np.float64),
            "phi": np.asarray(phi, dtype=np.float64),
            "mass": np.asarray(mass, dtype=np.float64),
        }
    )
    return np.stack([momentum.E, momentum.px, momentum.py, momentum.pz], axis=-1).astype(np.float32)


def finite_constituents(
    pt: np.ndarray, eta: np.ndarray, phi: np.ndarray, mass: np.ndarray, p4: np.ndarray
) -> np.ndarray:
    """bool [n]: True where (pt, η, φ, m) [n] each and the float32 ``p4`` [n, 4] (E, px, py, pz) are all finite."""
    return (
        np.isfinite(pt) & np.isfinite(eta) & np.isfinite(phi) & np.isfinite(mass) & np.isfinite(p4).all(axis=1)
    )


def _fields(events: ak.Array, collection: str) -> list[str]:
    return list(events[collection].fields) if collection in events.fields else []


def check_pfnano_fields(events: ak.Array, source: str, collection: str = "FatJet") -> None:
    """Raise :class:`MissingBranchError` naming ``source`` and each missing branch of ``collection``'s constituents."""
    missing = []
    links = f"{collection}PFCands"
    needs = {collection: (), links: ("pFCandsIdx",), "PFCands": ("pt", "eta", "phi", "mass")}
    for name, fields in needs.items():
        present = _fields(events, name)
        if name not in events.fields:
            missing.append(f"n{name}")
        missing.extend(f"{name}_{f}" for f in fields if f not in present)
    if "nConstituents" not in _fields(events, collection) and "jetIdx" not in _fields(events, links):
        missing.append(f"{collection}_nConstituents or {links}_jetIdx")
    if missing:
        what = "fat-jet" if collection == "FatJet" else collection
        raise MissingBranchError(
            source, missing, f"{what} constituents need a PFNano file with PF candidates", available=_branch_names(events)
        )


def _branch_names(events: ak.Array) -> list[str]:
    """The NanoAOD branch names behind ``events``' fields: ``n<Collection>``, ``<Collection>_<field>``, ``<branch>``."""
    names = []
    for name in events.fields:
        fields = list(events[name].fields)
        if fields:
            names.append(f"n{name}")
            names.extend(f"{name}_{field}" for field in fields)
        else:
            names.append(name)
    return names


def _as_numpy(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(array))


def _check_range(flat_index: np.ndarray, n_per_event: np.ndarray, size: np.ndarray, branch: str, source: str) -> None:
    """Every entry of a jagged index (``flat_index``, ``n_per_event`` entries per event) must lie in
    [0, ``size`` of its event)."""
    limit = np.repeat(size, n_per_event)
    bad = (flat_index < 0) | (flat_index >= limit)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(
            f"{source}: branch {branch} holds {int(flat_index[first])} at entry {first}, "
            f"outside [0, {int(limit[first])}) of its event"
        )


def constituent_columns(events: ak.Array, *, source: str = "<events>",
                        collection: str = "FatJet") -> dict[str, ak.Array]:
    """The arrays of ``events`` that :func:`jet_constituents` reads, by role — nothing else is read.

    Roles, for ``collection`` C (default ``FatJet``): ``n_jets`` (jets per event), ``pf_index``
    (``CPFCands_pFCandsIdx``), ``n_pf`` (PF candidates per event), ``pt``, ``eta``, ``phi``, ``mass``
    (``PFCands_*``), and either ``jet_index`` (``CPFCands_jetIdx``, older layout, used when present)
    or ``n_constituents`` (``C_nConstituents``, newer layout). Only field names are inspected here, so this works on
    dask-awkward's typetracer arrays as well: touching these arrays' data is how a lazy graph
    learns the columns it needs (:func:`touch_constituent_columns`). Raises
    :class:`MissingBranchError` when a branch is missing.
    """
    check_pfnano_fields(events, source, collection)
    links = events[f"{collection}PFCands"]
    candidates = events.PFCands
    columns = {
        "n_jets": ak.num(events[collection], axis=1),
        "pf_index": links.pFCandsIdx,
        "n_pf": ak.num(candidates, axis=1),
        "pt": candidates.pt,
        "eta": candidates.eta,
        "phi": candidates.phi,
        "mass": candidates.mass,
    }
    if "jetIdx" in _fields(events, f"{collection}PFCands"):
        columns["jet_index"] = links.jetIdx
    else:
        columns["n_constituents"] = events[collection].nConstituents
    return columns


def touch_constituent_columns(events: ak.Array, *, source: str = "<events>", collection: str = "FatJet") -> None:
    """Mark every column :func:`jet_constituents` reads as needed, on typetracer ``events``.

    dask-awkward runs a graph on typetracers (arrays that know their type but hold no data) to find
    the columns it must read; this touches exactly the arrays of :func:`constituent_columns`.
    """
    for array in constituent_columns(events, source=source, collection=collection).values():
        ak.typetracer.touch_data(array)


def jet_constituents(events: ak.Array, *, source: str = "<events>", collection: str = "FatJet") -> JetConstituents:
    """Constituents of every jet of ``collection`` (``FatJet``, ``Jet``, …) of ``events`` (coffea
    NanoEvents, ``PFNanoAODSchema``).

    ``events`` is an eager or virtual (lazily loaded) array of one chunk; only the columns of
    :func:`constituent_columns` are read. ``source`` names the input in error messages (a file
    name, say). Raises :class:`MissingBranchError` for a file without PF candidates and
    :class:`InvalidInputError` for indices that point outside their collections. Constituents
    with non-finite values are dropped and counted in ``n_dropped`` (see the module docstring).
    """
    columns = constituent_columns(events, source=source, collection=collection)
    links = f"{collection}PFCands"
    n_jets = _as_numpy(columns["n_jets"]).astype(np.int64)
    n_pf = _as_numpy(columns["n_pf"]).astype(np.int64)
    n_links = _as_numpy(ak.num(columns["pf_index"], axis=1)).astype(np.int64)
    pf_local = _as_numpy(ak.flatten(columns["pf_index"])).astype(np.int64)
    _check_range(pf_local, n_links, n_pf, f"{links}_pFCandsIdx", source)
    pf_start = np.zeros(len(n_pf), dtype=np.int64)
    np.cumsum(n_pf[:-1], out=pf_start[1:])
    pf_global = pf_local + np.repeat(pf_start, n_links)
    pt = _as_numpy(ak.flatten(columns["pt"]))[pf_global].astype(np.float64)
    eta = _as_numpy(ak.flatten(columns["eta"]))[pf_global]
    phi = _as_numpy(ak.flatten(columns["phi"]))[pf_global]
    mass = _as_numpy(ak.flatten(columns["mass"]))[pf_global]

    jet_start = np.zeros(len(n_jets), dtype=np.int64)
    np.cumsum(n_jets[:-1], out=jet_start[1:])
    total_jets = int(n_jets.sum())
    if "n_constituents" in columns:
        n_constituents = _as_numpy(ak.flatten(columns["n_constituents"])).astype(np.int64)
        event_of_jet = np.repeat(np.arange(len(n_jets)), n_jets)
        per_event = np.bincount(event_of_jet, weights=n_constituents, minlength=len(n_jets)).astype(np.int64)
        if not np.array_equal(per_event, n_links):
            bad = int(np.flatnonzero(per_event != n_links)[0])
            raise InvalidInputError(
                f"{source}: event {bad} has sum({collection}_nConstituents) = {int(per_event[bad])} "
                f"but n{links} = {int(n_links[bad])}"
            )
        global_jet = np.repeat(np.arange(total_jets, dtype=np.int64), n_constituents)
    else:
        local_jet = _as_numpy(ak.flatten(columns["jet_index"])).astype(np.int64)
        _check_range(local_jet, n_links, n_jets, f"{links}_jetIdx", source)
        global_jet = local_jet + np.repeat(jet_start, n_links)
        n_constituents = np.bincount(global_jet, minlength=total_jets).astype(np.int64)

    # Drop constituents with a non-finite input or four-vector, counting them per jet.
    with np.errstate(invalid="ignore", over="ignore"):
        p4 = p4_from_ptetaphim(pt, eta, phi, mass)
    keep = finite_constituents(pt, eta, phi, mass, p4)
    n_dropped = np.bincount(global_jet[~keep], minlength=total_jets).astype(np.int64)
    n_constituents = n_constituents - n_dropped
    p4, pt, global_jet = p4[keep], pt[keep], global_jet[keep]

    # Group jet after jet and sort by pT (descending) within a jet, in one stable sort.
    order = np.lexsort((-pt, global_jet))
    return JetConstituents(
        p4=p4[order], pt=pt[order].astype(np.float32), n_constituents=n_constituents, n_jets=n_jets,
        n_dropped=n_dropped,
    )
