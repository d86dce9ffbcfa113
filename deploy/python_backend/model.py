"""Triton python-backend model that serves one exported coffea-lorentz tagger.

The same file is copied as ``NAME/1/model.py`` next to ``NAME/1/model.pt`` for every tagger of a
model repository; it knows nothing about the tagger itself. ``model.pt`` is the TorchScript export
(:func:`coffea_lorentz.export.export_torchscript`) whose ``forward(p4, mask)`` returns softmax
probabilities.

Tensors (the batch dimension B is implicit in ``config.pbtxt``):

- input ``p4``    FP32 [B, N, 4]: constituent four-vectors (E, px, py, pz) in GeV
- input ``mask``  BOOL [B, N]: True for real constituents, False for padding
- output ``score`` FP32 [B, n_classes]: class probabilities (sum to 1 along the last axis)

Requests that reach one ``execute`` call are grouped by constituent count N; each group runs as a
single forward pass and the result is split back per request. The model runs on the instance's GPU
when the instance group kind is ``KIND_GPU`` and CUDA is available, on the CPU otherwise.

Optional ``parameters`` in ``config.pbtxt``: ``intra_op_threads`` (torch CPU threads per instance;
"0" keeps the torch default).
"""

from __future__ import annotations

import json
import os

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

INPUT_P4 = "p4"
INPUT_MASK = "mask"


class TritonPythonModel:
    """Loads ``model.pt`` once per instance and scores batches of jets."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.model_name = config.get("name", args.get("model_name", "?"))
        self.output_name = config["output"][0]["name"]
        parameters = {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}
        n_threads = int(parameters.get("intra_op_threads", "0") or 0)
        if n_threads > 0:
            torch.set_num_threads(n_threads)

        kind = args.get("model_instance_kind", "CPU")
        device_id = int(args.get("model_instance_device_id", "0") or 0)
        if kind == "GPU" and torch.cuda.is_available():
            self.device = torch.device("cuda", device_id)
        else:
            self.device = torch.device("cpu")

        path = os.path.join(args["model_repository"], args["model_version"], "model.pt")
        self.model = torch.jit.load(path, map_location=self.device).eval()

    def _inputs(self, request) -> tuple[np.ndarray, np.ndarray]:
        p4 = pb_utils.get_input_tensor_by_name(request, INPUT_P4).as_numpy()
        mask = pb_utils.get_input_tensor_by_name(request, INPUT_MASK).as_numpy()
        if p4.ndim != 3 or p4.shape[-1] != 4 or mask.shape != p4.shape[:2]:
            raise ValueError(
                f"model {self.model_name}: expected p4 [B, N, 4] and mask [B, N], "
                f"got p4 {list(p4.shape)} and mask {list(mask.shape)}"
            )
        return p4, mask

    def execute(self, requests: list) -> list:
        responses: list = [None] * len(requests)
        groups: dict[int, list[tuple[int, np.ndarray, np.ndarray]]] = {}
        for index, request in enumerate(requests):
            try:
                p4, mask = self._inputs(request)
            except Exception as err:  # noqa: BLE001 - reported to the client, not raised in the server
                responses[index] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(err)))
                continue
            groups.setdefault(p4.shape[1], []).append((index, p4, mask))

        for members in groups.values():
            try:
                scores = self._score(
                    np.concatenate([p4 for _, p4, _ in members]),
                    np.concatenate([mask for _, _, mask in members]),
                )
            except Exception as err:  # noqa: BLE001 - reported to the client, not raised in the server
                message = f"model {self.model_name}: forward failed: {type(err).__name__}: {err}"
                for index, _, _ in members:
                    responses[index] = pb_utils.InferenceResponse(
                        output_tensors=[], error=pb_utils.TritonError(message)
                    )
                continue
            start = 0
            for index, p4, _ in members:
                stop = start + p4.shape[0]
                output = pb_utils.Tensor(self.output_name, np.ascontiguousarray(scores[start:stop]))
                responses[index] = pb_utils.InferenceResponse(output_tensors=[output])
                start = stop
        return responses

    def _score(self, p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``p4`` [B, N, 4] float32 GeV, ``mask`` [B, N] bool → probabilities [B, n_classes] float32."""
        with torch.no_grad():
            p4_tensor = torch.from_numpy(np.ascontiguousarray(p4, dtype=np.float32)).to(self.device)
            mask_tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.bool_)).to(self.device)
            scores = self.model(p4_tensor, mask_tensor)
        return scores.to(torch.float32).cpu().numpy()

    def finalize(self) -> None:
        self.model = None
