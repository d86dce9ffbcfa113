"""In-process ONNX Runtime: :class:`OnnxBackend` for a spec'd model (a weaver export, any
``.onnx``: named float32 inputs, the first output read or the one the spec names first), and
:class:`OnnxTaggerBackend` for the zoo's taggers (``p4`` + ``mask``), exported to ONNX in memory
on first use in each process (:func:`coffea_lorentz.export.export_onnx`, parity checked)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigurationError, InferenceError
from .base import Backend, NamedBackend

__all__ = ["OnnxBackend", "OnnxTaggerBackend", "onnx_session"]


def onnx_session(model: str | bytes, n_threads: int | None = None, *, spinning: bool = False):
    """An ONNX Runtime CPU session of ``model`` (a path or the bytes of a model) with ``n_threads``
    intra-op threads (None: ONNX Runtime's default, one per core).

    Every graph optimisation on (``ORT_ENABLE_ALL``), nodes run one after the other
    (``ORT_SEQUENTIAL``, one inter-op thread: the taggers' graphs are chains), and the pool's
    threads sleep between operators instead of spinning (``spinning=False``, the default): on cores
    shared with Dask workers, torch or other sessions a spinning pool takes the cores the others
    need, and on 2 busy cores it cost LLoCa up to half its own throughput (README, "ONNX Runtime for the
    zoo"). ``spinning=True`` is ONNX Runtime's own default, for a machine the session has to itself.
    """
    try:
        import onnxruntime
    except ImportError:
        raise ConfigurationError("backend 'onnx' needs onnxruntime: pip install 'coffea-lorentz[onnx]'") from None
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if n_threads is not None:
        options.intra_op_num_threads = int(n_threads)
    spin = "1" if spinning else "0"
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    try:
        return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        where = model if isinstance(model, str) else "the exported model"
        reason = " ".join(str(err).split())
        raise ConfigurationError(f"{where}: ONNX Runtime cannot load it ({reason[:300]}); is it an ONNX model, "
                                 "whole (not cut short by a copy)?") from None


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
            self._session = onnx_session(self.path, self.n_threads)
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


class OnnxTaggerBackend(Backend):
    """A tagger of the zoo (the same weights as ``"torch"`` and Triton) run by ONNX Runtime here.

    Args:
        tagger: a registry name or ``"package.module:Class"`` target.
        weights: state-dict file; default: the shipped weights.
        n_threads: ONNX Runtime intra-op threads (None: its default).
    """

    _lazy_attributes = ("_session",)

    def __init__(self, tagger: str, *, weights: str | None = None, n_threads: int | None = None):
        self.tagger = tagger
        self.weights = weights
        self.n_threads = n_threads
        self._session = None

    @property
    def session(self):
        """The session, exported and opened on first use in this process."""
        if self._session is None:
            from ..export import export_onnx
            from ..models import pretrained

            self._session = onnx_session(export_onnx(pretrained(self.tagger, weights=self.weights)), self.n_threads)
        return self._session

    def infer_batches(self, batches: Sequence) -> list[np.ndarray]:
        session = self.session
        outputs = []
        for batch in batches:
            try:
                (score,) = session.run(["score"], {"p4": batch.p4, "mask": batch.mask})
            except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
                raise InferenceError(f"tagger {self.tagger!r} (ONNX Runtime) failed on p4 {list(batch.p4.shape)}, "
                                     f"mask {list(batch.mask.shape)}: {err}") from err
            outputs.append(np.asarray(score, dtype=np.float32))
        return outputs
