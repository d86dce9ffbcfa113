"""One client, several real Triton servers (``grpc://a,grpc://b``): balanced requests, a server
killed mid-call whose requests go to the other, servers that disagree about the model, and the
preflight over a list."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import ConfigurationError, ModelMismatchError, ServerError
from coffea_lorentz.infer import TritonBackend, inspect_served_models
from coffea_lorentz.infer.triton_client import split_urls
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.serve import ServerConfig, TritonServer, free_port
from coffea_lorentz.testing import require_triton, server_unavailable_reason
from fault_injection import FaultAt

needs_servers = pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                                   reason=f"no local Triton server: {server_unavailable_reason()}")

TAGGER = "identity"


def test_split_urls():
    assert split_urls("grpc://a:8001, b:9001,grpc://a:8001") == ("a:8001", "b:9001")
    with pytest.raises(ServerError, match="no server URL"):
        split_urls(" , ")
    with pytest.raises(ServerError, match="malformed server URL 'b'"):
        split_urls("a:8001,b")


def test_backend_with_several_urls_pickles_without_connections():
    import pickle

    backend = TritonBackend("grpc://127.0.0.1:1,127.0.0.1:2", TAGGER, server_cooldown_s=2.0)
    assert backend.url == "127.0.0.1:1,127.0.0.1:2"
    copy = pickle.loads(pickle.dumps(backend))
    assert [server.url for server in copy._servers] == ["127.0.0.1:1", "127.0.0.1:2"]
    assert copy.server_cooldown_s == 2.0 and copy._pool is None


def make_batches(n_batches: int, seed: int = 5) -> list[Batch]:
    """``n_batches`` batches of 64 jets × 24 constituents, energies of a few GeV."""
    rng = np.random.default_rng(seed)
    p4 = rng.normal(0.0, 1.0, (n_batches, 64, 24, 4)).astype(np.float32)
    p4[..., 0] = np.linalg.norm(p4[..., 1:], axis=-1) + rng.uniform(0.0, 2.0, p4.shape[:-1]).astype(np.float32)
    mask = np.arange(24) < rng.integers(1, 25, (n_batches, 64))[..., None]
    p4 = np.where(mask[..., None], p4, np.float32(0.0))
    return [Batch(p4=p4[i], mask=mask[i], jet_index=np.arange(64) + 64 * i) for i in range(n_batches)]


def inference_count(server: TritonServer) -> int:
    """Jets the server has computed so far (Triton's ``inference_count``), read once the count stops
    changing: the server updates it just after answering."""
    previous = -1
    while True:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{TAGGER}/stats", timeout=10) as response:
            count = sum(int(entry.get("inference_count", 0)) for entry in json.load(response)["model_stats"])
        if count == previous:
            return count
        previous = count
        time.sleep(0.3)


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("servers") / "models", {TAGGER: pretrained(TAGGER)},
                            intra_op_threads=1)


@pytest.fixture(scope="module")
def two_servers(repository):
    with TritonServer(ServerConfig(repository=repository)) as first, \
            TritonServer(ServerConfig(repository=repository)) as second:
        yield first, second


def urls(*servers: TritonServer) -> str:
    return ",".join(f"grpc://{server.grpc_url}" for server in servers)


@needs_servers
@pytest.mark.slow
def test_requests_are_spread_over_the_servers(two_servers):
    first, second = two_servers
    batches = make_batches(16)
    clean = TritonBackend(first.grpc_url, TAGGER).infer_batches(batches)
    before = (inference_count(first), inference_count(second))
    backend = TritonBackend(urls(first, second), TAGGER, max_in_flight=2)
    scored = backend.infer_batches(batches)
    for got, expected in zip(scored, clean, strict=True):
        np.testing.assert_array_equal(got, expected)
    jets = (inference_count(first) - before[0], inference_count(second) - before[1])
    assert sum(jets) == 16 * 64 and min(jets) > 0, jets
    assert backend._pool.outstanding == [0, 0]
    backend.close()


@needs_servers
@pytest.mark.slow
def test_preflight_over_a_list(two_servers, tmp_path):
    first, second = two_servers
    served = inspect_served_models(urls(first, second), [TAGGER], max_batch_size=256)
    assert served[TAGGER].max_batch_size == 1024 and served[TAGGER].sha256
    dead = f"grpc://127.0.0.1:{free_port()}"
    with pytest.warns(RuntimeWarning, match=f"{dead.removeprefix('grpc://')}.*did not answer"):
        assert inspect_served_models(f"{urls(first)},{dead}", [TAGGER]) == {TAGGER: served[TAGGER]}
    with pytest.raises(ServerError, match="no Triton server of"):
        inspect_served_models(f"{dead},grpc://127.0.0.1:{free_port()}", [TAGGER], server_wait_s=1.0)


@needs_servers
@pytest.mark.slow
def test_servers_serving_different_models_are_refused(two_servers, repository, tmp_path):
    first, _ = two_servers
    other = tmp_path / "other"
    shutil.copytree(repository, other)
    config = other / TAGGER / "config.pbtxt"
    text = config.read_text()
    digest = text.split('key: "model_sha256"\n  value: { string_value: "')[1][:64]
    config.write_text(text.replace(digest, "0" * 64))
    with TritonServer(ServerConfig(repository=other)) as changed:
        with pytest.raises(ConfigurationError, match="every server must serve the same model"):
            inspect_served_models(urls(first, changed), [TAGGER])
        backend = TritonBackend(urls(first, changed), TAGGER, max_in_flight=1)
        with pytest.raises(ModelMismatchError, match="every server of one client must serve the same model"):
            backend.infer_batches(make_batches(6))
        backend.close()


@needs_servers
@pytest.mark.slow
def test_server_killed_mid_call_costs_no_batch(repository):
    """SIGKILL of one of two servers while requests are in flight: the call returns every batch,
    equal to a clean call, the survivor computed the rest, and the dead server is cooling down."""
    batches = make_batches(40)
    with TritonServer(ServerConfig(repository=repository)) as victim, \
            TritonServer(ServerConfig(repository=repository)) as survivor:
        clean = TritonBackend(survivor.grpc_url, TAGGER).infer_batches(batches)
        survivor_before = inference_count(survivor)
        backend = TritonBackend(urls(victim, survivor), TAGGER, max_in_flight=2, server_wait_s=60.0,
                                server_cooldown_s=30.0)

        def kill() -> None:
            os.killpg(victim.pid, signal.SIGKILL)

        faulty = FaultAt(batches, at=10, fault=kill)
        scored = backend.infer_batches(faulty)
        assert faulty.struck
        for got, expected in zip(scored, clean, strict=True):
            np.testing.assert_array_equal(got, expected)
        assert inference_count(survivor) - survivor_before >= len(batches) * 64 // 2
        assert backend._pool.cooling(0) and not backend._pool.cooling(1)
        # the next call goes to the survivor alone while the dead server cools down
        again = backend.infer_batches(batches[:4])
        for got, expected in zip(again, clean[:4], strict=True):
            np.testing.assert_array_equal(got, expected)
        backend.close()


@needs_servers
@pytest.mark.slow
def test_every_server_down_gives_up_after_server_wait_s():
    dead = f"grpc://127.0.0.1:{free_port()},grpc://127.0.0.1:{free_port()}"
    backend = TritonBackend(dead, TAGGER, server_wait_s=1.5, server_cooldown_s=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ServerError, match="server_wait_s=1.5"):
            backend.infer_batches(make_batches(2))
