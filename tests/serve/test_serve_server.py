"""The real Triton server: inference over gRPC against in-process torch, startup failures, stop."""

from __future__ import annotations

import itertools
import os
import socket
import threading

import numpy as np
import psutil
import pytest
import torch

from coffea_lorentz.errors import InvalidInputError, ServerError, ServerStartError
from coffea_lorentz.export import ScoredTagger
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository, read_repository_info
from coffea_lorentz.serve import ServerConfig, TritonServer
from coffea_lorentz.testing import server_unavailable_reason

grpcclient = pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is needed to talk to the server")

needs_server = pytest.mark.skipif(
    server_unavailable_reason() is not None, reason=f"no local Triton server: {server_unavailable_reason()}"
)


def _jets(n_jets: int, n_constituents: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Massless-ish constituents: ``p4`` [n_jets, n_constituents, 4] float32 GeV, ``mask`` bool."""
    rng = np.random.default_rng(seed)
    momentum = rng.normal(scale=30.0, size=(n_jets, n_constituents, 3))
    energy = np.sqrt((momentum**2).sum(-1) + 0.1**2)
    p4 = np.concatenate([energy[..., None], momentum], axis=-1).astype(np.float32)
    lengths = rng.integers(1, n_constituents + 1, size=n_jets)
    mask = np.arange(n_constituents)[None, :] < lengths[:, None]
    p4[~mask] = 0.0
    return p4, mask


def _inputs(p4: np.ndarray, mask: np.ndarray) -> list:
    p4_input = grpcclient.InferInput("p4", list(p4.shape), "FP32")
    p4_input.set_data_from_numpy(p4)
    mask_input = grpcclient.InferInput("mask", list(mask.shape), "BOOL")
    mask_input.set_data_from_numpy(mask)
    return [p4_input, mask_input]


def _eager_scores(name: str, p4: np.ndarray, mask: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return ScoredTagger(pretrained(name))(torch.from_numpy(p4), torch.from_numpy(mask)).numpy()


@needs_server
@pytest.mark.slow
def test_grpc_scores_match_in_process_torch(triton_server):
    """Every served tagger, two constituent counts N: scores equal the eager torch ones."""
    info = read_repository_info(triton_server.config.repository)
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    for name, (n_jets, n_constituents, seed) in itertools.product(info["taggers"], ((5, 7, 1), (3, 40, 2))):
        p4, mask = _jets(n_jets, n_constituents, seed)
        result = client.infer(name, _inputs(p4, mask), outputs=[grpcclient.InferRequestedOutput("score")])
        scores = result.as_numpy("score")
        assert scores.shape == (n_jets, info["models"][name]["n_classes"])
        assert scores.dtype == np.float32
        np.testing.assert_allclose(scores, _eager_scores(name, p4, mask), atol=1e-5, rtol=0)
        np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)


@needs_server
@pytest.mark.slow
def test_concurrent_requests_of_mixed_lengths(triton_server):
    """Requests of different N reaching the server together each get their own scores back."""
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    requests = [_jets(2 + index % 3, (5, 9, 17)[index % 3], 10 + index) for index in range(12)]
    results: dict[int, np.ndarray] = {}
    errors: list = []
    done = threading.Semaphore(0)

    def callback(index: int, result=None, error=None) -> None:
        if error is not None:
            errors.append(error)
        else:
            results[index] = result.as_numpy("score")
        done.release()

    for index, (p4, mask) in enumerate(requests):
        client.async_infer(
            "identity",
            _inputs(p4, mask),
            callback=lambda result, error, index=index: callback(index, result=result, error=error),
            outputs=[grpcclient.InferRequestedOutput("score")],
        )
    for _ in requests:
        assert done.acquire(timeout=60), "no answer within 60 s"
    assert errors == []
    for index, (p4, mask) in enumerate(requests):
        np.testing.assert_allclose(results[index], _eager_scores("identity", p4, mask), atol=1e-5, rtol=0)


@needs_server
@pytest.mark.slow
def test_inconsistent_shapes_are_reported_to_the_client(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    p4, _ = _jets(2, 6, 3)
    _, mask = _jets(2, 4, 3)
    with pytest.raises(Exception, match=r"expected p4 \[B, N, 4\] and mask \[B, N\]"):
        client.infer("identity", _inputs(p4, mask))


@needs_server
@pytest.mark.slow
def test_server_reports_urls_and_ready_models(triton_server):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    assert client.is_server_ready()
    for name in read_repository_info(triton_server.config.repository)["taggers"]:
        assert client.is_model_ready(name)
    host, port = triton_server.http_url.split(":")
    assert host == "127.0.0.1" and int(port) == triton_server.http_port
    assert triton_server.log_path.is_file()


@pytest.fixture(scope="module")
def identity_repository(tmp_path_factory):
    return build_repository(
        tmp_path_factory.mktemp("stop") / "repo", {"identity": pretrained("identity")}, intra_op_threads=1
    )


@needs_server
@pytest.mark.slow
def test_stop_leaves_no_process_and_is_idempotent(identity_repository):
    server = TritonServer(ServerConfig(repository=identity_repository))
    server.start()
    leader = psutil.Process(server.pid)
    family = [leader, *leader.children(recursive=True)]
    assert any("triton_python_backend_stub" in " ".join(p.cmdline()) for p in family[1:])
    server.stop()
    server.stop()
    assert server.pid is None and not server.is_running()
    for process in family:
        with pytest.raises(ProcessLookupError):
            os.kill(process.pid, 0)


@needs_server
@pytest.mark.slow
def test_serve_forever_announces_endpoints_and_reports_a_dead_server(identity_repository):
    """``serve_forever`` off the main thread: endpoints announced, no "Ctrl-C" line (no signal
    reaches it), and a server that dies raises :class:`ServerError` with the log, leaving nothing behind."""
    server = TritonServer(ServerConfig(repository=identity_repository))
    lines: list[str] = []
    ready = threading.Event()
    outcome: list[BaseException] = []

    def announce(line: str) -> None:
        lines.append(line)
        if line.lstrip().startswith("log"):
            ready.set()

    def serve() -> None:
        try:
            server.serve_forever(announce=announce)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            outcome.append(err)

    thread = threading.Thread(target=serve)
    thread.start()
    assert ready.wait(timeout=120), lines
    assert lines[0].startswith("Triton server ready in") and f"pid {server.pid}" in lines[0]
    assert any(line.strip().startswith(f"gRPC     grpc://{server.grpc_url}") for line in lines)
    assert not any("Ctrl-C" in line for line in lines)
    os.kill(server.pid, 9)
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ServerError), outcome
    assert "exited with status" in str(outcome[0])
    assert server.pid is None and not server.is_running()


@needs_server
@pytest.mark.slow
def test_bad_repository_raises_with_log_tail(tmp_path):
    model_dir = tmp_path / "repo" / "broken_model"
    (model_dir / "1").mkdir(parents=True)
    (model_dir / "config.pbtxt").write_text('name: "broken_model"\nbackend: "python"\nthis is not protobuf text\n')
    server = TritonServer(ServerConfig(repository=tmp_path / "repo", startup_timeout_s=60))
    with pytest.raises(ServerStartError) as raised:
        server.start()
    message = str(raised.value)
    assert "exited with status" in message
    assert "broken_model" in message.split("log ", 1)[1]
    assert server.pid is None


def test_missing_server_environment_says_how_to_set_it_up(tmp_path):
    (tmp_path / "repo").mkdir()
    with pytest.raises(ServerStartError, match="setup_server_env.sh"):
        TritonServer(ServerConfig(repository=tmp_path / "repo", server_env=tmp_path / "no-env")).start()


def test_missing_repository_is_refused(tmp_path):
    with pytest.raises(ServerStartError, match="not a directory"):
        TritonServer(ServerConfig(repository=tmp_path / "absent")).start()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"grpc_port": 70000}, "grpc_port"),
        ({"model_control_mode": "sometimes"}, "model_control_mode"),
        ({"startup_timeout_s": 0}, "timeouts"),
    ],
)
def test_invalid_server_config(tmp_path, options, message):
    with pytest.raises(InvalidInputError, match=message):
        ServerConfig(repository=tmp_path, **options)


def test_urls_before_start_raise(tmp_path):
    server = TritonServer(ServerConfig(repository=tmp_path))
    with pytest.raises(ServerStartError, match="not started"):
        _ = server.grpc_url
    server.stop()


def test_server_env_from_environment_variable(tmp_path, monkeypatch):
    from coffea_lorentz.serve import ENV_VARIABLE, find_server_env

    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path / "custom"))
    assert find_server_env() == (tmp_path / "custom").resolve()
    assert find_server_env(tmp_path / "explicit") == (tmp_path / "explicit").resolve()


@needs_server
@pytest.mark.slow
def test_taken_fixed_port_fails_with_reason(tmp_path):
    (tmp_path / "empty_repository").mkdir()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        server = TritonServer(ServerConfig(repository=tmp_path / "empty_repository", grpc_port=port))
        with pytest.raises(ServerStartError, match="already in use"):
            server.start()
    assert server.pid is None


def test_a_start_the_python_backend_aborts_on_its_lock_is_retried(tmp_path):
    """Triton's python backend now and then aborts with ``boost::interprocess::lock_exception``
    while it sets up a model instance (an upstream fault). Here a real model's first instance dies
    that way, writing the same line into the server log; the start is retried and the server comes up."""
    model_dir = tmp_path / "repo" / "flaky"
    (model_dir / "1").mkdir(parents=True)
    attempts = tmp_path / "attempts"
    (model_dir / "config.pbtxt").write_text(
        'name: "flaky"\nbackend: "python"\nmax_batch_size: 4\n'
        'input [{ name: "x" data_type: TYPE_FP32 dims: [1] }]\n'
        'output [{ name: "y" data_type: TYPE_FP32 dims: [1] }]\n'
        'instance_group [{ kind: KIND_CPU count: 1 }]\n')
    (model_dir / "1" / "model.py").write_text(
        "import os, sys\n"
        "class TritonPythonModel:\n"
        "    def initialize(self, args):\n"
        f"        path = {str(attempts)!r}\n"
        "        n = int(open(path).read()) + 1 if os.path.exists(path) else 1\n"
        "        open(path, 'w').write(str(n))\n"
        "        if n == 1:\n"
        "            sys.stderr.write(\"terminate called after throwing an instance of "
        "'boost::interprocess::lock_exception'\\n\")\n"
        "            sys.stderr.flush()\n"
        "            os.abort()\n"
        "    def execute(self, requests):\n"
        "        return []\n")
    with TritonServer(ServerConfig(repository=tmp_path / "repo", startup_timeout_s=120)) as server:
        assert server.is_running()
        assert attempts.read_text() == "2"
