"""Reweighting factors for coffea analyses: per-jet weights w = f/(1 − f) from a served classifier.

>>> from coffea_lorentz import Reweighter
>>> reweighter = Reweighter("fsr", backend="torch")          # or server="grpc://HOST:PORT"
>>> reweighter.name, reweighter.batch_config.max_constituents
('fsr', 128)

``reweighter(events)`` gives each ``FatJet``'s weight, float32 jagged [events][FatJet]: nominal jets
weighted by it are distributed like jets of the alternative configuration the classifier was
trained against (the shipped ``fsr``: final-state shower αs 0.1365 → 0.120). A jet without
constituents gets weight 1. :meth:`Reweighter.event_weight` turns them into one weight per event
(the leading fat jet's, 1 for an event without fat jets), the ``weight_<name>`` branch of
``coffea-lorentz run --reweighter``. Like :class:`~coffea_lorentz.Tagger`, a ``Reweighter`` takes
eager, virtual and dask-awkward events, pickles to Dask workers and keeps the constituents its
classifier was trained on (its record's ``max_constituents``).

An event-level reweighter (``reweight-train --level event``; :mod:`coffea_lorentz.reweight.events`)
sees each whole event as one set of four-momenta: ``reweighter(events)`` then gives one float32
weight per event, and a run writes ``weight_<name>`` only (:class:`EventWeightHead`).

:class:`ReweighterSpec` is the same as plain picklable data for processors, and
:func:`reweight_events` what a processor calls per chunk.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np

from .batch import BatchConfig, unflatten
from .errors import InvalidInputError
from .infer import BackendSpec
from .pipeline import ScoredModel, TaggedChunk, ZooInput, resolved_batch_config, score_branch, score_events
from .read import JetConstituents
from .reweight.domain import TrainingDomain, outside_mask
from .reweight.events import EVENT_OBJECTS, EventInput
from .reweight.lookup import ReweighterInfo, find_reweighter
from .reweight.weights import event_weights, jet_weights, weights_from_probability
from .tagger import Tagger, _is_dask

__all__ = ["Reweighter", "ReweighterSpec", "WeightHead", "EventWeightHead", "reweight_events", "reweighter_models",
           "jet_weight_branch", "event_weight_branch"]


def jet_weight_branch(name: str) -> str:
    """Per-jet field of reweighter ``name`` inside ``FatJet`` (written as ``FatJet_weight_<name>``)."""
    return f"weight_{name}"


def event_weight_branch(name: str) -> str:
    """Per-event branch of reweighter ``name``: ``weight_<name>``."""
    return f"weight_{name}"


@dataclass(frozen=True, kw_only=True)
class ReweighterSpec:
    """One reweighter as plain picklable data: where its classifier runs and how f becomes w.

    Attributes:
        name: short name; branches are ``weight_<name>`` and ``FatJet_weight_<name>``.
        backend: where the classifier runs (its probability f of class 1 = alternative is used);
            Triton serves it under ``reweight_<name>``.
        epsilon: f is clipped to [ε, 1 − ε] before w = f / (1 − f).
        max_weight: w is clipped to [0, max_weight].
        prior_ratio: N_nominal / N_alternative correction of the classifier's odds (see
            :func:`coffea_lorentz.reweight.weights_from_probability`).
        max_constituents: leading-pT constituents per jet the classifier sees (None: the
            processor's batching).
        domain: the jets it was trained on; a run counts the jets outside it
            (:mod:`coffea_lorentz.reweight.domain`).
        level: ``"jet"`` (per-jet weights) or ``"event"`` (the classifier sees each whole event:
            ``weight_<name>`` per event only; :mod:`coffea_lorentz.reweight.events`).
        objects: an event-level reweighter's objects (``"pfcands"``, ``"jets"``).
    """

    name: str
    backend: BackendSpec
    epsilon: float = 1e-3
    max_weight: float = 10.0
    prior_ratio: float = 1.0
    max_constituents: int | None = None
    domain: TrainingDomain | None = None
    level: str = "jet"
    objects: str | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum():
            raise InvalidInputError(f"ReweighterSpec.name: expected letters, digits and '_', got {self.name!r}")
        if self.level not in ("jet", "event"):
            raise InvalidInputError(f"ReweighterSpec.level: expected 'jet' or 'event', got {self.level!r}")
        if self.level == "event" and self.objects not in EVENT_OBJECTS:
            raise InvalidInputError(f"ReweighterSpec.objects: an event-level reweighter needs one of "
                                    f"{list(EVENT_OBJECTS)}, got {self.objects!r}")

    @classmethod
    def from_info(cls, info: ReweighterInfo, *, kind: str = "torch", url: str | None = None,
                  **options) -> "ReweighterSpec":
        """The spec of a found reweighter: in-process from its file (``kind="torch"``) or from the Triton
        server at ``url`` serving ``reweight_<name>``. ``options`` go to the backend. A shipped
        reweighter is found by each worker in its own install; another is read from its path."""
        weights = info.weights if kind != "triton" and not info.shipped else None
        backend = BackendSpec.make(info.model, kind=kind, url=url, weights=weights, **options)
        return cls(name=info.name, backend=backend, epsilon=info.epsilon, max_weight=info.max_weight,
                   prior_ratio=info.prior_ratio, max_constituents=info.max_constituents,
                   domain=info.domain, level=info.level, objects=info.objects)

    @classmethod
    def from_file(cls, path: str | Path, *, kind: str = "torch", url: str | None = None, name: str | None = None,
                  **options) -> "ReweighterSpec":
        """The reweighter at ``path`` (``reweight_<name>.pt``, with its ``.json`` beside it) or a shipped
        short name (``"fsr"``); ``name`` renames its branches."""
        spec = cls.from_info(find_reweighter(path), kind=kind, url=url, **options)
        if name is not None:
            spec = dataclasses.replace(spec, name=name)
        return spec

    def weights(self, probability: ak.Array) -> ak.Array:
        """Jagged float32 per-jet weights from jagged probabilities f of class 1 (NaN → 1)."""
        return jet_weights(probability, epsilon=self.epsilon, max_weight=self.max_weight, prior_ratio=self.prior_ratio)


@dataclass(frozen=True)
class WeightHead:
    """A reweighter's head in the scoring pass: the classifier's probability f of every jet →
    ``weight_<name>`` per jet (w = f/(1 − f), clipped; NaN → 1) and ``weight_<name>`` per event
    (the leading jet's, 1 for an event without jets)."""

    spec: ReweighterSpec

    def branches(self, name: str, values: np.ndarray, n_jets: np.ndarray
                 ) -> tuple[dict[str, ak.Array], dict[str, np.ndarray]]:
        per_jet = self.spec.weights(unflatten(values, n_jets))
        return {jet_weight_branch(self.spec.name): per_jet}, {event_weight_branch(self.spec.name): event_weights(per_jet)}


@dataclass(frozen=True)
class EventWeightHead:
    """An event-level reweighter's head: the classifier's probability f of every event →
    ``weight_<name>`` per event (w = f/(1 − f), clipped; NaN, an event without objects, → 1); no
    per-jet branch."""

    spec: ReweighterSpec

    def branches(self, name: str, values: np.ndarray, n_jets: np.ndarray
                 ) -> tuple[dict[str, ak.Array], dict[str, np.ndarray]]:
        weights = weights_from_probability(values, epsilon=self.spec.epsilon, max_weight=self.spec.max_weight,
                                           prior_ratio=self.spec.prior_ratio).astype(np.float32)
        return {}, {event_weight_branch(self.spec.name): weights}


def reweighter_models(reweighters: Sequence[ReweighterSpec], *, batch_config: BatchConfig) -> list[ScoredModel]:
    """The reweighters as models of one scoring pass (:func:`coffea_lorentz.pipeline.score_events`),
    each named after its classifier (``reweight_<name>``).

    Each is batched with its own ``max_constituents`` (the buckets and batch size of
    ``batch_config``); reweighters trained on the same number of constituents share one batching,
    cut at the smallest request size of their backends when ``batch_config`` sets none.
    """
    from .infer import process_backend

    groups: dict[int, list[ReweighterSpec]] = {}
    models = []
    for spec in reweighters:
        if spec.level == "event":  # each event-level reweighter batches the objects of whole events
            backend = process_backend(spec.backend)
            config = BatchConfig(max_constituents=spec.max_constituents or batch_config.max_constituents,
                                 buckets=batch_config.buckets, max_batch_size=batch_config.max_batch_size)
            models.append(ScoredModel(spec.backend.tagger, EventInput(resolved_batch_config(config, [backend]),
                                                                      spec.objects), backend, EventWeightHead(spec)))
            continue
        groups.setdefault(spec.max_constituents or batch_config.max_constituents, []).append(spec)
    for max_constituents, specs in groups.items():
        config = BatchConfig(max_constituents=max_constituents, buckets=batch_config.buckets,
                             max_batch_size=batch_config.max_batch_size)
        backends = {spec.backend.tagger: process_backend(spec.backend) for spec in specs}
        zoo = ZooInput(resolved_batch_config(config, backends.values()))
        models.extend(ScoredModel(spec.backend.tagger, zoo, backends[spec.backend.tagger], WeightHead(spec))
                      for spec in specs)
    return models


def reweight_events(events: ak.Array, reweighters: Sequence[ReweighterSpec], *, batch_config: BatchConfig,
                    source: str = "<events>", jets: JetConstituents | None = None, collection: str = "FatJet",
                    ) -> tuple[dict[str, ak.Array], dict[str, np.ndarray], list[TaggedChunk]]:
    """Weights of every jet of ``collection`` (default ``FatJet``) of ``events`` for each reweighter.

    One scoring pass (:func:`~coffea_lorentz.pipeline.score_events`) of :func:`reweighter_models`:
    every reweighter shares one read of the constituents (``jets``, when the caller has read them
    already); reweighters trained on the same number of constituents share one batching, each
    group batched with its own ``max_constituents`` (the buckets and batch size of
    ``batch_config``); served classifiers' requests are in flight together. Returns
    ``(jet_branches, event_branches, tagged)``: jet field → jagged float32 [events][jets] weights,
    branch → float32 [events] leading-jet weights, and a
    :class:`~coffea_lorentz.pipeline.TaggedChunk` of the classifiers' probabilities per group.
    """
    models = reweighter_models(reweighters, batch_config=batch_config)
    scored = score_events(events, models, collection=collection, source=source, jets=jets)
    jets = scored.inputs.jets
    groups: dict[int, dict[str, ak.Array]] = {}
    for model in models:
        if isinstance(model.input, EventInput):
            continue  # one value per event, no jets
        groups.setdefault(id(model.input), {})[score_branch(model.name)] = unflatten(scored.values[model.name],
                                                                                     jets.n_jets)
    return (dict(scored.jet_branches), dict(scored.event_branches),
            [TaggedChunk(jets=jets, scores=scores) for scores in groups.values()])


class Reweighter(Tagger):
    """Per-jet reweighting factors of coffea NanoEvents from one trained reweighter.

    Args:
        reweighter: a shipped short name (``"fsr"``; see
            :func:`coffea_lorentz.reweight.shipped_reweighters`) or the path of a
            ``reweight_<name>.pt`` written by ``coffea-lorentz reweight-train``.
        server: Triton gRPC address serving ``reweight_<name>`` (``coffea-lorentz serve --reweighter NAME``).
        backend: ``"triton"`` (default when ``server`` is given) or ``"torch"`` (in-process).
        batch_size, buckets, collection, **options: as for :class:`~coffea_lorentz.Tagger`.

    ``reweighter(events)`` → float32 jagged [events][FatJet] weights (eager and virtual events:
    now; dask-awkward: lazy). Raises :class:`~coffea_lorentz.errors.ConfigurationError` for an
    unknown reweighter before anything is read.
    """

    def __init__(self, reweighter: str | Path, *, server: str | None = None, backend: str | None = None,
                 batch_size: int | None = None, buckets: Sequence[int] = BatchConfig().buckets,
                 collection: str = "FatJet", **options):
        self.info = find_reweighter(reweighter)
        kind = backend or ("triton" if server else None)
        super().__init__(self.info.model, server=server, backend=backend, max_constituents=self.info.max_constituents,
                         batch_size=batch_size, buckets=buckets, collection=collection,
                         weights=self.info.weights if kind != "triton" and not self.info.shipped else None, **options)
        self.spec = ReweighterSpec.from_info(self.info, kind=self.specs[0].kind, url=self.specs[0].url, **options)

    @staticmethod
    def _check_models(names: Sequence[str]) -> None:
        """Found by :func:`~coffea_lorentz.reweight.find_reweighter` already."""

    @property
    def name(self) -> str:
        """Short name: the branches are ``weight_<name>`` and ``FatJet_weight_<name>``."""
        return self.info.name

    def __repr__(self) -> str:
        where = f"server={self.server!r}" if self.server else f"backend={self.backend!r}"
        return f"Reweighter({self.name!r}, {where}, max_constituents={self.batch_config.max_constituents})"

    @property
    def domain(self) -> TrainingDomain | None:
        """The jets its classifier was trained on (pT, |η|, jet type, sample); None when its record has none."""
        return self.info.domain

    def outside_domain(self, jets):
        """True for each jet outside :attr:`domain` (its weight is an extrapolation): ``jets`` with ``pt``
        (GeV) and ``eta``, e.g. ``events.FatJet`` [events][FatJet], eager or dask-awkward → bool, same shape."""
        return outside_mask(self.domain, jets)

    def _key(self) -> tuple:
        return ("reweighter", self.info, *super()._key())

    @property
    def level(self) -> str:
        """``"jet"`` (weights per fat jet) or ``"event"`` (the classifier sees whole events: one weight per event)."""
        return self.info.level

    def __call__(self, events):
        """Per-jet weights, jagged float32 [events][FatJet]; an event-level reweighter gives one
        weight per event, float32 [events] (eager or virtual events; a dask-awkward run goes through
        ``coffea-lorentz run`` or the processor)."""
        if self.info.level != "event":
            return super().__call__(events)
        if _is_dask(events):
            raise InvalidInputError(f"reweighter {self.name!r} is event-level: call it on eager or virtual events, "
                                    "or apply it with coffea-lorentz run --reweighter / ReweightProcessor")
        from .infer import process_backend

        backend = process_backend(self.spec.backend)
        source = str((getattr(events, "metadata", None) or {}).get("filename", "<events>"))
        model = ScoredModel(self.spec.backend.tagger,
                            EventInput(resolved_batch_config(self.batch_config, [backend]), self.info.objects),
                            backend, EventWeightHead(self.spec))
        scored = score_events(events, [model], source=source)
        return scored.event_branches[event_weight_branch(self.name)]

    def _transform(self, name: str, probability: ak.Array) -> ak.Array:
        return self.spec.weights(probability)

    @staticmethod
    def event_weight(jet_weights):
        """One weight per event: the leading fat jet's, 1 for an event without fat jets.

        ``jet_weights``: jagged [events][FatJet] (eager or dask-awkward) → [events].
        """
        return ak.fill_none(ak.firsts(jet_weights, axis=1), np.float32(1.0))

