"""The Triton client against a real server that fails: killed and restarted on the same ports, hung
past the request timeout, never there; and the preflight against a real server."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import ConfigurationError, ServerError
from coffea_lorentz.infer.triton_client import ServedModel, TritonBackend, inspect_served_models
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository, read_repository_info
from coffea_lorentz.serve import ServerConfig, TritonServer, free_port
from coffea_lorentz.testing import require_triton, server_unavailable_reason
from fault_injection import FaultAt

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                       reason=f"no local Triton server: {server_unavailable_reason()}"),
]

TAGGER = "identity"
#: A copy of the identity tagger whose config.pbtxt declares p4 as [B, N, 3].
WRONG_SIGNATURE = "identity_p4_xyz"
N_JETS_PER_BATCH = 64
N_CONSTITUENTS = 32


def make_batches(n_batches: int, seed: int = 3) -> list[Batch]:
    """``n_batches`` batches of 64 jets × 32 constituents with ragged masks; energies of a few GeV,
    so the identity tagger's probabilities differ from jet to jet."""
    rng = np.random.default_rng(seed)
    p4 = rng.normal(0.0, 1.0, (n_batches, N_JETS_PER_BATCH, N_CONSTITUENTS, 4)).astype(np.float32)
    p4[..., 0] = np.linalg.norm(p4[..., 1:], axis=-1) + rng.uniform(0.0, 2.0, p4.shape[:-1]).astype(np.float32)
    n_real = rng.integers(1, N_CONSTITUENTS + 1, (n_batches, N_JETS_PER_BATCH))
    mask = np.arange(N_CONSTITUENTS) < n_real[..., None]
    p4 = np.where(mask[..., None], p4, np.float32(0.0))
    jet_index = np.arange(n_batches * N_JETS_PER_BATCH).reshape(n_batches, N_JETS_PER_BATCH)
    return [Batch(p4=p4[i], mask=mask[i], jet_index=jet_index[i]) for i in range(n_batches)]


class SendTimes(Sequence):
    """``batches`` that note the ``time.monotonic()`` of every access; the client takes a batch once
    per request it sends (and once more when its answer arrives)."""

    def __init__(self, batches: Sequence[Batch]):
        self.batches = batches
        self.times_s: list[float] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        self.times_s.append(time.monotonic())
        return self.batches[index]


def fixed_ports() -> tuple[int, int, int]:
    ports: set[int] = set()
    while len(ports) < 3:
        ports.add(free_port())
    return tuple(sorted(ports))  # type: ignore[return-value]


def server_config(repository: Path, ports: tuple[int, int, int], **options) -> ServerConfig:
    http, grpc, metrics = ports
    return ServerConfig(repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics, **options)


def computed_jets(server: TritonServer, model: str = TAGGER) -> int:
    """Jets the server has run through ``model`` so far (Triton's ``inference_count``), read once
    the count stops changing, so requests still queued on the server are included."""
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    previous = -1
    while True:
        with urllib.request.urlopen(url, timeout=10) as response:
            count = sum(int(entry.get("inference_count", 0)) for entry in json.load(response)["model_stats"])
        if count == previous:
            return count
        previous = count
        time.sleep(0.5)


def assert_same_scores(scored: list[np.ndarray], clean: list[np.ndarray]) -> None:
    assert len(scored) == len(clean)
    for got, expected in zip(scored, clean, strict=True):
        np.testing.assert_array_equal(got, expected)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("faults") / "models", {TAGGER: pretrained(TAGGER)},
                            intra_op_threads=1)


@pytest.fixture(scope="module")
def preflight_server(tmp_path_factory):
    """A server on free ports serving the identity tagger and a copy declaring the wrong ``p4`` shape."""
    identity = pretrained(TAGGER)
    path = build_repository(tmp_path_factory.mktemp("preflight") / "models",
                            {TAGGER: identity, WRONG_SIGNATURE: identity}, intra_op_threads=1)
    config_path = path / WRONG_SIGNATURE / "config.pbtxt"
    config_path.write_text(config_path.read_text().replace("dims: [ -1, 4 ]", "dims: [ -1, 3 ]"))
    with TritonServer(ServerConfig(repository=path)) as server:
        yield server


