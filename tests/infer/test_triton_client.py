"""The Triton client without a model behind it: URLs, signature checks, unreachable servers, pickling."""

from __future__ import annotations

import pickle
import socket

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import ModelMismatchError, ServerError
from coffea_lorentz.infer import BackendSpec, TorchBackend, TritonBackend
from coffea_lorentz.infer.triton_client import normalise_url

GOOD_METADATA = {
    "inputs": [{"name": "p4", "datatype": "FP32", "shape": ["-1", "-1", "4"]},
               {"name": "mask", "datatype": "BOOL", "shape": ["-1", "-1"]}],
    "outputs": [{"name": "score", "datatype": "FP32", "shape": ["-1", "2"]}],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("url, expected", [("grpc://h:8001", "h:8001"), ("127.0.0.1:9", "127.0.0.1:9")])
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def test_http_url_is_refused():
    with pytest.raises(ServerError, match="expected grpc://"):
        normalise_url("http://localhost:8000")


def test_metadata_check_accepts_the_contract():
    assert TritonBackend("h:1", "lorentznet")._check_metadata(GOOD_METADATA) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m: m["inputs"].pop(1), "no input 'mask'"),
        (lambda m: m["inputs"][0].update(datatype="FP64"), "input 'p4' is FP64"),
        (lambda m: m["inputs"][0].update(shape=["-1", "-1", "3"]), "expected FP32 \\[-1, -1, 4\\]"),
        (lambda m: m["outputs"][0].update(name="logits"), "no output 'score'"),
    ],
)
def test_metadata_mismatch_names_the_tensor(change, message):
    import copy

    metadata = copy.deepcopy(GOOD_METADATA)
    change(metadata)
    with pytest.raises(ModelMismatchError, match=message):
        TritonBackend("h:1", "lorentznet")._check_metadata(metadata)


def test_unreachable_server_fails_after_retries():
    backend = TritonBackend(f"127.0.0.1:{free_port()}", "lorentznet", retries=2, backoff_ms=50, jitter_ms=10, timeout_s=2)
    batch = Batch(p4=np.zeros((1, 4, 4), np.float32), mask=np.ones((1, 4), bool), jet_index=np.array([0]))
    with pytest.raises(ServerError, match=r"127\.0\.0\.1:\d+ .* after 3 tries"):
        backend.infer_batches([batch])


def test_backoff_is_in_milliseconds():
    backend = TritonBackend("h:1", "m", backoff_ms=100, jitter_ms=0)
    assert [backend._delay_s(a) for a in (1, 2, 3)] == [0.1, 0.2, 0.4]


def test_backends_pickle_without_live_state():
    torch_backend = TorchBackend("identity")
    _ = torch_backend.model
    clone = pickle.loads(pickle.dumps(torch_backend))
    assert clone._model is None and clone.tagger == "identity"
    spec = BackendSpec.make("lorentznet", kind="triton", url="grpc://h:1", retries=5)
    backend = pickle.loads(pickle.dumps(spec)).create()
    assert isinstance(backend, TritonBackend) and backend.retries == 5 and backend.url == "h:1"
    assert hash(spec) == hash(BackendSpec.make("lorentznet", kind="triton", url="grpc://h:1", retries=5))
