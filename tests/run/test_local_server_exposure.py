"""The Triton server a run starts for workers on other machines opens only what they use: gRPC
on the network with the administrative protocols behind a key only the run holds, HTTP and
metrics on loopback, and one line saying so. ``serve`` on a network address warns the same way."""

from __future__ import annotations

import ipaddress
import socket
import urllib.error
import urllib.request

import numpy as np
import pytest

from coffea_lorentz.errors import ConfigurationError
from coffea_lorentz.infer.security import open_client
from coffea_lorentz.run.local_server import exposure_line, server_host, triton_url
from coffea_lorentz.server_config import ServerConfig, exposure_warning
from coffea_lorentz.testing import require_triton, server_unavailable_reason

from .conftest import SCORE, TAGGER, config, make_fileset, read_rows

needs_server = pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                                  reason=f"no local Triton server: {server_unavailable_reason()}")


def _network_address() -> str:
    """This machine's address towards a documentation network (RFC 5737), as a run finds it for remote workers."""
    try:
        address = server_host(None, "tcp://198.51.100.1:8786")
    except ConfigurationError as err:
        pytest.skip(f"this machine has no address beyond loopback to bind a server to ({err})")
    assert not ipaddress.ip_address(address).is_loopback
    return address


def _http_status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _refuses(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(2)
        return probe.connect_ex((host, port)) != 0


def test_the_warning_names_every_open_port(tmp_path):
    repository = tmp_path / "models"
    repository.mkdir()
    assert exposure_warning(ServerConfig(repository=repository)) is None
    plain = exposure_warning(ServerConfig(repository=repository, host="0.0.0.0"))
    assert plain.startswith("listening on 0.0.0.0, open to the network")
    for part in ("gRPC takes calls from anyone", "gRPC is plaintext", "HTTP takes calls from anyone",
                 "HTTP and metrics are plaintext", "--token-file", "deploy/README.md"):
        assert part in plain
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    protected = exposure_warning(ServerConfig(repository=repository, host="0.0.0.0", grpc_tls_cert=tmp_path / "cert.pem",
                                              grpc_tls_key=tmp_path / "key.pem", grpc_token="t0k"))
    assert "gRPC" not in protected.split(":", 1)[1].split(".")[0] and "HTTP and metrics are plaintext" in protected
    assert "t0k" not in protected
    only_grpc = exposure_warning(ServerConfig(repository=repository, grpc_host="10.0.0.7", admin_token="k3y"))
    assert only_grpc.startswith("listening on 10.0.0.7") and "HTTP" not in only_grpc and "k3y" not in only_grpc


@needs_server
def test_the_server_for_remote_workers_opens_only_inference():
    address = _network_address()
    lines = []
    with triton_url(backend="triton", server_url=None, taggers=["identity"], chosen_host=address,
                    scheduler_address=None, report=lines.append) as server:
        host, port = server.url.rsplit(":", 1)
        assert host == address and server.admin_token is not None
        assert lines == [exposure_line(server.url)] and server.admin_token.value not in lines[0]
        assert "admin_token" not in repr(server) and server.admin_token.value not in repr(server)
        client = open_client(server.url)
        assert client.is_server_ready() and client.is_model_ready("identity")
        for call in (lambda: client.get_inference_statistics("", as_json=True),
                     lambda: client.register_system_shared_memory("probe", "/coffea-lorentz-probe", 64),
                     lambda: client.get_log_settings(as_json=True)):
            with pytest.raises(Exception, match="restricted"):
                call()
        keyed = open_client(server.url, token=server.admin_token)
        assert "identity" in {entry["name"] for entry in keyed.get_inference_statistics("", as_json=True)["model_stats"]}
        from coffea_lorentz.batch import Batch
        from coffea_lorentz.infer import TritonBackend

        backend = TritonBackend(server.url, "identity", server_wait_s=5.0)
        p4 = np.random.default_rng(1).uniform(1, 2, (3, 4, 4)).astype(np.float32)
        scores = backend.infer_batches([Batch(p4=p4, mask=np.ones((3, 4), bool), jet_index=np.arange(3))])[0]
        backend.close()
        assert scores.shape[0] == 3 and np.isfinite(scores).all()
        # HTTP and metrics answer on loopback only
        log = _server_log()
        http_port, metrics_port = (int(log.split(flag, 1)[1].split()[0]) for flag in ("--http-port=", "--metrics-port="))
        assert _refuses(address, http_port) and _refuses(address, metrics_port)
        assert _http_status(f"http://127.0.0.1:{http_port}/v2/health/ready") == 200
        assert _http_status(f"http://127.0.0.1:{http_port}/v2/models/stats") == 403
        assert _http_status(f"http://127.0.0.1:{http_port}/v2/models/stats", server.admin_token.headers()) == 200
        assert server.admin_token.value not in log and "<hidden>" in log
        keyed.close()
        client.close()


def _server_log() -> str:
    """The log of the server this process started last (it lies beside the run's repository)."""
    import glob
    import os
    import tempfile

    logs = glob.glob(os.path.join(tempfile.gettempdir(), f"coffea-lorentz-repo-{os.getpid()}-*", "tritonserver-*.log"))
    assert logs, "the run's server writes its log beside its repository"
    return open(max(logs, key=os.path.getmtime)).read()


@needs_server
def test_a_run_for_remote_workers_says_its_port_is_open_and_still_reads_statistics(tmp_path, capsys):
    from coffea_lorentz.run import run_tagging

    address = _network_address()
    fileset = make_fileset(tmp_path / "inputs", 2)
    served = run_tagging(fileset, tmp_path / "served", config(backend="triton", server_host=address))
    local = run_tagging(fileset, tmp_path / "local", config())
    err = capsys.readouterr().err
    assert f"the run's Triton server listens on {address}:" in err and err.count("reachable from the network") == 1
    assert served.server, "the run reads its server's statistics with the key of the run"
    import awkward as ak

    np.testing.assert_allclose(ak.to_numpy(ak.flatten(read_rows(served)[SCORE])),
                               ak.to_numpy(ak.flatten(read_rows(local)[SCORE])), atol=1e-5)
    assert TAGGER in " ".join(served.server)
