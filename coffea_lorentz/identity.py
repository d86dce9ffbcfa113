"""The identity of a model: a SHA-256 of what determines its outputs, hashed canonically.

A serialized TorchScript or ONNX file is not a stable identity: saving the same module twice can
give different bytes (TorchScript records a per-save ``serialization_id`` and declares scripted
code in an order that follows Python's per-process hash seed). The identity here is computed from

- the module's class (``module.qualname``) and, for a :class:`~coffea_lorentz.models.base.TaggerModel`,
  its ``n_classes``, ``beam_reference`` and config dataclass, as canonical JSON;
- every entry of the ``state_dict`` in sorted key order: name, dtype, shape and the little-endian
  bytes of the contiguous CPU tensor;
- ``extra``: anything else that changes the outputs (the scoring head, a model spec), canonical JSON.

So the same tagger with the same weights gets the same identity in every process and on every
machine, and any change of architecture, config or a single weight changes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["IDENTITY_FORMAT", "canonical_sha256", "model_identity", "file_identity"]

#: Version of the identity recipe; part of every hash, so a change of recipe never collides.
IDENTITY_FORMAT = "coffea-lorentz-model-identity/1"


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def _description(module) -> dict[str, Any]:
    cls = type(module)
    described: dict[str, Any] = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    config = getattr(module, "config", None)
    if config is not None and dataclasses.is_dataclass(config):
        described["config"] = dataclasses.asdict(config)
    for attribute in ("n_classes", "beam_reference"):
        if hasattr(module, attribute):
            described[attribute] = getattr(module, attribute)
    return described


def model_identity(module, *, extra: Mapping[str, Any] | None = None) -> str:
    """Hex SHA-256 identity of a torch ``module`` (see the module docstring); ``extra``: JSON-able
    settings that also determine the outputs."""
    import torch

    digest = hashlib.sha256()
    digest.update(_canonical({"format": IDENTITY_FORMAT, "model": _description(module), "extra": dict(extra or {})}))
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(_canonical([name, str(tensor.dtype), list(tensor.shape)]))
        if tensor.dtype == torch.bool:
            tensor = tensor.to(torch.uint8)
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def file_identity(path: str | Path, *, extra: Mapping[str, Any] | None = None) -> str:
    """Hex SHA-256 identity of a model given as a file the user made (its bytes never change once
    made), with ``extra`` settings (a spec) that also determine the outputs."""
    digest = hashlib.sha256()
    digest.update(_canonical({"format": IDENTITY_FORMAT, "file": True, "extra": dict(extra or {})}))
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_sha256(value: Mapping[str, Any]) -> str:
    """Hex SHA-256 of ``value`` as canonical JSON, with the recipe's version: the identity of a
    model known only by description (a model on a server, by its published identity and spec)."""
    return hashlib.sha256(_canonical({"format": IDENTITY_FORMAT, "described": dict(value)})).hexdigest()
