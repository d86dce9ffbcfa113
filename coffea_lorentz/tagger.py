"""One tagger object for coffea analyses: eager, virtual and dask-awkward NanoEvents alike.

>>> from coffea_lorentz import Tagger
>>> tagger = Tagger("lloca", server="grpc://triton.example:8001")   # or backend="torch"
>>> tagger.names, tagger.batch_config.max_constituents
(('lloca',), 32)

``tagger(events)`` gives each ``FatJet``'s score, float32 jagged [events][FatJet] (the probability
of class 1, top; NaN for a jet with no constituents):

- ``events`` eager or virtual (``NanoEventsFactory.from_root(..., mode="virtual")``, what
  ``processor.Runner`` hands a processor): the chunk is read, batched and scored now;
- ``events`` dask-awkward (``mode="dask"``, what ``coffea.dataset_tools.apply_to_fileset`` hands a
  processor): a lazy ``dask_awkward.map_partitions`` node is added to the graph. It needs only the
  constituent columns (``nFatJet``, ``FatJetPFCands_pFCandsIdx``, ``FatJetPFCands_jetIdx`` or
  ``FatJet_nConstituents``, ``nPFCands``, ``PFCands_pt/eta/phi/mass``), which is what
  ``dask_awkward.report_necessary_columns`` reports, and it scores each partition on the worker
  that computes it, exactly as the eager path scores that partition.

Several taggers (``Tagger(["lloca", "lorentz_efn"], ...)``) share one read and one batching per
chunk; the call then returns ``{tagger name: scores}``.

A ``Tagger`` is plain data (tagger names, backend kind and address, batching): it pickles to Dask
workers, and each worker process opens its own gRPC connection (or builds its own torch model) on
first use and reuses it for every later chunk (:func:`coffea_lorentz.infer.process_backend`).

Why not a ``coffea.ml_tools.numpy_call_wrapper`` subclass: that wrapper learns the output type by
running the model on length-one stand-in inputs while the graph is built (a server round trip per
graph, with every input column touched), and its numpy call takes rectangular arrays, while the
inputs here are ragged constituent lists that are bucketed and padded per chunk. The typetracer
pass here touches only the needed columns and never calls the model.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .batch import BatchConfig
from .errors import ConfigurationError
from .pipeline import tag_events

__all__ = ["Tagger"]

#: Backend kinds a :class:`Tagger` accepts.
_BACKENDS = ("triton", "torch", "onnx")


def _is_dask(events) -> bool:
    module = type(events).__module__
    return module.startswith("dask_awkward")


def _check_names(names: Sequence[str]) -> None:
    from .models import available, shipped_weights

    known = set(available())
    for name in names:
        if name in known or shipped_weights(name) is not None or ":" in name:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigurationError(f"Tagger: unknown tagger {name!r}{hint} (available: {', '.join(sorted(known))})")


class Tagger:
    """Scores every jet of one collection (``FatJet`` by default) of coffea NanoEvents with one or more taggers.

    Args:
        taggers: a tagger name (``tagger(events)`` returns one array) or a sequence of names
            (``tagger(events)`` returns ``{name: array}``); see :func:`coffea_lorentz.models.available`.
        server: Triton gRPC address, ``grpc://HOST:PORT`` or ``HOST:PORT``, serving every tagger
            under its name (``coffea-lorentz serve``).
        backend: ``"triton"`` (default when ``server`` is given), ``"torch"`` (in-process, the
            same weights; no server) or ``"onnx"`` (in-process ONNX Runtime, the same weights
            exported on first use; the fastest on a CPU).
        max_constituents: leading-pT constituents kept per jet; default: as many as the taggers'
            shipped weights were trained on (the fewest among them, else 128), as ``coffea-lorentz
            run`` does (:func:`coffea_lorentz.batch.default_max_constituents`).
        batch_size: most jets per request; default: the served model's ``max_batch_size`` (Triton),
            256 in-process. A larger one than the server takes is sent as several requests.
        buckets: padded lengths N a batch may have.
        weights: torch and onnx only: a state-dict file for the tagger (one tagger) or ``{name: file}``.
        signal_class: which class probability is the score.
        collection: the jets scored: ``"FatJet"`` (default), ``"Jet"`` (AK4) or any collection with
            ``<collection>PFCands``; the result is [events][<collection>].
        **options: backend options (``timeout_s``, ``server_wait_s``, ``max_in_flight``,
            ``shared_memory=True`` for a server on this host, ``tls=TlsConfig(ca=...)`` and
            ``token=BearerToken.from_file(...)`` (:mod:`coffea_lorentz.infer.security`; a
            ``grpcs://`` server always means TLS), … for Triton; ``n_threads`` for torch),
            see :class:`coffea_lorentz.infer.BackendSpec` and :class:`coffea_lorentz.infer.TritonBackend`.

    Raises :class:`~coffea_lorentz.errors.ConfigurationError` for an unknown tagger, a missing
    server or an unknown backend, before anything is read.
    """

    def __new__(cls, taggers=None, *args, **kwargs):
        """``Tagger(PATH, ...)`` — a model file or folder — gives a :class:`~coffea_lorentz.model_tagger.ModelTagger`."""
        import os

        from .user_model import SpecModel, looks_like_path

        if cls is Tagger and (isinstance(taggers, (os.PathLike, SpecModel))
                              or (isinstance(taggers, str) and looks_like_path(taggers))):
            from .model_tagger import ModelTagger

            return ModelTagger(taggers, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, taggers: str | Sequence[str], *, server: str | None = None, backend: str | None = None,
                 max_constituents: int | None = None, batch_size: int | None = None,
                 buckets: Sequence[int] = BatchConfig().buckets, weights: str | Mapping[str, str] | None = None,
                 signal_class: int = 1, collection: str = "FatJet", **options):
        from .infer import BackendSpec

        self.single = isinstance(taggers, str)
        names = (taggers,) if self.single else tuple(taggers)
        if not names:
            raise ConfigurationError("Tagger: no tagger given")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"Tagger: a tagger is named twice in {list(names)}")
        kind = backend or ("triton" if server else None)
        if kind is None:
            raise ConfigurationError("Tagger: give server='grpc://HOST:PORT' (Triton) or backend='torch' (in-process)")
        if kind not in _BACKENDS:
            raise ConfigurationError(f"Tagger: backend must be one of {', '.join(map(repr, _BACKENDS))}, got {kind!r}")
        if kind == "triton" and not server:
            raise ConfigurationError("Tagger: backend='triton' needs server='grpc://HOST:PORT'")
        if weights is not None and kind == "triton":
            raise ConfigurationError("Tagger: weights= is for backend='torch' or 'onnx'; a Triton server serves its own")
        per_tagger = self._weights(names, weights)
        self._check_models([name for name in names if name not in per_tagger])
        if max_constituents is None:
            max_constituents = self._default_max_constituents(names, per_tagger)
        self.names: tuple[str, ...] = names
        self.batch_config = BatchConfig(max_constituents=int(max_constituents), buckets=tuple(int(n) for n in buckets),
                                        max_batch_size=None if batch_size is None else int(batch_size))
        self.signal_class = int(signal_class)
        self.collection = str(collection)
        self.specs = tuple(
            BackendSpec.make(name, kind=kind, url=server if kind == "triton" else None, weights=per_tagger.get(name),
                             **options)
            for name in names
        )

    # -- construction helpers -------------------------------------------------------------
    @staticmethod
    def _check_models(names: Sequence[str]) -> None:
        """Refuse unknown tagger names (a subclass serving other models checks its own)."""
        _check_names(names)

    @staticmethod
    def _weights(names: tuple[str, ...], weights: str | Mapping[str, str] | None) -> dict[str, str]:
        if weights is None:
            return {}
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(names))
            if unknown:
                raise ConfigurationError(f"Tagger: weights given for {unknown}, which are not among {list(names)}")
            return {name: str(path) for name, path in weights.items()}
        if len(names) != 1:
            raise ConfigurationError("Tagger: with several taggers, give weights={name: file}")
        return {names[0]: str(weights)}

    @staticmethod
    def _default_max_constituents(names: tuple[str, ...], weights: dict[str, str]) -> int:
        from .batch import default_max_constituents

        default = default_max_constituents([name for name in names if name not in weights])
        if weights:
            from .models import weights_info

            trained = [weights_info(name, path).get("train_config", {}).get("max_constituents")
                       for name, path in weights.items()]
            shipped = [default] if len(weights) < len(names) else []
            values = [int(n) for n in trained if n is not None] + shipped
            default = min(values) if values else default
        return default

    # -- what it is -----------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """``"triton"`` or ``"torch"``."""
        return self.specs[0].kind

    @property
    def server(self) -> str | None:
        """The Triton address, None in-process."""
        return self.specs[0].url

    def __repr__(self) -> str:
        where = f"server={self.server!r}" if self.server else f"backend={self.backend!r}"
        names = repr(self.names[0]) if self.single else repr(list(self.names))
        extra = "" if self.collection == "FatJet" else f", collection={self.collection!r}"
        return f"Tagger({names}, {where}, max_constituents={self.batch_config.max_constituents}{extra})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Tagger) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple:
        return (self.single, self.names, self.specs, self.batch_config, self.signal_class, self.collection)

    def __dask_tokenize__(self) -> tuple:
        return ("coffea_lorentz.Tagger", self._key())

    # -- scoring --------------------------------------------------------------------------
    def __call__(self, events):
        """Scores of every ``FatJet`` of ``events``: jagged float32 [events][FatJet], or a dict of them.

        ``events``: coffea NanoEvents (``PFNanoAODSchema``), eager, virtual or dask-awkward. With
        dask-awkward the result is lazy (dask-awkward arrays); otherwise it is computed now.
        """
        if _is_dask(events):
            return self._lazy(events)
        scores = self.score_partition(events)
        return self._unpack(scores)

    def score_partition(self, events: ak.Array) -> ak.Array:
        """Scores of one eager, virtual or typetracer chunk, as one awkward array.

        One tagger: jagged float32 [events][FatJet]. Several: a record array [events] with one such
        field per tagger. On typetracer ``events`` (dask-awkward's type pass) only the needed
        columns are touched and an array of the result's type, without data, is returned; no model
        is called. This is the function each dask-awkward partition runs.
        """
        if ak.backend(events) == "typetracer":
            return self._typetracer_scores(events)
        from .infer import process_backend

        metadata = getattr(events, "metadata", None) or {}
        source = str(metadata.get("filename", "<events>"))
        backends = {spec.tagger: process_backend(spec) for spec in self.specs}
        tagged = tag_events(events, backends, batch_config=self.batch_config, source=source,
                            signal_class=self.signal_class, collection=self.collection)
        fields = {name: self._transform(name, tagged.scores[f"{name}_score"]) for name in self.names}
        return self._pack(fields)

    def _transform(self, name: str, probability: ak.Array) -> ak.Array:
        """What the call returns for model ``name`` from its jagged probabilities (a tagger: the score itself)."""
        return probability

    def _typetracer_scores(self, events: ak.Array) -> ak.Array:
        from .read import touch_constituent_columns

        touch_constituent_columns(events, collection=self.collection)
        example = ak.unflatten(np.zeros(1, dtype=np.float32), [1])  # [events][FatJet] float32
        return ak.Array(self._pack({name: example for name in self.names}).layout.to_typetracer(forget_length=True))

    def _pack(self, fields: dict[str, ak.Array]) -> ak.Array:
        if self.single:
            return fields[self.names[0]]
        return ak.zip(fields, depth_limit=1)

    def _unpack(self, scores):
        if self.single:
            return scores
        return {name: scores[name] for name in self.names}

    def _lazy(self, events):
        import dask_awkward as dak

        from .read import check_pfnano_fields

        check_pfnano_fields(events._meta, "<dask-awkward events>", self.collection)  # a missing branch fails here, not on a worker
        scores = dak.map_partitions(
            _ScorePartitions(self), events, meta=self._typetracer_scores(events._meta),
            label="coffea-lorentz-" + "-".join(self.names), output_divisions=1,
        )
        return self._unpack(scores)


@dataclass(frozen=True)
class _ScorePartitions:
    """The picklable function each dask-awkward partition runs (a :class:`Tagger`'s :meth:`~Tagger.score_partition`)."""

    tagger: Tagger

    def __call__(self, events: ak.Array) -> ak.Array:
        return self.tagger.score_partition(events)

    def __dask_tokenize__(self) -> tuple:
        return ("coffea_lorentz._ScorePartitions", self.tagger._key())
