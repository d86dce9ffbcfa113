"""Triton python-backend model that serves a model brought with its spec (ONNX or TorchScript).

Copied as ``NAME/1/model.py`` next to ``NAME/1/model.onnx`` (run by ONNX Runtime, which the
server environment carries) or ``NAME/1/model.pt`` (TorchScript, whose ``forward`` takes the
inputs in the order of its arguments, by name). It knows nothing about the model itself: the input
and output names come from ``config.pbtxt``, which :func:`coffea_lorentz.repository.build_repository`
writes from the spec.

Tensors (the batch dimension B is implicit in ``config.pbtxt``): every input FP32, [B, C, P] or
[B, P, C] with P the same within one request; one output FP32 [B, K].

Requests that reach one ``execute`` call are grouped by the shapes of their inputs; each group runs
as one call of the model and the result is split back per request.

Optional ``parameters`` in ``config.pbtxt``: ``intra_op_threads`` (CPU threads per instance; "0"
keeps the runtime's default).
"""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Loads the model once per instance and runs batches of named tensors."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config.get("name", args.get("model_name", "?"))
        self.input_names = [entry["name"] for entry in config["input"]]
        self.output_name = config["output"][0]["name"]
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        n_threads = int(parameters.get("intra_op_threads", "0") or 0)
        folder = os.path.join(args["model_repository"], args["model_version"])
        onnx_path = os.path.join(folder, "model.onnx")
        if os.path.isfile(onnx_path):
            import onnxruntime

            options = onnxruntime.SessionOptions()
            if n_threads > 0:
                options.intra_op_num_threads = n_threads
                options.inter_op_num_threads = 1
            self.session = onnxruntime.InferenceSession(onnx_path, sess_options=options,
                                                        providers=["CPUExecutionProvider"])
            self.module = None
        else:
            import torch

            if n_threads > 0:
                torch.set_num_threads(n_threads)
            self.session = None
            self.module = torch.jit.load(os.path.join(folder, "model.pt"), map_location="cpu").eval()
            self.arguments = [argument.name for argument in self.module.forward.schema.arguments[1:]]

    def _run(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        if self.session is not None:
            (values,) = self.session.run([self.output_name], tensors)
            return np.asarray(values, dtype=np.float32)
        import torch

        with torch.inference_mode():
            values = self.module(*(torch.from_numpy(tensors[name]) for name in self.arguments))
        return values.float().cpu().numpy()

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict[str, np.ndarray]]]] = {}
        for index, request in enumerate(requests):
            tensors = {name: np.ascontiguousarray(pb_utils.get_input_tensor_by_name(request, name).as_numpy(),
                                                  dtype=np.float32) for name in self.input_names}
            shapes = tuple(tensors[name].shape[1:] for name in self.input_names)
            groups.setdefault(shapes, []).append((index, tensors))
        for members in groups.values():
            joined = {name: np.concatenate([tensors[name] for _, tensors in members]) for name in self.input_names}
            try:
                values = self._run(joined)
            except Exception as err:  # noqa: BLE001 - reported to the client, not raised in the server
                message = f"model {self.model_name}: failed: {type(err).__name__}: {err}"
                for index, _ in members:
                    responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))
                continue
            values = values.reshape(len(values), -1)
            start = 0
            for index, tensors in members:
                stop = start + len(tensors[self.input_names[0]])
                output = pb_utils.Tensor(self.output_name, np.ascontiguousarray(values[start:stop]))
                responses[index] = pb_utils.InferenceResponse(output_tensors=[output])
                start = stop
        return responses

    def finalize(self) -> None:
        self.session = self.module = None
