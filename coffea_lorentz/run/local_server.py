"""The Triton server a run talks to: the one given, or a local one started for the run.

A local server gets its model repository in a temporary folder named after this process
(``coffea-lorentz-repo-<pid>-…``) and binds where the workers can reach it: 127.0.0.1 for a local
cluster, else this machine's address on the route to the scheduler (or ``--server-host``); a
machine with no such address is refused up front. A server reachable from the network opens only
what the workers use: its gRPC port binds to that address with the administrative protocols
(shared memory, statistics, trace, logging) behind a key made for the run, which only this process
holds, while its HTTP and metrics ports stay on 127.0.0.1; the run says so in one line. Repositories left by runs killed with SIGKILL
are removed by the next run, and so are the shared memory regions (``/dev/shm``) of client
processes killed with SIGKILL (:func:`remove_stale_shared_memory`).

:func:`shared_memory_safe` says when the run's clients send their inputs through shared memory:
only to the local server bound to loopback, with the workers on this host.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigurationError
from ..serve import REPOSITORY_PREFIX
from .lock import pid_alive

__all__ = ["RunServer", "exposure_line", "triton_url", "server_host", "remove_stale_repositories", "remove_stale_shared_memory",
           "shared_memory_safe", "REPOSITORY_PREFIX"]

#: Cluster kinds whose workers run on this host (:class:`~coffea_lorentz.run.executors.ClusterSpec`).
_LOCAL_CLUSTERS = frozenset({"local", "futures", "in-process"})

def _host_of(address: str) -> str:
    text = address.split("://", 1)[-1]
    return text.rsplit(":", 1)[0].strip("[]") if ":" in text else text


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("localhost", "")


def server_host(chosen: str | None, scheduler_address: str | None) -> str:
    """The address a local server binds to: one the workers can reach, or a refusal saying why."""
    if chosen:
        return chosen
    if scheduler_address is None or _is_loopback(_host_of(scheduler_address)):
        return "127.0.0.1"
    scheduler_host = _host_of(scheduler_address)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((scheduler_host, 9))
            address = probe.getsockname()[0]
    except OSError as err:
        raise ConfigurationError(
            f"no --server given and no address of this machine reaches the scheduler host {scheduler_host} ({err}); "
            "start a Triton server the workers can reach and pass --server, or pass --server-host"
        ) from None
    if _is_loopback(address):
        raise ConfigurationError(
            f"no --server given and this machine's only address towards {scheduler_host} is {address}, which workers "
            "on other hosts cannot reach; pass --server or --server-host"
        )
    return address


def remove_stale_repositories() -> None:
    """Remove model repositories left in the temp folder by runs killed with SIGKILL."""
    pattern = re.compile(rf"^{REPOSITORY_PREFIX}(\d+)-")
    for path in Path(tempfile.gettempdir()).glob(f"{REPOSITORY_PREFIX}*"):
        match = pattern.match(path.name)
        if match and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)


def remove_stale_shared_memory() -> None:
    """Remove the shared memory regions of client processes that are gone (killed with SIGKILL)."""
    from ..infer.shared_memory import stale_regions

    for path in stale_regions(pid_alive):
        with contextlib.suppress(OSError):
            path.unlink()


def shared_memory_safe(url: str | None, *, server_given: bool, cluster_kind: str) -> bool:
    """Whether the clients may send inputs through shared memory: the server is the run's own
    (``server_given`` False), bound to loopback, and the workers (``cluster_kind``) run on this host.
    A given ``--server`` never qualifies: it may be a proxy in front of other hosts."""
    return url is not None and not server_given and _is_loopback(_host_of(url)) and cluster_kind in _LOCAL_CLUSTERS


@dataclass(frozen=True)
class RunServer:
    """The server a run talks to.

    Attributes:
        url: its gRPC address (None in-process).
        admin_token: the key of the administrative protocols of the run's own server when it is
            reachable from the network (the run's statistics and preflight send it; workers never
            get it); None otherwise. Never shown by ``repr``.
    """

    url: str | None
    admin_token: object | None = field(default=None, repr=False)


def exposure_line(url: str) -> str:
    """The line a run prints when its own server is reachable from the network."""
    return (f"the run's Triton server listens on {url} (gRPC), reachable from the network: health, metadata and "
            "inference are open to anyone who reaches that address; shared memory, statistics, trace and logging "
            "need a key only this process holds; HTTP and metrics stay on 127.0.0.1. To keep it private, pass "
            "--server-host with an address only the workers reach, or start `coffea-lorentz serve` with "
            "--tls-cert/--tls-key/--token-file and pass --server")


@contextlib.contextmanager
def triton_url(*, backend: str, server_url: str | None, taggers: Sequence[str], chosen_host: str | None,
               scheduler_address: str | None, weights: Mapping[str, str] | None = None,
               brought: Sequence = (), report: Callable[[str], None] = lambda line: None) -> Iterator[RunServer]:
    """The server to use: ``server_url``, or a local server serving ``taggers`` (shipped weights) and
    the models of ``weights`` (model name → weights file: reweighters ``reweight_<name>``), started
    (and stopped) for the run, bound where the workers of ``scheduler_address`` can reach it, with
    the models ``brought`` with their specs (:class:`~coffea_lorentz.user_model.SpecModel`); its
    url is None in-process. A local server bound beyond loopback is restricted (module docstring)
    and ``report`` gets :func:`exposure_line`."""
    if backend != "triton":
        yield RunServer(None)
        return
    if server_url:
        yield RunServer(server_url)
        return
    from ..infer.security import BearerToken
    from ..models import pretrained
    from ..repository import build_repository
    from ..serve import ServerConfig, TritonServer

    host = server_host(chosen_host, scheduler_address)
    remove_stale_repositories()
    remove_stale_shared_memory()
    with tempfile.TemporaryDirectory(prefix=f"{REPOSITORY_PREFIX}{os.getpid()}-") as tmp:
        models = {name: pretrained(name) for name in taggers}
        models.update({name: pretrained(name, weights=path) for name, path in (weights or {}).items()})
        models.update({model.name: model for model in brought})
        repository = build_repository(Path(tmp) / "models", models, intra_op_threads=1)
        if _is_loopback(host):
            config, admin_token = ServerConfig(repository=repository, host=host), None
        else:
            key = secrets.token_urlsafe(24)
            config = ServerConfig(repository=repository, host="127.0.0.1", grpc_host=host, admin_token=key)
            admin_token = BearerToken(key, source="the run's own server")
        with TritonServer(config) as server:
            if admin_token is not None:
                report(exposure_line(server.grpc_url))
            yield RunServer(server.grpc_url, admin_token)
