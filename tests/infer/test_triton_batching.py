"""The client shapes its requests to the served model: batches above the served ``max_batch_size``
go as several requests, against one real server and against two."""

from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.infer import TritonBackend
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.serve import ServerConfig, TritonServer
from coffea_lorentz.testing import require_triton, server_unavailable_reason

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                       reason=f"no local Triton server: {server_unavailable_reason()}"),
]

TAGGER = "identity"
SMALL_MAX_BATCH = 32


def make_batches(sizes: list[int], n_constituents: int = 16, seed: int = 2) -> list[Batch]:
    rng = np.random.default_rng(seed)
    batches, first = [], 0
    for size in sizes:
        p4 = rng.normal(0.0, 1.0, (size, n_constituents, 4)).astype(np.float32)
        p4[..., 0] = np.linalg.norm(p4[..., 1:], axis=-1) + 1.0
        mask = np.arange(n_constituents) < rng.integers(1, n_constituents + 1, size)[:, None]
        batches.append(Batch(p4=np.where(mask[..., None], p4, 0.0).astype(np.float32), mask=mask,
                             jet_index=np.arange(first, first + size)))
        first += size
    return batches


def successful_requests(server: TritonServer) -> int:
    """Requests the server answered so far, read once the count stops changing."""
    previous = -1
    while True:
        with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{TAGGER}/stats", timeout=10) as response:
            stats = json.load(response)["model_stats"]
        count = sum(int(entry["inference_stats"]["success"]["count"]) for entry in stats)
        if count == previous:
            return count
        previous = count
        time.sleep(0.3)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A server at the default max_batch_size and two at a small one."""
    identity = pretrained(TAGGER)
    large = build_repository(tmp_path_factory.mktemp("large") / "models", {TAGGER: identity}, intra_op_threads=1)
    small = build_repository(tmp_path_factory.mktemp("small") / "models", {TAGGER: identity}, intra_op_threads=1,
                             max_batch_size=SMALL_MAX_BATCH)
    with TritonServer(ServerConfig(repository=large)) as reference, \
            TritonServer(ServerConfig(repository=small)) as first, \
            TritonServer(ServerConfig(repository=small)) as second:
        yield reference, first, second


@pytest.mark.parametrize("n_servers", [1, 2])
def test_batches_above_the_served_max_batch_size_are_split(servers, n_servers):
    reference, *small = servers
    sizes = [100, 5, 64, 33, 1]
    batches = make_batches(sizes)
    expected = TritonBackend(reference.grpc_url, TAGGER).infer_batches(batches)
    used = small[:n_servers]
    before = sum(successful_requests(server) for server in used)
    backend = TritonBackend(",".join(server.grpc_url for server in used), TAGGER)
    scored = backend.infer_batches(batches)
    assert backend.served_max_batch_size() == SMALL_MAX_BATCH
    assert [len(score) for score in scored] == sizes
    for got, want in zip(scored, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    requests = sum(successful_requests(server) for server in used) - before
    assert requests == sum(-(-size // SMALL_MAX_BATCH) for size in sizes)  # 4 + 1 + 2 + 2 + 1
    backend.close()
