"""The training domain of a reweighter: which jets its classifier saw, and how many jets of a run lie outside.

A reweighter's weights are a density ratio learnt on the jets it was trained on; outside that
domain (another pT or |η| range, another jet type) the classifier extrapolates and its weights
are not validated. The ``domain`` record of ``reweight_<name>.json``::

    "domain": {"min_pt_gev": 250.0, "max_pt_gev": 600.0, "max_abs_eta": 2.0,
               "jets": "FatJet anti-kT R=0.8", "sample": "QCD dijets, ...", "max_constituents": 128,
               "selection": {"min_pt_gev": 300.0}, "files": [{"dataset", "file", "uuid", "entries", "jets",
               "class"}, ...], "class_balance": {"nominal": 4000, "alternative": 4000},
               "features": ["part_energy", "part_px", "part_py", "part_pz", "part_mask"]}

The last four are written by training on filesets (``--fileset``) and absent from older records;
a train folder (``coffea-lorentz train``) records the same ``domain`` in its ``metrics.json``.

:func:`count_outside` counts the jets of a chunk outside it (vectorised; numpy and awkward, no
torch); a run adds the counts up per dataset and :func:`outside_line` says, once per dataset and
reweighter, what fraction of the jets got extrapolated weights.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from ..errors import InvalidInputError

__all__ = ["TrainingDomain", "domain_of_samples", "outside_mask", "count_outside", "outside_domain_counts", "outside_by_dataset", "outside_line"]


@dataclass(frozen=True, kw_only=True)
class TrainingDomain:
    """The jets a reweighter was trained on.

    Attributes:
        min_pt_gev, max_pt_gev: the jet pT range in GeV (a jet is inside for min ≤ pT ≤ max).
        max_abs_eta: the largest jet |η| (inside for |η| ≤ max_abs_eta).
        jets: the jet collection and type (``"FatJet anti-kT R=0.8"``).
        sample: what the jets were (process, generator, tune).
        max_constituents: leading-pT constituents per jet the classifier saw.
        selection: the jet selection applied when reading (:class:`coffea_lorentz.fileset_jets.JetSelection`
            record: ``min_pt_gev``, ``max_abs_eta`` …); empty when unknown.
        files: one record per input file (``dataset``, ``file``, ``uuid``, ``entries``, ``jets``, ``class``).
        class_balance: class name → training jets of that class.
        features: the input variables per constituent, in order.
    """

    min_pt_gev: float
    max_pt_gev: float
    max_abs_eta: float
    jets: str = "FatJet anti-kT R=0.8"
    sample: str = ""
    max_constituents: int | None = None
    selection: Mapping = field(default_factory=dict, hash=False)  # records, left out of the hash
    files: tuple = field(default=(), hash=False)
    class_balance: Mapping = field(default_factory=dict, hash=False)
    features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not (0 <= self.min_pt_gev < self.max_pt_gev) or not self.max_abs_eta > 0:
            raise InvalidInputError(
                f"TrainingDomain: expected 0 <= min_pt_gev < max_pt_gev and max_abs_eta > 0, got pT "
                f"[{self.min_pt_gev}, {self.max_pt_gev}] GeV, |eta| < {self.max_abs_eta}")

    @classmethod
    def from_record(cls, record: Mapping | None) -> "TrainingDomain | None":
        """The domain of a reweighter's JSON ``domain`` record (None for a record without one)."""
        if not record:
            return None
        try:
            constituents = record.get("max_constituents")
            return cls(min_pt_gev=float(record["min_pt_gev"]), max_pt_gev=float(record["max_pt_gev"]),
                       max_abs_eta=float(record["max_abs_eta"]), jets=str(record.get("jets", "")),
                       sample=str(record.get("sample", "")),
                       max_constituents=int(constituents) if constituents is not None else None,
                       selection=dict(record.get("selection") or {}),
                       files=tuple(dict(f) for f in record.get("files") or ()),
                       class_balance={str(k): int(v) for k, v in (record.get("class_balance") or {}).items()},
                       features=tuple(str(f) for f in record.get("features") or ()))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise InvalidInputError(f"reweighter 'domain' record: expected min_pt_gev, max_pt_gev and max_abs_eta "
                                    f"numbers, got {dict(record)!r} ({type(err).__name__}: {err})") from None

    @classmethod
    def of_jets(cls, pt: np.ndarray, eta: np.ndarray, **description) -> "TrainingDomain":
        """The smallest domain holding jets with ``pt`` [n_jets] (GeV) and ``eta`` [n_jets]:
        pT rounded outwards to whole GeV, |η| up to the next 0.01."""
        pt, eta = np.asarray(pt, dtype=np.float64), np.asarray(eta, dtype=np.float64)
        if pt.size == 0 or not (np.isfinite(pt).all() and np.isfinite(eta).all()):
            raise InvalidInputError(f"TrainingDomain.of_jets: expected finite pT and eta of at least one jet, "
                                    f"got {pt.size} jets")
        return cls(min_pt_gev=float(math.floor(pt.min())), max_pt_gev=float(math.ceil(pt.max())),
                   max_abs_eta=math.ceil(float(np.abs(eta).max()) * 100) / 100, **description)

    def as_record(self) -> dict:
        """The JSON ``domain`` record."""
        record = {"min_pt_gev": self.min_pt_gev, "max_pt_gev": self.max_pt_gev, "max_abs_eta": self.max_abs_eta,
                  "jets": self.jets, "sample": self.sample, "max_constituents": self.max_constituents}
        optional = {"selection": dict(self.selection), "files": [dict(f) for f in self.files],
                    "class_balance": dict(self.class_balance), "features": list(self.features)}
        return record | {key: value for key, value in optional.items() if value}

    def describe(self) -> str:
        """``"250 < pT < 600 GeV, |η| < 2"``."""
        return f"{self.min_pt_gev:g} < pT < {self.max_pt_gev:g} GeV, |η| < {self.max_abs_eta:g}"

    def inside(self, pt, eta) -> np.ndarray | ak.Array:
        """Whether each jet lies inside: ``pt`` (GeV) and ``eta`` of the same shape, numpy or jagged
        awkward ([events][jets]); a boolean array of that shape. A NaN pT or η is outside."""
        return (pt >= self.min_pt_gev) & (pt <= self.max_pt_gev) & (abs(eta) <= self.max_abs_eta)


