"""The backend interface every inference path implements: :class:`Backend`.

What to run a tagger on, as picklable data, and the kind → implementation table are in
:mod:`coffea_lorentz.infer.spec`.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from ..batch import IN_PROCESS_BATCH_SIZE, Batch

__all__ = ["Backend", "NamedBackend"]


class _LazyResources:
    """Live resources (a gRPC channel, a model) kept in ``_lazy_attributes``: dropped on pickling
    and on :meth:`close`, recreated on first use in each process."""

    _lazy_attributes: tuple[str, ...] = ()

    def close(self) -> None:
        """Release connections or models held by this process; the backend stays usable."""
        for name in self._lazy_attributes:
            setattr(self, name, None)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        for name in self._lazy_attributes:
            state[name] = None
        return state


class Backend(_LazyResources, abc.ABC):
    """Computes tagger probabilities for padded batches.

    Subclasses implement :meth:`infer_batches` and keep any live resource (a gRPC channel, a torch
    module) in attributes that :meth:`__getstate__` drops, so the backend pickles to Dask workers
    and reconnects there lazily.
    """

    #: Attributes recreated lazily in each process, never pickled.
    _lazy_attributes: tuple[str, ...] = ()
    #: True when the work happens in another process (a server) and this one mostly waits: such a
    #: backend may run in a thread of its own beside other backends (see
    #: :func:`coffea_lorentz.pipeline.tag_events`). An in-process backend leaves it False.
    remote: bool = False

    @abc.abstractmethod
    def infer_batches(self, batches: Sequence[Batch]) -> list[np.ndarray]:
        """Probabilities float32 [B, n_classes] for each batch (``Batch.p4`` [B, N, 4] GeV,
        ``Batch.mask`` [B, N] bool), in order."""

    def request_size(self) -> int:
        """Jets per request when the user chose no batch size: :data:`~coffea_lorentz.batch.IN_PROCESS_BATCH_SIZE`
        here; a served backend answers what its server takes at most."""
        return IN_PROCESS_BATCH_SIZE



class NamedBackend(_LazyResources, abc.ABC):
    """Computes a spec'd model's outputs for batches of named tensors
    (:class:`~coffea_lorentz.spec_batch.SpecBatch`: ``tensors`` name → float32 array).

    Like :class:`Backend`, live resources sit in ``_lazy_attributes`` so the backend pickles.
    """

    remote: bool = False

    @abc.abstractmethod
    def infer_named(self, batches: Sequence) -> list[np.ndarray]:
        """float32 [b, K] for each batch, in order."""

    @abc.abstractmethod
    def input_signature(self) -> dict[str, tuple[str, list]]:
        """Input name → (dtype, shape with the batch axis; -1 or a name where dynamic), as the model declares it."""

    def request_size(self) -> int:
        """Jets per request when the user chose none."""
        return IN_PROCESS_BATCH_SIZE
