"""In-process ONNX Runtime for a spec'd model (a weaver export, any ``.onnx``): named float32
inputs, the first output read (or the one the spec names first)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigurationError, InferenceError
from .base import NamedBackend

__all__ = ["OnnxBackend"]


class OnnxBackend(NamedBackend):
    """ONNX Runtime on the CPU in this process.

    Args:
        path: the ``.onnx`` file.
        output: the output tensor to read (None: the model's first).
        n_threads: ONNX Runtime intra-op threads (None: its default, one per core).
    """

    _lazy_attributes = ("_session",)

    def __init__(self, path: str, *, output: str | None = None, n_threads: int | None = None):
        self.path = str(path)
        self.output = output
        self.n_threads = n_threads
        self._session = None

    @property
    def session(self):
        """The ``onnxruntime.InferenceSession``, opened on first use in this process."""
        if self._session is None:
            try:
                import onnxruntime
            except ImportError:
                raise ConfigurationError("backend 'onnx' needs onnxruntime: pip install 'coffea-lorentz[onnx]'") from None
            options = onnxruntime.SessionOptions()
            if self.n_threads is not None:
                options.intra_op_num_threads = int(self.n_threads)
                options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(self.path, sess_options=options,
                                                         providers=["CPUExecutionProvider"])
        return self._session

    def input_signature(self) -> dict[str, tuple[str, list]]:
        types = {"tensor(float)": "FP32", "tensor(double)": "FP64", "tensor(bool)": "BOOL",
                 "tensor(int64)": "INT64", "tensor(int32)": "INT32"}
        return {node.name: (types.get(node.type, node.type), [d if isinstance(d, int) else -1 for d in node.shape])
                for node in self.session.get_inputs()}

    def output_names(self) -> list[str]:
        return [node.name for node in self.session.get_outputs()]

    def infer_named(self, batches: Sequence) -> list[np.ndarray]:
        session = self.session
        output = [self.output] if self.output else [session.get_outputs()[0].name]
        results = []
        for batch in batches:
            try:
                (values,) = session.run(output, dict(batch.tensors))
            except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
                shapes = ", ".join(f"{name} {list(array.shape)}" for name, array in batch.tensors.items())
                raise InferenceError(f"{self.path}: ONNX Runtime failed on {shapes}: {err}") from err
            results.append(np.asarray(values, dtype=np.float32).reshape(len(batch), -1))
        return results
