"""Infer: one backend interface, two implementations.

- :mod:`~coffea_lorentz.infer.base` — :class:`Backend`, the interface.
- :mod:`~coffea_lorentz.infer.spec` — :class:`BackendSpec` (picklable: what to run a tagger on),
  the kind → backend table :data:`BACKENDS` and :func:`process_backend`.
- :class:`~coffea_lorentz.infer.triton_client.TritonBackend` — a Triton Inference Server over gRPC.
- :class:`~coffea_lorentz.infer.torch_backend.TorchBackend` — the same tagger in-process with torch.

Both take a list of :class:`~coffea_lorentz.batch.Batch` and return, per batch, float32
probabilities [B, n_classes]. Backends are cheap to pickle: the connection or model is created
lazily on first use in each process (each Dask worker) and never pickled. Importing this package
(or the Triton path alone) does not import torch; ``TorchBackend`` is loaded on first access.
"""

from .base import Backend
from .spec import BACKENDS, BackendSpec, process_backend
from .triton_client import ServedModel, TritonBackend, inspect_served_models

__all__ = [
    "Backend",
    "BackendSpec",
    "BACKENDS",
    "ServedModel",
    "TorchBackend",
    "TritonBackend",
    "inspect_served_models",
    "process_backend",
]


def __getattr__(name: str):
    if name == "TorchBackend":  # imports torch: only when asked for
        from .torch_backend import TorchBackend

        return TorchBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
