"""The Triton client without a model behind it: URLs, signature checks, error kinds, unreachable servers, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import ConfigurationError, ModelMismatchError, ServerError
from coffea_lorentz.infer import BackendSpec, TorchBackend, TritonBackend
from coffea_lorentz.infer import triton_client
from coffea_lorentz.infer.triton_client import inspect_served_models, normalise_url
from coffea_lorentz.serve import free_port

GOOD_METADATA = {
    "inputs": [{"name": "p4", "datatype": "FP32", "shape": ["-1", "-1", "4"]},
               {"name": "mask", "datatype": "BOOL", "shape": ["-1", "-1"]}],
    "outputs": [{"name": "score", "datatype": "FP32", "shape": ["-1", "2"]}],
}


@pytest.mark.parametrize("url, expected", [("grpc://h:8001", "h:8001"), ("127.0.0.1:9", "127.0.0.1:9")])
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def test_http_url_is_refused():
    with pytest.raises(ServerError, match="expected grpc://"):
        normalise_url("http://localhost:8000")


@pytest.mark.parametrize("url", ["grpc://", "localhost", "h:port", "h:0", "h:70000", ":8001"])
def test_malformed_url_is_refused(url):
    with pytest.raises(ServerError, match="malformed server URL"):
        normalise_url(url)
    with pytest.raises(ServerError, match="malformed server URL"):
        inspect_served_models(url, ["identity"])


class _StatusError(Exception):
    """Stands in for tritonclient's InferenceServerException: ``status()`` gives the gRPC code."""

    def __init__(self, status: str, message: str = ""):
        super().__init__(f"[{status}] {message}")
        self._status = status

    def status(self) -> str:
        return self._status


@pytest.mark.parametrize(
    "error, kind",
    [
        (_StatusError("StatusCode.UNAVAILABLE"), "reconnect"),
        (ConnectionRefusedError("refused"), "reconnect"),
        (_StatusError("StatusCode.DEADLINE_EXCEEDED"), "slow down"),
        (_StatusError("StatusCode.RESOURCE_EXHAUSTED"), "slow down"),
        (triton_client._NotReady("server not ready"), "slow down"),
        (_StatusError("StatusCode.CANCELLED"), "retry"),
        (_StatusError("StatusCode.INVALID_ARGUMENT"), "permanent"),
        (_StatusError("StatusCode.NOT_FOUND"), "permanent"),
        (_StatusError("StatusCode.NOT_FOUND", "Unable to find shared memory region: 'r'"), "reconnect"),
        (_StatusError("StatusCode.UNIMPLEMENTED"), "permanent"),
        (_StatusError("StatusCode.FAILED_PRECONDITION"), "permanent"),
        (ModelMismatchError("changed"), "permanent"),
        (ConfigurationError("not served"), "permanent"),
        (_StatusError("StatusCode.INTERNAL"), "model failed"),
        (_StatusError("StatusCode.INTERNAL", "Stub process 'identity_0_0' is not healthy."), "slow down"),
    ],
)
def test_error_kinds(error, kind):
    assert triton_client._classify(error) == kind


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


def test_unreachable_server_without_budget_fails_at_once():
    url = f"127.0.0.1:{free_port()}"
    backend = TritonBackend(url, "lorentznet", server_wait_s=0, timeout_s=2)
    batch = Batch(p4=np.zeros((1, 4, 4), np.float32), mask=np.ones((1, 4), bool), jet_index=np.array([0]))
    with pytest.raises(ServerError, match=rf"Triton server {url}, model 'lorentznet': connect failed .*server_wait_s=0\)") as info:
        backend.infer_batches([batch])
    assert "\n" not in str(info.value)
    with pytest.raises(ServerError, match=rf"Triton server {url}: preflight .* failed"):
        inspect_served_models(url, ["lorentznet"], timeout_s=2)


def test_backoff_is_in_milliseconds_and_capped():
    backend = TritonBackend("h:1", "m", backoff_ms=100, max_backoff_ms=300, jitter_ms=0)
    assert [backend._delay_s(a) for a in (1, 2, 3, 10)] == [0.1, 0.2, 0.3, 0.3]
    jittered = TritonBackend("h:1", "m", backoff_ms=100, jitter_ms=50)
    assert all(0.1 <= jittered._delay_s(1) < 0.15 for _ in range(20))


def test_outage_budget_ends_at_server_wait_s(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(triton_client.time, "monotonic", lambda: now[0])
    outage = triton_client._Outage(server_wait_s=1.0, backoff_ms=400, max_backoff_ms=10_000, jitter_ms=0)
    assert outage.failed("first") == pytest.approx(0.4)
    now[0] += 0.4
    assert outage.failed("second") == pytest.approx(0.6)  # 0.8 s cut to what is left of the budget
    now[0] += 0.6
    assert outage.failed("third") is None
    outage.reset()
    assert outage.failed("after a success") == pytest.approx(0.4)


def test_backends_pickle_without_live_state():
    torch_backend = TorchBackend("identity")
    _ = torch_backend.model
    clone = pickle.loads(pickle.dumps(torch_backend))
    assert clone._model is None and clone.tagger == "identity"
    spec = BackendSpec.make("lorentznet", kind="triton", url="grpc://h:1", server_wait_s=5.0)
    backend = pickle.loads(pickle.dumps(spec)).create()
    assert isinstance(backend, TritonBackend) and backend.server_wait_s == 5.0 and backend.url == "h:1"
    assert hash(spec) == hash(BackendSpec.make("lorentznet", kind="triton", url="grpc://h:1", server_wait_s=5.0))
    clone = pickle.loads(pickle.dumps(backend))
    assert clone._client is None and clone._lock is not backend._lock
    with pytest.raises(TypeError, match="retries"):
        TritonBackend("h:1", "m", retries=3)
