"""A real dask-gateway server for tests: ``dask-gateway-server`` with its local process backend on loopback.

The server starts schedulers and workers as local processes of this user from this environment
(its ``bin`` first on ``PATH``), like an analysis facility's gateway starts them in pods. Clients
reach it through its proxy: HTTP for the API (:attr:`DaskGatewayServer.url`) and TCP for scheduler
traffic (:attr:`DaskGatewayServer.proxy_address`); :meth:`DaskGatewayServer.client_config` is the
dask configuration a client needs (address, proxy address, basic authentication).

>>> with DaskGatewayServer(tmp_path) as server, dask.config.set(server.client_config()):  # doctest: +SKIP
...     cluster = dask_gateway.Gateway().new_cluster()
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import ServerStartError
from ..serve import free_port
from .processes import PROCESS_POLL_S, log_tail, port_accepts, require_storage, spawn, terminate

__all__ = ["DaskGatewayServer", "gateway_unavailable_reason", "dask_gateway_server_fixture"]

#: The user name the test server's simple authenticator accepts (any name, no password).
GATEWAY_USER = "coffea-lorentz"


def gateway_unavailable_reason() -> str | None:
    """Why no dask-gateway server can run here (packages missing), or None."""
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "dask-gateway-server").is_file():
        return ("dask-gateway-server is not installed in this environment "
                "(pip install -c constraints.txt 'dask-gateway-server[local]' dask-gateway)")
    try:
        import dask_gateway  # noqa: F401  (only whether it imports)
    except ImportError:
        return "the dask-gateway client is not installed (pip install 'coffea-lorentz[facilities]')"
    return None


class DaskGatewayServer:
    """``dask-gateway-server`` on free loopback ports with the local process backend; a context manager.

    Args:
        state_dir: where the server keeps its configuration, database, log and the clusters' files.
        worker_cores, worker_memory_gib: resources of one worker the gateway starts.
        startup_timeout_s: how long to wait for the API to answer.
    """

    def __init__(self, state_dir: str | Path, *, worker_cores: int = 1, worker_memory_gib: float = 2.0,
                 startup_timeout_s: float = 60.0, stop_grace_s: float = 10.0):
        self.state_dir = Path(state_dir).resolve()
        self.worker_cores = worker_cores
        self.worker_memory_gib = worker_memory_gib
        self.startup_timeout_s = startup_timeout_s
        self.stop_grace_s = stop_grace_s
        self.process = None
        self.api_port: int | None = None
        self.proxy_port: int | None = None
        self.tcp_port: int | None = None
        self.log_path = self.state_dir / "dask-gateway-server.log"

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the proxy: the address a client gives ``Gateway``."""
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def proxy_address(self) -> str:
        """``tcp://127.0.0.1:PORT`` where clients reach the clusters' schedulers."""
        return f"tcp://127.0.0.1:{self.tcp_port}"

    def client_config(self) -> dict:
        """Dask configuration for a client of this server (``dask.config.set(server.client_config())``)."""
        return {"gateway.address": self.url, "gateway.proxy-address": self.proxy_address,
                "gateway.auth.type": "basic", "gateway.auth.kwargs": {"username": GATEWAY_USER, "password": ""}}

    def __enter__(self) -> "DaskGatewayServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "DaskGatewayServer":
        if self.process is not None:
            return self
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.api_port, self.proxy_port, self.tcp_port = free_port(), free_port(), free_port()
        config = self.state_dir / "dask_gateway_config.py"
        config.write_text(
            f'c.Gateway.address = "127.0.0.1:{self.api_port}"\n'
            f'c.Proxy.address = "127.0.0.1:{self.proxy_port}"\n'
            f'c.Proxy.tcp_address = "127.0.0.1:{self.tcp_port}"\n'
            'c.Gateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"\n'
            'c.Gateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"\n'
            f'c.LocalBackend.clusters_directory = "{self.state_dir / "clusters"}"\n'
            f"c.ClusterConfig.worker_cores = {self.worker_cores}\n"
            f"c.ClusterConfig.worker_threads = 1\n"
            f'c.ClusterConfig.worker_memory = "{self.worker_memory_gib} G"\n'
        )
        bin_dir = Path(sys.executable).parent
        environment = dict(os.environ)
        environment["PATH"] = f"{bin_dir}{os.pathsep}{environment.get('PATH', '')}"
        self.process = spawn([str(bin_dir / "dask-gateway-server"), "-f", str(config)], self.log_path,
                             cwd=self.state_dir, env=environment)
        deadline = time.monotonic() + self.startup_timeout_s
        while not port_accepts("127.0.0.1", self.proxy_port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = log_tail(self.log_path)
                self.stop()
                raise ServerStartError(f"dask-gateway-server did not start on 127.0.0.1:{self.proxy_port}; "
                                       f"log {self.log_path}:\n{tail}")
            time.sleep(PROCESS_POLL_S)
        return self

    def stop(self) -> None:
        """Stop the server and every scheduler and worker it started; safe to repeat."""
        if self.process is None:
            return
        process, self.process = self.process, None
        terminate([process], self.stop_grace_s)

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def dask_gateway_server_fixture(*, scope: str = "module", name: str | None = None,
                                skip_if_unavailable: bool | None = None):
    """A pytest fixture yielding a running :class:`DaskGatewayServer` (skipped with the reason where
    the packages are missing; failed instead under ``make test``, see :func:`require_storage`)."""
    import pytest

    skip = (not require_storage()) if skip_if_unavailable is None else skip_if_unavailable

    @pytest.fixture(scope=scope, name=name)
    def _dask_gateway_server(tmp_path_factory) -> Iterator[DaskGatewayServer]:
        reason = gateway_unavailable_reason()
        if reason is not None:
            (pytest.skip if skip else pytest.fail)(f"no dask-gateway server: {reason}")
        with DaskGatewayServer(tmp_path_factory.mktemp("gateway")) as server:
            yield server

    return _dask_gateway_server