def domain_of_samples(samples: Iterable, *, jets: str = "FatJet anti-kT R=0.8", sample: str = "",
                      max_constituents: int | None = None, **recorded) -> TrainingDomain:
    """The domain of the training jets ``samples`` (:class:`~coffea_lorentz.reweight.JetSample`):
    :meth:`TrainingDomain.of_jets` of their ``pt`` and ``eta`` observables, or, for a sample without
    them, of the sum of its (kept) constituents' four-vectors. ``recorded``: the further fields
    (``selection``, ``files``, ``class_balance``, ``features``)."""
    pts, etas = [], []
    for part in samples:
        if "pt" in part.observables and "eta" in part.observables:
            pt, eta = np.asarray(part.observables["pt"]), np.asarray(part.observables["eta"])
        else:
            p4 = (np.asarray(part.p4, dtype=np.float64) * part.mask[..., None]).sum(axis=1)  # [n_jets, (E, px, py, pz)]
            pt = np.hypot(p4[:, 1], p4[:, 2])
            eta = np.arcsinh(np.divide(p4[:, 3], pt, out=np.zeros_like(pt), where=pt > 0))
        pts.append(pt)
        etas.append(eta)
    return TrainingDomain.of_jets(np.concatenate(pts), np.concatenate(etas), jets=jets, sample=sample,
                                  max_constituents=max_constituents, **recorded)


