"""Several Triton servers behind one :class:`~coffea_lorentz.infer.triton_client.TritonBackend`.

``TritonBackend("grpc://a:8001,grpc://b:8001", model)`` spreads the requests of each call over the
servers itself — the small answer; the production answer is one Envoy address in front of the
servers (:mod:`coffea_lorentz.envoy`):

- each request goes to the usable server with the fewest requests outstanding from this process
  (ties: the one used least recently), at most ``max_in_flight`` per server;
- a server whose request fails transiently (unreachable, reset, deadline exceeded, not ready) is
  taken out for ``server_cooldown_s`` seconds and its failed requests are resent to the others;
  after the cool-down it is reconnected (and its readiness probed) before it gets requests again;
- every server must serve the same model (``model_sha256``) with the same number of classes, or
  :class:`~coffea_lorentz.errors.ModelMismatchError` names the two servers — one call's scores
  never mix two models;
- permanent errors raise at once as with one server; only when no server has answered for
  ``server_wait_s`` seconds does the call give up with :class:`~coffea_lorentz.errors.ServerError`.

The ``backend`` every function here takes is a ``TritonBackend`` with several servers; it is
annotated by its interface (:class:`~coffea_lorentz.infer.base.Backend`) because the client
imports this module, never the other way round.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..batch import Batch
from ..errors import ModelMismatchError, ServerError
from .base import Backend
from .outage import _MODEL_FAILED, _PERMANENT, _RECONNECT, _classify, _one_line, _Outage
from .plan import _Requests

__all__ = ["PoolState", "infer_balanced"]


@dataclass(kw_only=True)
class PoolState:
    """What one process knows of the servers (private to a backend; recreated in each process).

    ``outstanding[i]`` counts requests awaiting an answer from server i, ``cool_until_s[i]`` is the
    ``time.monotonic()`` before which server i gets no request, ``last_used[i]`` a counter that
    breaks ties between equally loaded servers.
    """

    n_servers: int
    outstanding: list[int] = field(init=False)
    cool_until_s: list[float] = field(init=False)
    last_used: list[int] = field(init=False)
    sha256: str | None = None
    sha256_url: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _uses: int = 0

    def __post_init__(self) -> None:
        self.outstanding = [0] * self.n_servers
        self.cool_until_s = [0.0] * self.n_servers
        self.last_used = [0] * self.n_servers

    def pick(self, max_in_flight: int) -> int | None:
        """The server to send the next request to, None while none is usable."""
        now = time.monotonic()
        with self.lock:
            usable = [i for i in range(self.n_servers)
                      if self.cool_until_s[i] <= now and self.outstanding[i] < max_in_flight]
            if not usable:
                return None
            server = min(usable, key=lambda i: (self.outstanding[i], self.last_used[i]))
            self._uses += 1
            self.last_used[server] = self._uses
            return server

    def cooling(self, server: int) -> bool:
        return self.cool_until_s[server] > time.monotonic()

    def cool_down(self, server: int, cooldown_s: float) -> None:
        with self.lock:
            self.cool_until_s[server] = time.monotonic() + cooldown_s

    def next_usable_in_s(self) -> float:
        """Seconds until the first cooling server may be used again (0 when one is usable now)."""
        return max(0.0, min(self.cool_until_s) - time.monotonic())

    def sent(self, server: int, delta: int) -> None:
        with self.lock:
            self.outstanding[server] += delta


def _connected(backend: Backend, server: int):
    """``(client, generation)`` of server ``server``, connecting (one try) when it has no client.

    Raises the connection's own error (transient or not) and :class:`ModelMismatchError` when the
    server serves another model than the servers before it.
    """
    state, sub = backend._pool, backend._servers[server]
    with sub._lock:
        if sub._client is None:
            probe = _Outage(server_wait_s=0.0, backoff_ms=backend.backoff_ms, max_backoff_ms=backend.max_backoff_ms,
                            jitter_ms=backend.jitter_ms)
            client = sub._open(probe, expected_sha256=None)
            with state.lock:
                if state.sha256_url is None:
                    state.sha256, state.sha256_url = sub._served_sha256, sub.url
                    backend._n_classes, backend._served_sha256 = sub._n_classes, sub._served_sha256
                mismatch = sub._served_sha256 != state.sha256 or sub._n_classes != backend._n_classes
            if mismatch:
                client.close()
                raise ModelMismatchError(
                    f"model {backend.model!r}: Triton server {sub.url} serves model_sha256 {sub._served_sha256} with "
                    f"{sub._n_classes} classes, server {state.sha256_url} {state.sha256} with {backend._n_classes}; "
                    "every server of one client must serve the same model"
                )
            sub._client = client
            sub._generation += 1
        return sub._client, sub._generation


def _take_out(backend: Backend, server: int, generation: int, kind: str) -> None:
    """Cool server ``server`` down; after a lost connection also drop its client (reconnect later)."""
    backend._pool.cool_down(server, backend.server_cooldown_s)
    if kind != _RECONNECT:
        return
    sub = backend._servers[server]
    with sub._lock:
        if sub._client is not None and sub._generation == generation:
            old, sub._client = sub._client, None
            old.close()  # its requests still in flight come back CANCELLED and are resent elsewhere


def infer_balanced(backend: Backend, batches: Sequence[Batch]) -> list[np.ndarray]:
    """Probabilities float32 [B, n_classes] for each batch, in order, from ``backend``'s servers."""
    if not batches:
        return []
    state, servers = backend._pool, backend._servers
    requests = _Requests(batches, backend._known_max_batch_size)
    outage = backend._new_outage()  # time without an answer from any server
    finished: list[tuple[tuple[int, int], int, int, object, Exception | None]] = []
    condition = threading.Condition()

    def on_done(key: tuple[int, int], server: int, generation: int, result=None, error=None) -> None:
        state.sent(server, -1)
        with condition:
            finished.append((key, server, generation, result, error))
            condition.notify()

    def failed(server: int, generation: int, error: BaseException, kind: str) -> None:
        _take_out(backend, server, generation, kind)
        if outage.failed(error) is None:
            raise outage.gave_up(backend.url, backend.model, f"inference on every server ({requests.describe_done()})")

    in_flight = 0
    while requests.remaining:
        while requests.pending:
            server = state.pick(backend.max_in_flight)
            if server is None:
                break
            try:
                client, generation = _connected(backend, server)
            except ModelMismatchError:
                raise
            except Exception as err:  # noqa: BLE001 - sorted into transient and permanent
                kind = _classify(err)
                if kind in (_PERMANENT, _MODEL_FAILED):
                    servers[server]._raise_if_insecure(err)  # a TLS mismatch or a refused token: one clear line
                    raise ServerError(f"Triton server {servers[server].url}, model {backend.model!r}: connect failed "
                                      f"(not retried): {_one_line(err)}") from None
                failed(server, servers[server]._generation, err, kind)
                continue
            key, batch = requests.take()
            state.sent(server, +1)
            in_flight += 1
            callback = functools.partial(on_done, key, server, generation)
            try:
                servers[server]._submit(batch, callback, client=client)
            except Exception as err:  # noqa: BLE001 - handled like an answered failure
                callback(error=err)
        if in_flight == 0:
            # every server cools down: wait for the first to come back, within the budget
            if outage.remaining_s() <= 0:
                raise outage.gave_up(backend.url, backend.model, "inference on every server")
            time.sleep(min(max(state.next_usable_in_s(), 0.01), max(outage.remaining_s(), 0.0)))
            continue
        with condition:
            if not finished:
                condition.wait(timeout=backend.timeout_s + 5.0)
            done, finished[:] = list(finished), []
        for key, server, generation, result, error in done:
            in_flight -= 1
            if error is None:
                requests.answered(key, servers[server]._check_output(result.as_numpy("score"), requests.batch(key)))
                outage.reset()
                continue
            kind = _classify(error)
            if kind in (_PERMANENT, _MODEL_FAILED):
                raise servers[server]._request_error(kind, key[0], requests.batch(key), error)
            requests.retry(key)
            if not state.cooling(server):  # the first failure seen from this server: take it out
                failed(server, generation, error, kind)
    return requests.results()
