"""A model brought with its spec, served by Triton: :class:`TritonSpecBackend`.

The model is served under its name with the spec's inputs (FP32 [B, C, P] or [B, P, C], P -1 for
a variable length) and output (FP32 [B, K]) — built into a repository by
:func:`coffea_lorentz.repository.build_repository`, or already on a facility's server. The client
is :class:`~coffea_lorentz.infer.triton_client.TritonBackend` with the spec's
:class:`~coffea_lorentz.infer.served.Signature`: the same requests in flight, retries, reconnection
and several-server balancing as the zoo's taggers. Before any chunk, :meth:`input_signature` (the
served inputs, read from the server) is compared with the spec by
:meth:`coffea_lorentz.user_model.SpecModel.check`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..modelspec import ModelSpec
from .base import NamedBackend
from .served import spec_signature
from .triton_client import TritonBackend
from .urls import split_urls

__all__ = ["TritonSpecBackend"]


class TritonSpecBackend(NamedBackend):
    """Runs :class:`~coffea_lorentz.spec_batch.SpecBatch` requests on the model ``model`` of the
    Triton server(s) at ``url``.

    Args:
        url: gRPC address(es), as for :class:`~coffea_lorentz.infer.triton_client.TritonBackend`.
        model: the served model's name.
        spec: the model's spec (input names, layouts, lengths; the output read is its first).
        client_options: further :class:`TritonBackend` options (``timeout_s``, ``server_wait_s``,
            ``max_in_flight``, …; ``shared_memory`` is ignored: it carries the zoo's tensors only).
    """

    remote = True

    def __init__(self, url: str, model: str, spec: ModelSpec, **client_options):
        client_options.pop("shared_memory", None)
        self.url = ",".join(split_urls(url))
        self.model = model
        self.spec = spec
        self.client = TritonBackend(url, model, signature=spec_signature(spec), **client_options)

    def close(self) -> None:
        self.client.close()

    def infer_named(self, batches: Sequence) -> list[np.ndarray]:
        return self.client.infer_batches(batches)

    def request_size(self) -> int:
        return self.client.request_size()

    def input_signature(self) -> dict[str, tuple[str, list]]:
        """The served model's inputs as its server declares them: name → (datatype, shape with -1
        for the batch and every dynamic axis)."""
        import tritonclient.grpc as grpcclient

        first = split_urls(self.url)[0]
        client = grpcclient.InferenceServerClient(first)
        try:
            metadata = client.get_model_metadata(self.model, as_json=True, client_timeout=self.client.timeout_s)
        finally:
            client.close()
        return {entry["name"]: (entry["datatype"], [int(size) for size in entry["shape"]])
                for entry in metadata.get("inputs", [])}
