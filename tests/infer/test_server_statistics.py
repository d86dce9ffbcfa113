"""Triton's own statistics around a call: parsed from both of Triton's JSON forms, differenced, and
read from real servers (gRPC and HTTP, one server and two)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coffea_lorentz.batch import Batch
from coffea_lorentz.errors import ServerError
from coffea_lorentz.infer import TritonBackend
from coffea_lorentz.infer.server_statistics import (
    ModelStatistics,
    ServerStatisticsWindow,
    _parse,
    advice,
    format_statistics,
    read_server_statistics,
    statistics_delta,
)
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.serve import ServerConfig, TritonServer, free_port
from coffea_lorentz.testing import require_triton, server_unavailable_reason

needs_servers = pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                                   reason=f"no local Triton server: {server_unavailable_reason()}")
TAGGER = "identity"

#: One model entry as Triton's gRPC JSON gives it (int64 as strings, empty entries for zero).
GRPC_ENTRY = {"name": "m", "version": "1", "inference_count": "30", "execution_count": "2",
              "inference_stats": {"success": {"count": "3", "ns": "216000000"}, "fail": {},
                                  "queue": {"count": "3", "ns": "6000000"}, "compute_input": {"count": "3", "ns": "1000000"},
                                  "compute_infer": {"count": "3", "ns": "200000000"},
                                  "compute_output": {"count": "3", "ns": "5000000"}}}
#: The same as Triton's HTTP JSON gives it.
HTTP_ENTRY = {"name": "m", "version": "1", "inference_count": 30, "execution_count": 2,
              "inference_stats": {"success": {"count": 3, "ns": 216000000}, "fail": {"count": 0, "ns": 0},
                                  "queue": {"count": 3, "ns": 6000000}, "compute_input": {"count": 3, "ns": 1000000},
                                  "compute_infer": {"count": 3, "ns": 200000000},
                                  "compute_output": {"count": 3, "ns": 5000000}}}


def test_both_json_forms_parse_alike_and_versions_add_up():
    grpc, http = _parse([GRPC_ENTRY])["m"], _parse([HTTP_ENTRY])["m"]
    assert grpc == http
    assert (grpc.requests, grpc.inference_count, grpc.execution_count) == (3, 30, 2)
    assert grpc.average_batch_size == 15.0
    assert grpc.queue_s == pytest.approx(0.006) and grpc.compute_s == pytest.approx(0.206)
    assert grpc.mean_queue_ms == pytest.approx(2.0)
    two_versions = _parse([GRPC_ENTRY, dict(HTTP_ENTRY, version="2")])["m"]
    assert two_versions.requests == 6 and two_versions.compute_infer_s == pytest.approx(0.4)


def test_delta_advice_and_lines():
    before = {"m": ModelStatistics(model="m", requests=10, inference_count=100, execution_count=5, queue_s=1.0,
                                   compute_infer_s=1.0)}
    after = {"m": ModelStatistics(model="m", requests=30, inference_count=900, execution_count=9, queue_s=9.0,
                                  compute_infer_s=3.0),
             "new": ModelStatistics(model="new", requests=1, inference_count=4, execution_count=1)}
    delta = statistics_delta(before, after)
    assert delta["m"] == ModelStatistics(model="m", requests=20, inference_count=800, execution_count=4, queue_s=8.0,
                                         compute_infer_s=2.0)
    assert delta["new"] == after["new"]
    assert delta["m"].queue_share == pytest.approx(0.8)
    assert "add model instances or servers" in advice(delta["m"])
    assert advice(delta["new"]) is None
    lines = format_statistics(delta, wall_s=4.0)
    assert lines[0].startswith("m: 20 requests (0 failed), 800 jets in 4 batches (average 200.0 jets)")
    assert "add model instances or servers" in lines[1] and lines[2].startswith("new: 1 request (0 failed), 4 jets in 1 batch ")
    few = ModelStatistics(model="few", requests=3, inference_count=3, execution_count=3, queue_s=9.0, compute_infer_s=0.1)
    assert few.queue_share > 0.9 and advice(few) is None  # 3 requests say nothing about a queue
    restarted = statistics_delta(after, before)  # counts went down: the server restarted
    assert restarted["m"] == before["m"]
    assert math.isnan(ModelStatistics(model="x").average_batch_size)


def test_unreachable_server_is_named():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServerError, match=address):
        read_server_statistics(f"grpc://{address}", timeout_s=2)
    with pytest.raises(ServerError, match=address):
        read_server_statistics(f"http://{address}", timeout_s=2)
    with ServerStatisticsWindow(f"http://{address}", timeout_s=2) as window:
        pass
    assert window.delta is None and address in window.lines()[0]


def _batches(sizes: list[int]) -> list[Batch]:
    rng = np.random.default_rng(1)
    return [Batch(p4=rng.uniform(1, 2, (n, 12, 4)).astype(np.float32), mask=np.ones((n, 12), bool),
                  jet_index=np.arange(n)) for n in sizes]


@needs_servers
@pytest.mark.slow
def test_window_around_a_call_on_real_servers(tmp_path):
    repository = build_repository(tmp_path / "models", {TAGGER: pretrained(TAGGER)})
    sizes = [50, 7, 100, 1]
    with TritonServer(ServerConfig(repository=repository)) as first, \
            TritonServer(ServerConfig(repository=repository)) as second:
        backend = TritonBackend(first.grpc_url, TAGGER)
        with ServerStatisticsWindow(f"grpc://{first.grpc_url}", [TAGGER]) as window:
            backend.infer_batches(_batches(sizes))
        stats = window.delta[TAGGER]
        assert stats.requests == len(sizes) and stats.inference_count == sum(sizes) and stats.failed_requests == 0
        assert 1 <= stats.execution_count <= len(sizes)
        assert stats.compute_infer_s > 0 and stats.queue_s >= 0 and stats.request_s >= stats.compute_infer_s
        over_http = read_server_statistics(f"http://{first.http_url}", [TAGGER], settle_s=0.3)
        over_grpc = read_server_statistics(first.grpc_url, [TAGGER], settle_s=0.3)
        assert over_http == over_grpc
        both = TritonBackend(f"{first.grpc_url},{second.grpc_url}", TAGGER)
        with ServerStatisticsWindow(f"{first.grpc_url},http://{second.http_url}", [TAGGER]) as window:
            both.infer_batches(_batches(sizes * 3))
        assert window.delta[TAGGER].inference_count == 3 * sum(sizes)
        assert window.lines()[0].startswith(f"{TAGGER}: {3 * len(sizes)} requests (0 failed), {3 * sum(sizes)} jets")
        backend.close()
        both.close()
