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

from ..batch import BatchConfig
from ..errors import ConfigurationError
from ..modelspec import ModelSpec
from .base import NamedBackend
from .served import spec_signature
from .triton_client import TritonBackend
from .urls import split_urls

__all__ = ["TritonSpecBackend", "served_spec_models"]


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
        from .security import open_client

        first = split_urls(self.url)[0]
        client = open_client(first, tls=self.client.tls, token=self.client.token)
        try:
            metadata = client.get_model_metadata(self.model, as_json=True, client_timeout=self.client.timeout_s)
        finally:
            client.close()
        return {entry["name"]: (entry["datatype"], [int(size) for size in entry["shape"]])
                for entry in metadata.get("inputs", [])}


def served_spec_models(url: str, models: Sequence, batch_config: BatchConfig, *,
                       server_wait_s: float, **security) -> list[tuple[object, tuple[str, ...]]]:
    """Check that the server at ``url`` serves every model brought with its spec
    (:class:`~coffea_lorentz.user_model.SpecModel`) as the spec describes it, before any chunk;
    returns (model, class names) for each, a ``"served"`` model with the ``model_sha256`` its
    server publishes. A model with a file here must be served with that file's identity."""
    import dataclasses

    from .triton_client import inspect_served_models

    if not models:
        return []
    served = inspect_served_models(url, [model.name for model in models], max_batch_size=batch_config.max_batch_size,
                                   server_wait_s=min(server_wait_s, 30.0),
                                   signatures={model.name: spec_signature(model.spec) for model in models},
                                   **security)
    checked = []
    for model in models:
        info = served[model.name]
        if model.format == "served":
            model = dataclasses.replace(model, served_sha256=info.sha256)
        elif info.sha256 is not None and info.sha256 != model.identity:
            raise ConfigurationError(
                f"model {model.name!r} at Triton server {url} has model_sha256 {info.sha256[:12]}, but {model.path} "
                f"with its spec is {model.identity[:12]}: the server serves another model under that name")
        checked.append((model, model.class_names(info.n_classes)))
    return checked
