"""Your own model in an analysis: ``Tagger(PATH)`` for an ONNX or TorchScript file with a spec,
or a ``coffea-lorentz train`` output folder.

>>> tagger = Tagger("weaver_export/", backend="onnx")          # doctest: +SKIP
>>> scores = tagger(events)                                    # {class name: [events][FatJet]}

``Tagger(PATH, ...)`` gives a :class:`ModelTagger` (see :func:`coffea_lorentz.user_model.load_model`
for what PATH may be). Like :class:`~coffea_lorentz.tagger.Tagger` it scores eager, virtual and
dask-awkward NanoEvents alike, reading only the branches the spec's variables need, and returns
one jagged float32 array [events][jets] per class, keyed by class name. It runs in-process —
``backend="onnx"`` (ONNX Runtime, the default for ``.onnx``) or ``"torch"`` (TorchScript) — or on
Triton: ``backend="triton"`` with ``server=URL`` (the model served there under its name, checked
to be this file with this spec), or without ``server`` on a local server started here with the
model built in (as ``coffea-lorentz serve --tagger PATH`` does) and stopped by :meth:`ModelTagger.close`
(or at the end of a ``with`` block, or of the process).
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
        backend: ``"onnx"``, ``"torch"`` or ``"triton"`` (default: ``"triton"`` with ``server``,
            else the file's format).
        server: Triton gRPC address (``grpc://HOST:PORT``) serving the model under its name.
        spec: a spec file (or :class:`~coffea_lorentz.modelspec.ModelSpec`) instead of the one beside the model.
        classes: class names, overriding the spec's.
        collection: the jet collection (``"FatJet"``, ``"Jet"``, …).
        batch_size: most jets per call of the model (default 256).
        n_threads: threads of ONNX Runtime / torch (default: theirs).
        **options: Triton client options (``timeout_s``, ``server_wait_s``, ``max_in_flight``, …;
            :class:`~coffea_lorentz.infer.triton_client.TritonBackend`), with ``backend="triton"`` only.

    The model's declared inputs (on Triton: as its server declares them, and its identity) are
    checked against the spec here, before any event is read.
    """

    def __init__(self, path: str | Path | SpecModel, *, backend: str | None = None, server: str | None = None,
                 spec=None, classes: Sequence[str] | None = None, collection: str = "FatJet",
                 batch_size: int | None = None, n_threads: int | None = None, **options):
        kind = backend or ("triton" if server else None)
        if kind not in (None, "onnx", "torch", "triton"):
            raise ConfigurationError(f"Tagger({path}): backend must be 'onnx', 'torch' or 'triton', got {kind!r}")
        if server and kind != "triton":
            raise ConfigurationError(f"Tagger({path}): server= is for backend='triton', got backend={kind!r}")
        if options and kind != "triton":
            raise ConfigurationError(f"Tagger({path}): unknown option(s) {', '.join(sorted(options))} for a model "
                                     "file in-process (Triton client options need backend='triton')")
        self.model = path if isinstance(path, SpecModel) else load_model(path, spec=spec, classes=classes)
        if classes and isinstance(path, SpecModel):
            self.model = self.model.with_classes(classes)
        self.collection = str(collection)
        self.batch_size = None if batch_size is None else int(batch_size)
        self._server = None
        if kind == "triton":
            self._backend, n_outputs = self._triton(server, options)
        else:
            self._backend = self.model.backend(kind, n_threads=n_threads)
            self.model.check(self._backend)
            n_outputs = output_size(self.model, self._backend)
        self.names: tuple[str, ...] = self.model.class_names(n_outputs)

    def _triton(self, server: str | None, options: dict):
        """The Triton client of the model (a local server started first when ``server`` is None) and
        its output count, the served model checked against the spec and the file's identity."""
        from .batch import BatchConfig
        from .infer.triton_spec import TritonSpecBackend, served_spec_models

        url = server or self._start_server()
        try:
            ((_, names),) = served_spec_models(url, [self.model], BatchConfig(max_batch_size=self.batch_size),
                                               server_wait_s=float(options.get("server_wait_s", 30.0)),
                                               tls=options.get("tls"), token=options.get("token"))
            backend = TritonSpecBackend(url, self.model.name, self.model.spec, **options)
        except BaseException:
            self.close()
            raise
        return backend, len(names)

    def _start_server(self) -> str:
        """Start a local Triton server serving the model (repository in the temp folder); its gRPC URL."""
        import os
        import tempfile
        import weakref

        from .repository import build_repository
        from .serve import REPOSITORY_PREFIX, ServerConfig, TritonServer

        folder = Path(tempfile.mkdtemp(prefix=f"{REPOSITORY_PREFIX}{os.getpid()}-"))
        try:
            repository = build_repository(folder / "models", {self.model.name: self.model}, intra_op_threads=1)
            server = TritonServer(ServerConfig(repository=repository)).start()
        except BaseException:
            _stop(None, folder)
            raise
        self._server = server
        self._finalizer = weakref.finalize(self, _stop, server, folder)
        return server.grpc_url

    @property
    def server(self) -> str | None:
        """The Triton address it scores on; None in-process."""
        return getattr(self._backend, "url", None)

    def close(self) -> None:
        """Stop the local Triton server this tagger started, if any (safe to call twice)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()
        self._server = None

    def __enter__(self) -> ModelTagger:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_finalizer", None)  # the server stays with the process that started it
        state["_server"] = None
        return state

    @property
    def backend(self) -> str:
        return {"OnnxBackend": "onnx", "TritonSpecBackend": "triton"}.get(type(self._backend).__name__, "torch")

    def __repr__(self) -> str:
        where = f", server={self.server!r}" if self.server else ""
        return (f"Tagger({self.model.path!r}, backend={self.backend!r}{where}, collection={self.collection!r}, "
                f"classes={list(self.names)})")

    def _key(self) -> tuple:
        return (self.model, self.backend, self.server, self.collection, self.batch_size)

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


def _stop(server, folder: Path) -> None:
    """Stop a local server and remove its repository folder."""
    import shutil

    if server is not None:
        server.stop()
    shutil.rmtree(folder, ignore_errors=True)


class _Partitions:
    """The picklable function each dask-awkward partition runs."""

    def __init__(self, tagger: ModelTagger):
        self.tagger = tagger

    def __call__(self, events: ak.Array) -> ak.Array:
        return self.tagger.score_partition(events)

    def __dask_tokenize__(self) -> tuple:
        return ("coffea_lorentz.model_tagger._Partitions", self.tagger.__dask_tokenize__())
