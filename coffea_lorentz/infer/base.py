"""The backend interface every inference path implements."""

from __future__ import annotations

import abc
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..batch import Batch
from ..errors import InvalidInputError

__all__ = ["Backend", "BackendSpec", "process_backend"]


class Backend(abc.ABC):
    """Computes tagger probabilities for padded batches.

    Subclasses implement :meth:`infer_batches` and keep any live resource (a gRPC channel, a torch
    module) in attributes that :meth:`__getstate__` drops, so the backend pickles to Dask workers
    and reconnects there lazily.
    """

    #: Attributes recreated lazily in each process, never pickled.
    _lazy_attributes: tuple[str, ...] = ()

    @abc.abstractmethod
    def infer_batches(self, batches: Sequence[Batch]) -> list[np.ndarray]:
        """Probabilities float32 [B, n_classes] for each batch, in order."""

    def close(self) -> None:
        """Release connections or models held by this process; the backend stays usable."""
        for name in self._lazy_attributes:
            setattr(self, name, None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in self._lazy_attributes:
            state[name] = None
        return state


@dataclass(frozen=True, kw_only=True)
class BackendSpec:
    """What to run a tagger on, as plain picklable data.

    Attributes:
        tagger: tagger name (see :func:`coffea_lorentz.models.available`); the served model name.
        kind: ``"triton"`` (gRPC client) or ``"torch"`` (in-process).
        url: Triton gRPC address ``HOST:PORT`` (``grpc://`` prefix allowed); needed for ``"triton"``.
        weights: state-dict file for ``"torch"``; default: the shipped weights of the tagger.
        options: extra keyword options of the backend (``timeout_s``, ``server_wait_s``, ``max_in_flight``, …) as
            ``(name, value)`` pairs, so the spec stays hashable; :meth:`make` takes them as keywords.
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
        if self.kind == "triton":
            from .triton_client import TritonBackend

            if not self.url:
                raise InvalidInputError("a Triton backend needs a server URL (grpc://HOST:PORT)")
            return TritonBackend(self.url, self.tagger, **dict(self.options))
        if self.kind == "torch":
            from .torch_backend import TorchBackend

            return TorchBackend(self.tagger, weights=self.weights, **dict(self.options))
        raise InvalidInputError(f"unknown backend kind {self.kind!r}; expected 'triton' or 'torch'")


@functools.lru_cache(maxsize=16)
def process_backend(spec: BackendSpec) -> Backend:
    """The backend for ``spec`` in this process, created once and reused by every later chunk.

    On a Dask worker this keeps one gRPC connection (or one torch model) per worker process
    instead of one per chunk.
    """
    return spec.create()
