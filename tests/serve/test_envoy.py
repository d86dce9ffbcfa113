"""Envoy in front of several Triton servers: the rendered configuration, what the real ``envoy``
binary says of it, and a run through Envoy's one address surviving one server killed mid-run."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from coffea_lorentz.envoy import (
    CLUSTER_NAME,
    READINESS_PATH,
    EnvoyConfig,
    EnvoyProxy,
    Upstream,
    envoy_binary,
    envoy_unavailable_reason,
    main,
    render_envoy_config,
)
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.infer import inspect_served_models
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.serve import ServerConfig, TritonServer
from coffea_lorentz.testing import require_triton, server_unavailable_reason, write_pfnano_fileset

pytest.importorskip("cryptography", reason="the front door's certificates and JWKS are made with the cryptography "
                                           "package (test extra)")
from envoy_files import shipped_front_door, with_local_files  # noqa: E402 - after the skip above

ROOT = Path(__file__).resolve().parents[2]
#: What deploy/envoy/envoy.yaml is rendered from (compose: the service ``triton``, scaled to N replicas,
#: behind a TLS listener checking JWTs, rate-limited; the files as mounted under /etc/envoy).
SHIPPED_COMPOSE_CONFIG, SHIPPED_COMPOSE_COMMAND = shipped_front_door("triton")

needs_envoy = pytest.mark.skipif(envoy_unavailable_reason() is not None,
                                 reason=f"no envoy binary: {envoy_unavailable_reason()}")
needs_servers = pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                                   reason=f"no local Triton server: {server_unavailable_reason()}")

TAGGER = "identity"
SCORE = f"FatJet_{TAGGER}_score"
N_FILES = 12
EVENTS_PER_FILE = 5  # what write_pfnano_fileset writes per file


def _validate_with_envoy(text: str, tmp_path: Path) -> str:
    """Run ``envoy --mode validate`` on ``text``; its output (fails the test on a rejected config)."""
    path = tmp_path / "envoy.yaml"
    path.write_text(with_local_files(text, tmp_path))
    result = subprocess.run([str(envoy_binary()), "--mode", "validate", "-c", str(path), "--disable-hot-restart"],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "configuration" in output and " OK" in output
    return output


# -- the configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.1:8001", Upstream(host="10.0.0.1", grpc_port=8001, http_port=8000)),
        ("grpc://triton-0:9001:9000", Upstream(host="triton-0", grpc_port=9001, http_port=9000)),
    ],
)
def test_upstream_parse(text, expected):
    assert Upstream.parse(text) == expected


@pytest.mark.parametrize("text", ["triton", "triton:http", "h:1:2:3", "bad host:8001", "h:0", "h:70000"])
def test_upstream_parse_refuses(text):
    with pytest.raises(InvalidInputError, match="upstream"):
        Upstream.parse(text)


def test_config_refuses_nonsense():
    with pytest.raises(InvalidInputError, match="at least one upstream"):
        EnvoyConfig(upstreams=())
    with pytest.raises(InvalidInputError, match="strict_dns"):
        EnvoyConfig(upstreams=(Upstream(host="triton"),))
    with pytest.raises(InvalidInputError, match="discovery"):
        EnvoyConfig(upstreams=(Upstream(host="10.0.0.1"),), discovery="eds")
    with pytest.raises(InvalidInputError, match="num_retries"):
        EnvoyConfig(upstreams=(Upstream(host="10.0.0.1"),), num_retries=-1)


def test_rendered_config_balances_checks_and_retries():
    upstreams = tuple(Upstream(host=f"10.0.0.{i}", grpc_port=8001, http_port=8000 + i) for i in range(1, 4))
    config = yaml.safe_load(render_envoy_config(EnvoyConfig(upstreams=upstreams, num_retries=2)))
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["name"] == CLUSTER_NAME and cluster["type"] == "STATIC"
    assert cluster["lb_policy"] == "LEAST_REQUEST"
    protocol = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in protocol["explicit_http_config"]
    (check,) = cluster["health_checks"]
    assert check["http_health_check"]["path"] == READINESS_PATH == "/v2/health/ready"
    assert check["no_traffic_interval"] == check["interval"]
    assert cluster["common_lb_config"]["healthy_panic_threshold"]["value"] == 0.0
    endpoints = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [(e["endpoint"]["address"]["socket_address"]["address"], e["endpoint"]["address"]["socket_address"]["port_value"],
             e["endpoint"]["health_check_config"]["port_value"]) for e in endpoints] == [
        (f"10.0.0.{i}", 8001, 8000 + i) for i in range(1, 4)]
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["timeout"] == "0s"  # the request's own grpc-timeout applies
    assert route["retry_policy"]["num_retries"] == 2
    assert set(route["retry_policy"]["retry_on"].split(",")) >= {"unavailable", "reset", "connect-failure"}
    assert route["retry_policy"]["retry_host_predicate"][0]["name"] == "envoy.retry_host_predicates.previous_hosts"


def test_shipped_config_is_the_rendered_one():
    """deploy/envoy/envoy.yaml is what the renderer writes (rerender it after changing the renderer)."""
    shipped = (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()
    assert shipped == render_envoy_config(SHIPPED_COMPOSE_CONFIG), (
        f"deploy/envoy/envoy.yaml is stale; run: python -m coffea_lorentz.envoy {' '.join(SHIPPED_COMPOSE_COMMAND)} "
        "--output deploy/envoy/envoy.yaml")


def test_command_line_writes_the_config(tmp_path, capsys):
    assert main(["127.0.0.1:9001:9000", "127.0.0.2:9001", "--listen-port", "7001"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"] == 7001
    assert main([*SHIPPED_COMPOSE_COMMAND, "--output", str(tmp_path / "e.yaml")]) == 0
    assert (tmp_path / "e.yaml").read_text() == render_envoy_config(SHIPPED_COMPOSE_CONFIG)
    with pytest.raises(SystemExit):
        main(["triton:8001"])  # a host name needs strict_dns


@needs_envoy
@pytest.mark.parametrize(
    "config",
    [
        SHIPPED_COMPOSE_CONFIG,
        EnvoyConfig(upstreams=(Upstream.parse("127.0.0.1:18001:18000"), Upstream.parse("127.0.0.1:18011:18010"))),
    ],
    ids=["strict_dns", "static"],
)
def test_real_envoy_accepts_the_config_without_deprecated_fields(config, tmp_path):
    output = _validate_with_envoy(render_envoy_config(config), tmp_path)
    assert "deprecated" not in output.lower(), output


# -- through the real proxy -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("envoy") / "models", {TAGGER: pretrained(TAGGER)},
                            intra_op_threads=1)


def _proxy_for(servers, **options) -> EnvoyProxy:
    upstreams = tuple(Upstream(host="127.0.0.1", grpc_port=s.grpc_port, http_port=s.http_port) for s in servers)
    options = {"listen_host": "127.0.0.1", "listen_port": 0, "admin_port": 0, "health_check_interval_ms": 500} | options
    return EnvoyProxy(EnvoyConfig(upstreams=upstreams, **options))


def _inference_count(server: TritonServer) -> int:
    """Jets the server has scored so far (Triton's own statistics)."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"http://{server.http_url}/v2/models/{TAGGER}/stats", timeout=5) as response:
        return int(json.load(response)["model_stats"][0]["inference_count"])


def _rows(summary) -> tuple[list, np.ndarray]:
    rows = ak.concatenate([uproot.open(url)["Events"].arrays(library="ak") for url in summary.outputs])
    return list(zip(ak.to_list(rows["luminosityBlock"]), ak.to_list(rows["event"]))), ak.to_numpy(ak.flatten(rows[SCORE]))


def _wait_until(predicate, what: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what}: not reached after {timeout_s} s")


@needs_envoy
@needs_servers
@pytest.mark.slow
def test_proxy_balances_and_reports_health(repository):
    with TritonServer(ServerConfig(repository=repository)) as first, \
            TritonServer(ServerConfig(repository=repository)) as second, \
            _proxy_for((first, second)) as proxy:
        assert sorted(proxy.healthy_upstreams()) == sorted([first.grpc_url, second.grpc_url])
        served = inspect_served_models(f"grpc://{proxy.grpc_url}", [TAGGER])
        assert served[TAGGER].max_batch_size == 1024
        first.stop()
        _wait_until(lambda: proxy.healthy_upstreams() == [second.grpc_url], "killed server taken out")
        envoy_pid = proxy.process.pid
        workdir = proxy._workdir
    assert proxy.process is None and not workdir.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(envoy_pid, 0)


@needs_envoy
@needs_servers
@pytest.mark.slow
def test_run_through_envoy_survives_a_server_killed_mid_run(repository, dask_cluster, tmp_path):
    fileset = write_pfnano_fileset(tmp_path / "inputs", N_FILES)
    total = N_FILES * EVENTS_PER_FILE
    with TritonServer(ServerConfig(repository=repository)) as victim, \
            TritonServer(ServerConfig(repository=repository)) as survivor, \
            _proxy_for((victim, survivor)) as proxy:
        config = RunConfig(taggers=(TAGGER,), backend="triton", server_url=f"grpc://{proxy.grpc_url}",
                           scheduler=dask_cluster.scheduler_address, chunksize=1, progress=False,
                           client_options=(("timeout_s", 30.0), ("server_wait_s", 120.0)))
        clean = run_tagging(fileset, tmp_path / "clean", config)
        # Both servers took part: Envoy balanced the requests of one address over them.
        assert _inference_count(victim) > 0 and _inference_count(survivor) > 0

        box = {}

        def target():
            try:
                box["summary"] = run_tagging(fileset, tmp_path / "out", config)
            except BaseException as err:  # noqa: BLE001 - handed to the test thread
                box["error"] = err

        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        done_before = _wait_until(lambda: len(list((tmp_path / "out").glob("*/*.root"))) >= 3 and
                                  len(list((tmp_path / "out").glob("*/*.root"))), "3 chunk files written")
        survivor_before = _inference_count(survivor)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.stop()
        thread.join(timeout=300)
        assert not thread.is_alive(), "the run did not finish after one server was killed"
        assert "error" not in box, box.get("error")
        assert _inference_count(survivor) > survivor_before  # the rest went to the survivor
        _wait_until(lambda: proxy.healthy_upstreams() == [survivor.grpc_url], "killed server taken out")
    assert done_before < total, "the run finished before a server could be killed"
    summary = box["summary"]
    assert summary.complete and summary.events == total and clean.events == total
    ids, scores = _rows(summary)
    clean_ids, clean_scores = _rows(clean)
    assert ids == clean_ids
    np.testing.assert_array_equal(scores, clean_scores)