@pytest.mark.parametrize("shared_memory", [False, True])
def test_server_killed_and_restarted_on_the_same_ports(repository, shared_memory):
    """SIGKILL of the whole server mid-call, a new server on the same ports 5 s later: the call
    reconnects and returns exactly what a clean run returns. With shared memory the regions are
    registered again with the new server, also when it restarted between two calls."""
    ports = fixed_ports()
    batches = make_batches(24)
    first = TritonServer(server_config(repository, ports)).start()
    servers = [first]
    restart_errors: list[BaseException] = []

    def restart() -> None:
        time.sleep(5.0)
        try:
            # Started from this short-lived thread, so it must not die with it.
            servers.append(TritonServer(server_config(repository, ports, die_with_parent=False)).start())
        except BaseException as err:  # noqa: BLE001 - reported by the test
            restart_errors.append(err)

    restarter = threading.Thread(target=restart, daemon=True)

    def kill() -> None:
        os.killpg(first.pid, signal.SIGKILL)
        first.stop()  # reaps the killed process
        restarter.start()

    try:
        clean = TritonBackend(first.grpc_url, TAGGER).infer_batches(batches)
        backend = TritonBackend(first.grpc_url, TAGGER, max_in_flight=4, timeout_s=10, server_wait_s=60,
                                backoff_ms=100, max_backoff_ms=1_000, jitter_ms=50, shared_memory=shared_memory)
        faulty = FaultAt(batches, at=8, fault=kill)
        scored = backend.infer_batches(faulty)
        assert faulty.struck
        restarter.join()
        assert not restart_errors, restart_errors
        assert len(servers) == 2 and servers[1].is_running()
        assert backend._generation >= 2  # the client was rebuilt after the server went away
        assert_same_scores(scored, clean)
        if shared_memory:
            registered = backend.client.get_system_shared_memory_status(as_json=True).get("regions", {})
            assert set(backend._shared.names) <= set(registered)
            os.killpg(servers[1].pid, signal.SIGKILL)  # between calls: the first request finds no region
            servers[1].stop()
            servers.append(TritonServer(server_config(repository, ports, die_with_parent=False)).start())
            assert_same_scores(backend.infer_batches(batches), clean)
            backend.close()
    finally:
        if restarter.ident is not None:
            restarter.join()  # a server it starts later would outlive the test
        for server in servers:
            server.stop()
    assert not any(server.is_running() for server in servers)


def test_hung_server_is_not_flooded_with_resent_requests(repository):
    """The whole server is SIGSTOPped just before a call and SIGCONTed after twice the request
    timeout. The call completes with a clean run's scores. While the server is stopped the client
    sends its first window of 8 requests and nothing more (re-sending the window at each timeout
    would send 16 or more), and the server computes at most 1.5× the jets needed: the stopped
    window may be computed besides its re-sent copies (24 + 8 of 24 batches, 1.33×), a second
    re-sent window on top of it would not fit (24 + 16 of 24, 1.67×)."""
    timeout_s = 2.0
    max_in_flight = 8
    batches = make_batches(24)
    needed = len(batches) * N_JETS_PER_BATCH
    server = TritonServer(server_config(repository, fixed_ports())).start()
    resumed_at_s: list[float] = []

    def resume() -> None:
        resumed_at_s.append(time.monotonic())
        os.killpg(server.pid, signal.SIGCONT)

    try:
        backend = TritonBackend(server.grpc_url, TAGGER, max_in_flight=max_in_flight, timeout_s=timeout_s,
                                server_wait_s=60, backoff_ms=10, jitter_ms=10)
        clean = backend.infer_batches(batches)
        before = computed_jets(server)
        assert before == needed
        recorded = SendTimes(batches)
        os.killpg(server.pid, signal.SIGSTOP)
        timer = threading.Timer(2 * timeout_s, resume)
        timer.start()
        try:
            scored = backend.infer_batches(recorded)
        finally:
            timer.join()
        assert_same_scores(scored, clean)
        sent_while_stopped = sum(t < resumed_at_s[0] for t in recorded.times_s)
        assert sent_while_stopped == max_in_flight
        computed = computed_jets(server) - before
        assert needed <= computed <= 1.5 * needed, f"the server computed {computed} jets for {needed} needed"
    finally:
        os.killpg(server.pid, signal.SIGCONT)
        server.stop()
    assert not server.is_running()


def test_server_wait_budget_runs_out_against_a_closed_port():
    url = f"127.0.0.1:{free_port()}"
    backend = TritonBackend(f"grpc://{url}", TAGGER, timeout_s=1, server_wait_s=2, backoff_ms=100, max_backoff_ms=500)
    with pytest.raises(ServerError, match=rf"Triton server {url}, model '{TAGGER}': connect failed .*server_wait_s=2\)") as info:
        backend.infer_batches(make_batches(1))
    assert "\n" not in str(info.value)
    with pytest.raises(ServerError, match=rf"Triton server {url}: preflight .*server_wait_s=1\)"):
        inspect_served_models(url, [TAGGER], server_wait_s=1, timeout_s=1)


def test_preflight_reports_the_served_model(preflight_server):
    served = inspect_served_models(f"grpc://{preflight_server.grpc_url}", [TAGGER], max_batch_size=256)
    info = read_repository_info(preflight_server.config.repository)
    assert served == {TAGGER: ServedModel(name=TAGGER, version="1", max_batch_size=1024, n_classes=2,
                                          sha256=info["models"][TAGGER]["sha256"])}


@pytest.mark.parametrize(
    ("models", "max_batch_size", "message"),
    [
        ((TAGGER, "lorentznet_v9"), None,
         rf"does not serve a ready model 'lorentznet_v9'; it serves: {TAGGER}, {WRONG_SIGNATURE}$"),
        ((TAGGER,), 4096, rf"model '{TAGGER}' .*batch size 4096 jets is above the served max_batch_size 1024"),
        ((WRONG_SIGNATURE,), None, rf"model '{WRONG_SIGNATURE}' .*input 'p4' is FP32 \[-1, -1, 3\], expected FP32"),
    ],
)
def test_preflight_refuses_what_the_run_cannot_use(preflight_server, models, max_batch_size, message):
    with pytest.raises(ConfigurationError, match=message) as info:
        inspect_served_models(preflight_server.grpc_url, models, max_batch_size=max_batch_size)
    assert "\n" not in str(info.value)
