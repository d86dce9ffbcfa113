"""The ``ModelInfer`` request written straight from the arrays parses as the request tritonclient builds."""

from __future__ import annotations

import numpy as np
import pytest

from coffea_lorentz.infer.message import _varint, request_bytes

service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2", reason="tritonclient[grpc] is not installed")


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**21 + 5, 2**35])
def test_varint_matches_protobuf(value):
    from google.protobuf.internal.encoder import _VarintBytes

    assert _varint(value) == _VarintBytes(value)


def test_request_parses_with_the_tensors_bytes_in_order():
    import tritonclient.grpc as grpcclient
    from tritonclient.grpc._utils import _get_inference_request

    rng = np.random.default_rng(0)
    p4 = rng.normal(size=(70, 33, 4)).astype(np.float32)  # 36,960 bytes: a multi-byte length
    mask = rng.random((70, 33)) < 0.7
    pieces = request_bytes(model="lloca", version="", inputs=[("p4", "FP32", p4), ("mask", "BOOL", mask)], output="score")
    ours = service_pb2.ModelInferRequest.FromString(b"".join(pieces))
    inputs = []
    for name, array, datatype in (("p4", p4, "FP32"), ("mask", mask, "BOOL")):
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    theirs = _get_inference_request(model_name="lloca", inputs=inputs, model_version="", request_id="",
                                    outputs=[grpcclient.InferRequestedOutput("score")], sequence_id=0,
                                    sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None)
    assert ours == theirs
    assert ours.raw_input_contents[0] == p4.tobytes() and ours.raw_input_contents[1] == mask.tobytes()
