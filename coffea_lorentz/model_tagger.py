"""Your own model in an analysis: ``Tagger(PATH)`` for an ONNX or TorchScript file with a spec.

>>> tagger = Tagger("weaver_export/", backend="onnx")          # doctest: +SKIP
>>> scores = tagger(events)                                    # {class name: [events][FatJet]}

``Tagger(PATH, ...)`` gives a :class:`ModelTagger` (see :func:`coffea_lorentz.user_model.load_model`
for what PATH may be). Like :class:`~coffea_lorentz.tagger.Tagger` it scores eager, virtual and
dask-awkward NanoEvents alike, reading only the branches the spec's variables need, and returns
one jagged float32 array [events][jets] per class, keyed by class name. It runs in-process:
``backend="onnx"`` (ONNX Runtime, the default for ``.onnx``) or ``"torch"`` (TorchScript).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import awkward as ak
import numpy as np

from .errors import ConfigurationError
from .pipeline import output_size, score_with_spec
from .user_model import SpecModel, load_model

__all__ = ["ModelTagger"]


class ModelTagger:
    """Scores every jet of ``collection`` with a model an analyst brings.

    Args:
        path: a weaver export folder, an ``.onnx`` / TorchScript ``.pt`` with a spec beside it, or
            ``NAME=PATH`` (see :func:`~coffea_lorentz.user_model.load_model`); or a loaded
            :class:`~coffea_lorentz.user_model.SpecModel`.
        backend: ``"onnx"`` or ``"torch"`` (default: the file's format).
        spec: a spec file (or :class:`~coffea_lorentz.modelspec.ModelSpec`) instead of the one beside the model.
        classes: class names, overriding the spec's.
        collection: the jet collection (``"FatJet"``, ``"Jet"``, …).
        batch_size: most jets per call of the model (default 256).
        n_threads: threads of ONNX Runtime / torch (default: theirs).

    The model's declared inputs are checked against the spec here, before any event is read.
    """

    def __init__(self, path: str | Path | SpecModel, *, backend: str | None = None, spec=None,
                 classes: Sequence[str] | None = None, collection: str = "FatJet", batch_size: int | None = None,
                 n_threads: int | None = None, **options):
        if options:
            raise ConfigurationError(f"Tagger({path}): unknown option(s) {', '.join(sorted(options))} for a model file")
        self.model = path if isinstance(path, SpecModel) else load_model(path, spec=spec, classes=classes)
        self._backend = self.model.backend(backend, n_threads=n_threads)
        self.model.check(self._backend)
        self.collection = str(collection)
        self.batch_size = None if batch_size is None else int(batch_size)
        self.names: tuple[str, ...] = self.model.class_names(output_size(self.model, self._backend))

    @property
    def backend(self) -> str:
        return "onnx" if type(self._backend).__name__ == "OnnxBackend" else "torch"

    def __repr__(self) -> str:
        return (f"Tagger({self.model.path!r}, backend={self.backend!r}, collection={self.collection!r}, "
                f"classes={list(self.names)})")

    def _key(self) -> tuple:
        return (self.model, self.backend, self.collection, self.batch_size)

    def __dask_tokenize__(self) -> tuple:
        return ("coffea_lorentz.ModelTagger", self._key(), self.model.identity)

    def __call__(self, events):
        """Class name → jagged float32 [events][jets] (lazy dask-awkward arrays for dask events)."""
        if type(events).__module__.startswith("dask_awkward"):
            return self._lazy(events)
        scores = self.score_partition(events)
        return {name: scores[name] for name in self.names}

    def score_partition(self, events: ak.Array) -> ak.Array:
        """One chunk's outputs as a record array [events] of per-class jagged fields; on typetracer
        events only the needed columns are touched."""
        if ak.backend(events) == "typetracer":
            return self._typetracer(events)
        metadata = getattr(events, "metadata", None) or {}
        fields = score_with_spec(events, self.model, self._backend, collection=self.collection,
                                 batch_size=self.batch_size, source=str(metadata.get("filename", "<events>")))
        return ak.zip(fields, depth_limit=1)

    def _typetracer(self, events: ak.Array) -> ak.Array:
        from .features import touch_objects

        for kind in dict.fromkeys(spec_input.objects for spec_input in self.model.spec.inputs):
            touch_objects(events, self.collection, kind, self.model.spec.variables(kind))
        example = ak.unflatten(np.zeros(1, dtype=np.float32), [1])
        packed = ak.zip({name: example for name in self.names}, depth_limit=1)
        return ak.Array(packed.layout.to_typetracer(forget_length=True))

    def _lazy(self, events):
        import dask_awkward as dak

        scores = dak.map_partitions(_Partitions(self), events, meta=self._typetracer(events._meta),
                                    label=f"coffea-lorentz-{self.model.name}", output_divisions=1)
        return {name: scores[name] for name in self.names}


class _Partitions:
    """The picklable function each dask-awkward partition runs."""

    def __init__(self, tagger: ModelTagger):
        self.tagger = tagger

    def __call__(self, events: ak.Array) -> ak.Array:
        return self.tagger.score_partition(events)

    def __dask_tokenize__(self) -> tuple:
        return ("coffea_lorentz.model_tagger._Partitions", self.tagger.__dask_tokenize__())
