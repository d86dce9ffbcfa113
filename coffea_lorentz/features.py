"""Per-constituent input variables by name, computed vectorised from PFNano for any jet collection.

A jet collection ``C`` (``FatJet``, ``Jet``, …) has constituents when the file holds the link
collection ``CPFCands`` (``CPFCands_pFCandsIdx`` into ``PFCands``, and ``CPFCands_jetIdx`` or
``C_nConstituents``) and secondary vertices when it holds ``CSVs`` (``CSVs_sVIdx`` into ``SV``,
``CSVs_jetIdx``; a negative ``sVIdx`` — no vertex — is skipped). Within a jet, objects are sorted by
pT (descending); a model's input group truncates them at its length.

Variable names (all float, computed in float64, handed on as float32):

- JetClass / ParT (``part_*``): ``px, py, pz, energy, pt, eta, phi, mass``; ``deta`` = η − η_jet,
  ``dphi`` = φ − φ_jet wrapped to [−π, π), ``pt_log`` = log pT, ``e_log`` = log E,
  ``logptrel`` = log(pT / pT_jet), ``logerel`` = log(E / E_jet), ``deltaR`` = hypot(deta, dphi),
  ``charge``, ``isChargedHadron`` (|pdgId| = 211), ``isNeutralHadron`` (130), ``isPhoton`` (22),
  ``isElectron`` (11), ``isMuon`` (13), ``d0`` = tanh(d0), ``dz`` = tanh(dz), ``d0err``, ``dzerr``,
  ``mask`` (1 for a real constituent). E_jet is computed from the collection's own ``pt``, ``eta``,
  ``phi``, ``mass``.
- CMS ParticleNet (``pfcand_*``): ``pt_log_nopuppi``, ``e_log_nopuppi``, ``etarel`` (= deta),
  ``phirel`` (= dphi), ``abseta``, ``charge``, ``isEl``, ``isMu``, ``isGamma``, ``isChargedHad``,
  ``isNeutralHad``, ``VTX_ass`` (pvAssocQuality), ``lostInnerHits``, ``normchi2`` (trkChi2),
  ``quality`` (trkQuality), ``dz``, ``dzsig`` (dz / dzErr), ``dxy`` (d0), ``dxysig`` (d0 / d0Err),
  ``puppiw``, ``px, py, pz, energy``, ``mask``, and the link collection's ``btagEtaRel``,
  ``btagPtRatio``, ``btagPParRatio``, ``btagSip3dVal``, ``btagSip3dSig``, ``btagJetDistVal``.
- Secondary vertices (``sv_*``): ``pt, eta, phi, mass, px, py, pz, energy``, ``pt_log``,
  ``e_log``, ``logptrel``, ``logerel``, ``etarel``, ``phirel``, ``deltaR``, ``abseta``, ``ntracks``,
  ``normchi2`` (chi2 / ndof), ``dxy``, ``dxysig``, ``d3d`` (dlen), ``d3dsig`` (dlenSig),
  ``costhetasvpv`` (cos pAngle), ``mask``.

:func:`feature_names` lists them; :func:`check_variables` refuses an unknown name with the closest
known ones. Each variable declares the branches it reads, so a dask-awkward graph reads only those.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .errors import ConfigurationError, InvalidInputError, MissingBranchError

__all__ = ["Objects", "Variable", "VARIABLES", "feature_names", "check_variables", "objects_of", "read_objects",
           "JetObjects", "touch_objects"]

#: The two kinds of per-jet objects: PF candidates and secondary vertices.
Objects = str
PARTICLES: Objects = "PFCands"
VERTICES: Objects = "SV"


@dataclass(frozen=True)
class Variable:
    """One named per-object variable.

    Attributes:
        objects: ``"PFCands"`` or ``"SV"``.
        reads: (where, field) pairs it needs: where is ``"object"`` (``PFCands_*``/``SV_*``),
            ``"link"`` (``<C>PFCands_*``/``<C>SVs_*``) or ``"jet"`` (``<C>_*``).
        compute: the function of a :class:`JetObjects` giving float64 [n_objects].
    """

    objects: Objects
    reads: tuple[tuple[str, str], ...]
    compute: Callable[["JetObjects"], np.ndarray]


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + np.pi) % (2 * np.pi) - np.pi


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(x)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return a / b


_KINEMATIC = (("object", "pt"), ("object", "eta"), ("object", "phi"), ("object", "mass"))
_JET = (("jet", "pt"), ("jet", "eta"), ("jet", "phi"), ("jet", "mass"))


def _build_registry() -> Mapping[str, Variable]:
    table: dict[str, Variable] = {}

    def add(names: Iterable[str], objects: Objects, reads, compute) -> None:
        for name in names:
            table[name] = Variable(objects, tuple(reads), compute)

    for prefix, objects in (("part_", PARTICLES), ("pfcand_", PARTICLES), ("sv_", VERTICES)):
        add([prefix + "px"], objects, _KINEMATIC, lambda o: o.px)
        add([prefix + "py"], objects, _KINEMATIC, lambda o: o.py)
        add([prefix + "pz"], objects, _KINEMATIC, lambda o: o.pz)
        add([prefix + "energy"], objects, _KINEMATIC, lambda o: o.energy)
        add([prefix + "pt"], objects, _KINEMATIC, lambda o: o.field("pt"))
        add([prefix + "eta"], objects, _KINEMATIC, lambda o: o.field("eta"))
        add([prefix + "phi"], objects, _KINEMATIC, lambda o: o.field("phi"))
        add([prefix + "mass"], objects, _KINEMATIC, lambda o: o.field("mass"))
        add([prefix + "mask"], objects, _KINEMATIC, lambda o: np.ones(o.n_objects))
        add([prefix + "deta", prefix + "etarel"], objects, _KINEMATIC + _JET, lambda o: o.deta)
        add([prefix + "dphi", prefix + "phirel"], objects, _KINEMATIC + _JET, lambda o: o.dphi)
        add([prefix + "deltaR"], objects, _KINEMATIC + _JET, lambda o: np.hypot(o.deta, o.dphi))
        add([prefix + "abseta"], objects, _KINEMATIC, lambda o: np.abs(o.field("eta")))
        add([prefix + "pt_log", prefix + "pt_log_nopuppi"], objects, _KINEMATIC, lambda o: _log(o.field("pt")))
        add([prefix + "e_log", prefix + "e_log_nopuppi"], objects, _KINEMATIC, lambda o: _log(o.energy))
        add([prefix + "logptrel"], objects, _KINEMATIC + _JET, lambda o: _log(_ratio(o.field("pt"), o.jet("pt"))))
        add([prefix + "logerel"], objects, _KINEMATIC + _JET, lambda o: _log(_ratio(o.energy, o.jet_energy)))

    def pdg(code: int):
        return lambda o: (np.abs(o.field("pdgId")) == code).astype(np.float64)

    for prefix in ("part_", "pfcand_"):
        add([prefix + "charge"], PARTICLES, [("object", "pt"), ("object", "charge")], lambda o: o.field("charge"))
    for names, code in ((("part_isChargedHadron", "pfcand_isChargedHad"), 211),
                        (("part_isNeutralHadron", "pfcand_isNeutralHad"), 130),
                        (("part_isPhoton", "pfcand_isGamma"), 22), (("part_isElectron", "pfcand_isEl"), 11),
                        (("part_isMuon", "pfcand_isMu"), 13)):
        add(names, PARTICLES, [("object", "pt"), ("object", "pdgId")], pdg(code))
    add(["part_d0"], PARTICLES, [("object", "pt"), ("object", "d0")], lambda o: np.tanh(o.field("d0")))
    add(["part_dz"], PARTICLES, [("object", "pt"), ("object", "dz")], lambda o: np.tanh(o.field("dz")))
    add(["part_d0err"], PARTICLES, [("object", "pt"), ("object", "d0Err")], lambda o: o.field("d0Err"))
    add(["part_dzerr"], PARTICLES, [("object", "pt"), ("object", "dzErr")], lambda o: o.field("dzErr"))
    add(["pfcand_dxy"], PARTICLES, [("object", "pt"), ("object", "d0")], lambda o: o.field("d0"))
    add(["pfcand_dz"], PARTICLES, [("object", "pt"), ("object", "dz")], lambda o: o.field("dz"))
    add(["pfcand_dxysig"], PARTICLES, [("object", "pt"), ("object", "d0"), ("object", "d0Err")],
        lambda o: _ratio(o.field("d0"), o.field("d0Err")))
    add(["pfcand_dzsig"], PARTICLES, [("object", "pt"), ("object", "dz"), ("object", "dzErr")],
        lambda o: _ratio(o.field("dz"), o.field("dzErr")))
    for name, field in (("VTX_ass", "pvAssocQuality"), ("lostInnerHits", "lostInnerHits"), ("normchi2", "trkChi2"),
                        ("quality", "trkQuality"), ("puppiw", "puppiWeight")):
        add(["pfcand_" + name], PARTICLES, [("object", "pt"), ("object", field)],
            (lambda f: lambda o: o.field(f))(field))
    for field in ("btagEtaRel", "btagPtRatio", "btagPParRatio", "btagSip3dVal", "btagSip3dSig", "btagJetDistVal"):
        add(["pfcand_" + field], PARTICLES, [("object", "pt"), ("link", field)], (lambda f: lambda o: o.link(f))(field))

    for name, field in (("ntracks", "ntracks"), ("dxy", "dxy"), ("dxysig", "dxySig"), ("d3d", "dlen"),
                        ("d3dsig", "dlenSig")):
        add(["sv_" + name], VERTICES, [("object", "pt"), ("object", field)], (lambda f: lambda o: o.field(f))(field))
    add(["sv_normchi2"], VERTICES, [("object", "pt"), ("object", "chi2"), ("object", "ndof")],
        lambda o: _ratio(o.field("chi2"), o.field("ndof")))
    add(["sv_costhetasvpv"], VERTICES, [("object", "pt"), ("object", "pAngle")], lambda o: np.cos(o.field("pAngle")))
    return types.MappingProxyType(table)


#: Every variable name the library computes → its :class:`Variable`.
VARIABLES: Mapping[str, Variable] = _build_registry()


def feature_names(objects: Objects | None = None) -> list[str]:
    """Known variable names (of one kind of objects, or all), sorted."""
    return sorted(name for name, variable in VARIABLES.items() if objects in (None, variable.objects))


def check_variables(names: Iterable[str], *, where: str) -> None:
    """Raise :class:`ConfigurationError` naming ``where`` (an input of a model spec) for an unknown name."""
    for name in names:
        if name not in VARIABLES:
            close = difflib.get_close_matches(name, list(VARIABLES), n=3, cutoff=0.6)
            hint = f"; closest known: {', '.join(close)}" if close else ""
            raise ConfigurationError(f"{where}: unknown variable {name!r}{hint} "
                                     f"(coffea_lorentz.features.feature_names() lists all {len(VARIABLES)})")


def objects_of(names: Iterable[str], *, where: str) -> Objects:
    """The one kind of objects the variables ``names`` describe; refuses a mix."""
    check_variables(names, where=where)
    kinds = {VARIABLES[name].objects for name in names}
    if len(kinds) != 1:
        raise ConfigurationError(f"{where}: variables mix PF candidates and secondary vertices ({sorted(kinds)})")
    return kinds.pop()


def _link_collection(collection: str, objects: Objects) -> str:
    return f"{collection}PFCands" if objects == PARTICLES else f"{collection}SVs"


def _index_field(objects: Objects) -> str:
    return "pFCandsIdx" if objects == PARTICLES else "sVIdx"


def _fields(events: ak.Array, name: str) -> list[str]:
    return list(events[name].fields) if name in events.fields else []


def _needed(events: ak.Array, collection: str, objects: Objects, reads: Iterable[tuple[str, str]],
            source: str) -> dict[tuple[str, str], ak.Array]:
    """The arrays behind ``reads`` (plus the links), refusing a missing branch by name."""
    link_name = _link_collection(collection, objects)
    wanted = {("link", _index_field(objects)), ("object", "pt")}
    wanted.update(reads)
    link_fields = _fields(events, link_name)
    has_jet_index = "jetIdx" in link_fields
    if has_jet_index:
        wanted.add(("link", "jetIdx"))
    elif objects == PARTICLES:
        wanted.add(("jet", "nConstituents"))
    collections = {"object": objects, "link": link_name, "jet": collection}
    missing = []
    for where, field in sorted(wanted):
        name = collections[where]
        if field not in _fields(events, name):
            missing.append(f"{name}_{field}")
    if not has_jet_index and objects == VERTICES:
        missing.append(f"{link_name}_jetIdx")
    if missing:
        from .read import _branch_names

        raise MissingBranchError(source, sorted(set(missing)), f"the {collection} {objects} variables of this model",
                                 available=_branch_names(events))
    arrays = {key: events[collections[key[0]]][key[1]] for key in wanted}
    arrays[("count", "jet")] = ak.num(events[collection], axis=1)
    arrays[("count", "object")] = ak.num(events[objects], axis=1)
    return arrays


def touch_objects(events: ak.Array, collection: str, objects: Objects, names: Iterable[str]) -> None:
    """On typetracer ``events``: mark exactly the columns that the variables ``names`` read."""
    reads = [read for name in names for read in VARIABLES[name].reads]
    for array in _needed(events, collection, objects, reads, "<events>").values():
        ak.typetracer.touch_data(array)


def _np(array: ak.Array) -> np.ndarray:
    return np.asarray(ak.to_numpy(ak.flatten(array) if array.ndim > 1 else array))


class JetObjects:
    """The objects (PF candidates or SVs) of every jet of a chunk, flat, grouped jet after jet and
    sorted by pT (descending) within a jet.

    Attributes:
        n_per_jet: int64 [n_jets] objects of each jet; jets in event order.
        n_jets: int64 [n_events] jets of each event.
    """

    def __init__(self, arrays: Mapping[tuple[str, str], ak.Array], *, source: str, link_name: str,
                 index_field: str):
        self._arrays = arrays
        self._cache: dict[tuple[str, str], np.ndarray] = {}
        self.n_jets = _np(arrays[("count", "jet")]).astype(np.int64)
        n_objects = _np(arrays[("count", "object")]).astype(np.int64)
        index = arrays[("link", index_field)]
        n_links = _np(ak.num(index, axis=1)).astype(np.int64)
        local = _np(index).astype(np.int64)
        total_jets = int(self.n_jets.sum())
        jet_start = np.concatenate([[0], np.cumsum(self.n_jets)[:-1]]).astype(np.int64)
        if ("link", "jetIdx") in arrays:
            local_jet = _np(arrays[("link", "jetIdx")]).astype(np.int64)
            global_jet = local_jet + np.repeat(jet_start, n_links)
            bad_jet = (local_jet < 0) | (local_jet >= np.repeat(self.n_jets, n_links))
        else:
            counts = _np(arrays[("jet", "nConstituents")]).astype(np.int64)
            if int(counts.sum()) != len(local):
                raise InvalidInputError(f"{source}: sum of nConstituents ({int(counts.sum())}) differs from the "
                                        f"{len(local)} entries of {link_name}")
            global_jet = np.repeat(np.arange(total_jets, dtype=np.int64), counts)
            bad_jet = np.zeros(len(local), dtype=bool)
        limit = np.repeat(n_objects, n_links)
        if bad_jet.any():
            first = int(np.flatnonzero(bad_jet)[0])
            raise InvalidInputError(f"{source}: branch {link_name}_jetIdx holds an index outside its event's jets "
                                    f"at entry {first}")
        out_of_range = local >= limit
        if out_of_range.any():
            first = int(np.flatnonzero(out_of_range)[0])
            raise InvalidInputError(f"{source}: branch {link_name}_{index_field} holds {int(local[first])} at entry "
                                    f"{first}, outside [0, {int(limit[first])}) of its event")
        valid = local >= 0  # a negative index: no object (FatJetSVs_sVIdx = -1)
        object_start = np.concatenate([[0], np.cumsum(n_objects)[:-1]]).astype(np.int64)
        global_object = local + np.repeat(object_start, n_links)
        link_position = np.flatnonzero(valid)
        global_object, global_jet = global_object[valid], global_jet[valid]
        pt = _np(arrays[("object", "pt")]).astype(np.float64)[global_object]
        order = np.lexsort((-pt, global_jet))
        self._object_index = global_object[order]
        self._link_index = link_position[order]
        self.jet_index = global_jet[order]
        self.n_per_jet = np.bincount(self.jet_index, minlength=total_jets).astype(np.int64)
        self.n_objects = len(self._object_index)

    # -- raw columns, per object ------------------------------------------------------------
    def field(self, name: str) -> np.ndarray:
        """float64 [n_objects]: the object collection's branch ``name``."""
        key = ("object", name)
        if key not in self._cache:
            self._cache[key] = _np(self._arrays[key]).astype(np.float64)[self._object_index]
        return self._cache[key]

    def link(self, name: str) -> np.ndarray:
        """float64 [n_objects]: the link collection's branch ``name``."""
        key = ("link", name)
        if key not in self._cache:
            self._cache[key] = _np(self._arrays[key]).astype(np.float64)[self._link_index]
        return self._cache[key]

    def jet(self, name: str) -> np.ndarray:
        """float64 [n_objects]: the jet collection's branch ``name`` of each object's jet."""
        key = ("jet", name)
        if key not in self._cache:
            self._cache[key] = _np(self._arrays[key]).astype(np.float64)[self.jet_index]
        return self._cache[key]

    # -- derived kinematics -----------------------------------------------------------------
    @property
    def px(self) -> np.ndarray:
        return self.field("pt") * np.cos(self.field("phi"))

    @property
    def py(self) -> np.ndarray:
        return self.field("pt") * np.sin(self.field("phi"))

    @property
    def pz(self) -> np.ndarray:
        return self.field("pt") * np.sinh(self.field("eta"))

    @property
    def energy(self) -> np.ndarray:
        pt, eta, mass = self.field("pt"), self.field("eta"), self.field("mass")
        return np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)

    @property
    def jet_energy(self) -> np.ndarray:
        pt, eta, mass = self.jet("pt"), self.jet("eta"), self.jet("mass")
        return np.sqrt((pt * np.cosh(eta)) ** 2 + mass**2)

    @property
    def deta(self) -> np.ndarray:
        return self.field("eta") - self.jet("eta")

    @property
    def dphi(self) -> np.ndarray:
        return _wrap(self.field("phi") - self.jet("phi"))

    def variable(self, name: str) -> np.ndarray:
        """float64 [n_objects]: the library's variable ``name``."""
        return np.asarray(VARIABLES[name].compute(self), dtype=np.float64)


def read_objects(events: ak.Array, collection: str, objects: Objects, names: Iterable[str], *,
                 source: str = "<events>") -> JetObjects:
    """The ``objects`` of every jet of ``collection`` in ``events`` (eager or virtual NanoEvents),
    reading only the branches the variables ``names`` need."""
    names = list(names)
    if collection not in events.fields:
        close = difflib.get_close_matches(collection, [f for f in events.fields if events[f].fields], n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise MissingBranchError(source, [f"n{collection}"], f"jet collection {collection!r}{hint}")
    reads = [read for name in names for read in VARIABLES[name].reads]
    arrays = _needed(events, collection, objects, reads, source)
    return JetObjects(arrays, source=source, link_name=_link_collection(collection, objects),
                      index_field=_index_field(objects))
