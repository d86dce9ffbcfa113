"""A ``ModelInfer`` request written straight from the arrays: the tensors' bytes are copied once.

tritonclient builds a request by copying each input array into a Python ``bytes`` object
(``tobytes``), that into the protobuf message, and the message again when it is serialised —
three copies of every batch in the client before gRPC takes its own. Here the small part of the
request (model, version, the inputs' names, datatypes and shapes, the requested output) is
serialised by protobuf and the tensors are appended as the message's ``raw_input_contents``
fields (protobuf allows a message's fields in any order, and a repeated field's values are the
occurrences in order), joined with the header in one copy; the bytes go to the channel's
``ModelInfer`` method with no serialiser. The answer is tritonclient's own ``InferResult``, and a
failure its ``InferenceServerException`` (status kept), as ``async_infer`` gives them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

__all__ = ["send_infer"]

_METHOD = "/inference.GRPCInferenceService/ModelInfer"


def _varint(value: int) -> bytes:
    """``value`` (≥ 0) as a protobuf base-128 varint."""
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def request_bytes(*, model: str, version: str, inputs: Sequence[tuple[str, str, np.ndarray]], output: str) -> list:
    """The serialised ``ModelInferRequest`` as a list of pieces to join (header, then per input its
    field tag and length and the array itself, C-contiguous); ``inputs``: ``(name, datatype, array)``."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model, model_version=version)
    for name, datatype, array in inputs:
        request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
    request.outputs.add(name=output)
    field = service_pb2.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"]
    tag = _varint((field.number << 3) | 2)  # wire type 2: length-delimited
    pieces: list = [request.SerializeToString()]
    for _, _, array in inputs:
        pieces += [tag, _varint(array.nbytes), array]
    return pieces


def send_infer(client, *, model: str, version: str, arrays: Mapping[str, np.ndarray],
               inputs: Sequence[tuple[str, str]], output: str, callback: Callable, timeout_s: float) -> None:
    """Send one inference request on ``client`` (a ``tritonclient.grpc.InferenceServerClient``)
    asynchronously; ``callback(result=InferResult | None, error=InferenceServerException | None)``.

    ``inputs`` are ``(name, datatype)`` in the served order (``"BOOL"`` sends bool, anything else
    float32); ``arrays`` name → array [B, ...]. The client's plugins (a bearer token) add their
    headers to the call as with ``async_infer``.
    """
    import grpc
    from tritonclient.grpc import InferResult, service_pb2
    from tritonclient.grpc._utils import get_cancelled_error, get_error_grpc

    tensors = [(name, datatype, np.ascontiguousarray(arrays[name], dtype=bool if datatype == "BOOL" else np.float32))
               for name, datatype in inputs]
    message = b"".join(request_bytes(model=model, version=version, inputs=tensors, output=output))
    method = client._channel.unary_unary(_METHOD, request_serializer=None,
                                         response_deserializer=service_pb2.ModelInferResponse.FromString)

    def done(future) -> None:
        result = error = None
        try:
            result = InferResult(future.result())
        except grpc.RpcError as rpc_error:
            error = get_error_grpc(rpc_error)
        except grpc.FutureCancelledError:
            error = get_cancelled_error()
        callback(result=result, error=error)

    future = method.future(message, metadata=client._get_metadata(None), timeout=timeout_s)
    future.add_done_callback(done)
