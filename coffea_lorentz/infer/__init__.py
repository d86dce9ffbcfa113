"""Infer: one backend interface, two implementations.

- :class:`~coffea_lorentz.infer.triton_client.TritonBackend` — a Triton Inference Server over gRPC.
- :class:`~coffea_lorentz.infer.torch_backend.TorchBackend` — the same tagger in-process with torch.

Both take a list of :class:`~coffea_lorentz.batch.Batch` and return, per batch, float32
probabilities [B, n_classes]. Backends are cheap to pickle: the connection or model is created
lazily on first use in each process (each Dask worker) and never pickled.
"""

from .base import Backend, BackendSpec, process_backend
from .torch_backend import TorchBackend
from .triton_client import ServedModel, TritonBackend, inspect_served_models

__all__ = ["Backend", "BackendSpec", "ServedModel", "TorchBackend", "TritonBackend", "inspect_served_models", "process_backend"]