def outside_mask(domain: TrainingDomain | None, jets):
    """True for each of ``jets`` (with ``pt`` in GeV and ``eta``; numpy, awkward or dask-awkward) outside
    ``domain``; all False for None (a reweighter without a recorded domain)."""
    if domain is None:
        return jets.pt < -np.inf
    return ~domain.inside(jets.pt, jets.eta)


def count_outside(domain: TrainingDomain, pt, eta) -> int:
    """How many of the jets with ``pt`` (GeV) and ``eta`` (numpy or jagged awkward, any depth) lie outside ``domain``."""
    inside = domain.inside(pt, eta)
    flat = ak.to_numpy(ak.flatten(inside, axis=None)) if isinstance(inside, ak.Array) else np.ravel(inside)
    return int(flat.size - np.count_nonzero(flat))


#: What follows a tagger's name in the counts (a space: no model or reweighter name holds one).
_SCORE_KEY = " score"


def outside_domain_counts(events: ak.Array, reweighters: Iterable, *, collection: str = "FatJet",
                          models: Iterable = ()) -> dict:
    """What a processor records per chunk: reweighter name → {its :meth:`TrainingDomain.describe` →
    ``{"outside": jets outside the domain, "jets": jets}``} for each of ``reweighters`` (objects with
    ``name`` and ``domain``) that has a domain; the same for each of ``models`` (trained taggers,
    e.g. :class:`~coffea_lorentz.user_model.SpecModel`) with a domain, under ``"<name> score"``;
    ``events[collection]`` gives pT and η.

    Only numbers are leaves, so coffea's accumulator adds chunks up correctly (it would join strings).
    """
    specs = [(spec.name, spec.domain) for spec in reweighters if getattr(spec, "domain", None) is not None]
    specs += [(f"{model.name}{_SCORE_KEY}", model.domain) for model in models
              if getattr(model, "domain", None) is not None]
    if not specs:
        return {}
    jets = events[collection]
    pt, eta = jets.pt, jets.eta
    total = int(ak.sum(ak.num(pt, axis=1)))
    return {key: {domain.describe(): {"outside": count_outside(domain, pt, eta), "jets": total}}
            for key, domain in specs}


def outside_by_dataset(per_chunk: Iterable[tuple[str, Mapping]]) -> dict[tuple[str, str], dict]:
    """Chunks' counts added up: (dataset, reweighter) → ``{"outside", "jets", "domain"}`` from
    (dataset, :func:`outside_domain_counts` result) pairs."""
    totals: dict[tuple[str, str], dict] = {}
    for dataset, counts in per_chunk:
        for name, by_domain in counts.items():
            for domain, count in by_domain.items():
                total = totals.setdefault((dataset, name), {"outside": 0, "jets": 0, "domain": domain})
                total["outside"] += int(count["outside"])
                total["jets"] += int(count["jets"])
    return totals


def outside_line(dataset: str, reweighter: str, count: Mapping) -> str | None:
    """The one line a run prints for ``dataset`` and ``reweighter`` (None when no jet is outside)::

        weight_fsr: 23 of 24 jets (96 %) of dataset 'pfnano' are outside its training domain
        (250 < pT < 600 GeV, |η| < 2): their weights are extrapolations

    For a trained tagger's key (``"<name> score"``) the line names the tagger and its scores.
    """
    outside, jets = int(count["outside"]), int(count["jets"])
    if not outside:
        return None
    if reweighter.endswith(_SCORE_KEY):  # a trained tagger (``outside_domain_counts(models=...)``)
        label, what = reweighter.removesuffix(_SCORE_KEY), "scores"
    else:
        label, what = f"weight_{reweighter}", "weights"
    return (f"{label}: {outside} of {jets} jets ({100 * outside / max(jets, 1):.0f} %) of dataset "
            f"{dataset!r} are outside its training domain ({count['domain']}): their {what} are extrapolations")
