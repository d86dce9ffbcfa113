"""What to run a tagger on, as plain picklable data, and the per-process backend built from it.

- :class:`BackendSpec` — tagger, backend kind, server URL or weights, backend options; pickles to
  Dask workers as plain data.
- :data:`BACKENDS` — backend kind → the function that builds it from a spec. Each imports its
  implementation only when called, so a Triton-only process never imports torch.
- :func:`process_backend` — the backend of a spec, created once per process (one gRPC connection
  or one torch model per Dask worker) and reused by every later chunk.

A new backend kind is a :class:`~coffea_lorentz.infer.base.Backend` subclass in its own module plus
one builder function and one row in :data:`BACKENDS` here.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import InvalidInputError

if TYPE_CHECKING:
    from .base import Backend

__all__ = ["BackendSpec", "BACKENDS", "process_backend"]


@dataclass(frozen=True, kw_only=True)
class BackendSpec:
    """What to run a tagger on, as plain picklable data.

    Attributes:
        tagger: tagger name (see :func:`coffea_lorentz.models.available`); the served model name.
            For ``"torch"`` also a ``"package.module:Class"`` target, which builds a tagger that is
            not in the registry (a registration made with :func:`coffea_lorentz.models.register` in
            the client process is not seen by Dask workers; a target is imported there).
        kind: a key of :data:`BACKENDS`: ``"triton"`` (gRPC client), ``"torch"`` (in-process) or
            ``"onnx"`` (in-process ONNX Runtime, the same weights exported on first use).
        url: Triton gRPC address ``HOST:PORT`` (``grpc://`` prefix allowed); needed for ``"triton"``.
        weights: state-dict file for ``"torch"`` and ``"onnx"``; default: the shipped weights of the tagger.
        options: extra keyword options of the backend (``timeout_s``, ``server_wait_s``, ``max_in_flight``,
            ``shared_memory``, ``n_threads``, …) as ``(name, value)`` pairs, so the spec stays hashable; :meth:`make`
            takes them as keywords.
    """

    tagger: str
    kind: str = "torch"
    url: str | None = None
    weights: str | None = None
    options: tuple[tuple[str, object], ...] = ()

    @classmethod
    def make(cls, tagger: str, *, kind: str = "torch", url: str | None = None, weights: str | None = None,
             **options) -> "BackendSpec":
        """A spec with backend ``options`` given as keywords."""
        return cls(tagger=tagger, kind=kind, url=url, weights=weights, options=tuple(sorted(options.items())))

    def create(self) -> Backend:
        """Instantiate the backend (nothing connects until the first request)."""
        try:
            build = BACKENDS[self.kind]
        except KeyError:
            expected = " or ".join(repr(kind) for kind in BACKENDS)
            raise InvalidInputError(f"unknown backend kind {self.kind!r}; expected {expected}") from None
        return build(self)


def _triton(spec: BackendSpec) -> Backend:
    from .triton_client import TritonBackend

    if not spec.url:
        raise InvalidInputError("a Triton backend needs a server URL (grpc://HOST:PORT)")
    return TritonBackend(spec.url, spec.tagger, **dict(spec.options))


def _torch(spec: BackendSpec) -> Backend:
    from .torch_backend import TorchBackend

    return TorchBackend(spec.tagger, weights=spec.weights, **dict(spec.options))


def _onnx(spec: BackendSpec) -> Backend:
    from .onnx_backend import OnnxTaggerBackend

    return OnnxTaggerBackend(spec.tagger, weights=spec.weights, **dict(spec.options))


#: Backend kind → builder of that backend from a :class:`BackendSpec` (read-only).
BACKENDS: Mapping[str, Callable[[BackendSpec], Backend]] = types.MappingProxyType(
    {"triton": _triton, "torch": _torch, "onnx": _onnx})


@functools.lru_cache(maxsize=16)
def process_backend(spec: BackendSpec) -> Backend:
    """The backend for ``spec`` in this process, created once and reused by every later chunk.

    On a Dask worker this keeps one gRPC connection (or one torch model) per worker process
    instead of one per chunk.
    """
    return spec.create()
