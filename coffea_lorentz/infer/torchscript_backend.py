"""In-process TorchScript for a spec'd model: ``forward`` takes the spec's inputs, by name, in
the order of its signature (what coffea's ``torch_wrapper`` loads)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import InferenceError
from .base import NamedBackend

__all__ = ["TorchScriptBackend"]


class TorchScriptBackend(NamedBackend):
    """A TorchScript file run on the CPU in this process.

    Args:
        path: the TorchScript ``.pt``.
        n_threads: torch intra-op threads while it computes (restored after; None: leave torch's).
    """

    _lazy_attributes = ("_module",)

    def __init__(self, path: str, *, n_threads: int | None = None):
        self.path = str(path)
        self.n_threads = n_threads
        self._module = None

    @property
    def module(self):
        if self._module is None:
            import torch

            self._module = torch.jit.load(self.path, map_location="cpu").eval()
        return self._module

    def argument_names(self) -> list[str]:
        return [argument.name for argument in self.module.forward.schema.arguments[1:]]

    def input_signature(self) -> dict[str, tuple[str, list]]:
        # TorchScript declares names and types, not shapes: every axis is dynamic as far as it says
        return {name: ("FP32", []) for name in self.argument_names()}

    def infer_named(self, batches: Sequence) -> list[np.ndarray]:
        import torch

        from ..threads import thread_count

        module, names = self.module, self.argument_names()
        results = []
        with thread_count(self.n_threads), torch.inference_mode():
            for batch in batches:
                try:
                    values = module(*(torch.from_numpy(batch.tensors[name]) for name in names))
                except RuntimeError as err:
                    shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in batch.tensors.items())
                    raise InferenceError(f"{self.path}: TorchScript failed on {shapes}: {err}") from err
                results.append(values.float().cpu().numpy().reshape(len(batch), -1))
        return results
