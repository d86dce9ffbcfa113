"""How the Triton client tells failures apart and waits out an outage.

:func:`_classify` sorts a gRPC failure into: reconnect (the server went away), slow down (hung or
overloaded: probe before re-sending), retry, permanent (the request is wrong) or model failed;
:class:`_Outage` holds the time budget (``server_wait_s`` from the first failure of an outage; any
answer ends the outage) and the exponential backoff with jitter between tries.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from ..errors import CoffeaLorentzError, ServerError

__all__ = ["backoff_delay_s", "RetryTotals"]


@dataclass(kw_only=True)
class RetryTotals:
    """What a client's outages cost, added up over its life in one process (mutable, one per backend).

    Attributes:
        retries: failed tries that were retried (requests, connections, readiness probes).
        waited_s: seconds from the first failure of each outage to its end (an answer, or giving up).
    """

    retries: int = 0
    waited_s: float = 0.0


#: gRPC status codes that mean "the request itself is wrong": retrying cannot help.
_PERMANENT_STATUS = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED", "FAILED_PRECONDITION"})
#: Transient codes after which the connection is rebuilt (the server went away).
_RECONNECT_STATUS = frozenset({"UNAVAILABLE"})
#: Transient codes that mean "the server is hung or overloaded": slow down and probe before re-sending.
_SLOW_DOWN_STATUS = frozenset({"DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"})
#: Transient codes retried as they are.
_RETRY_STATUS = frozenset({"ABORTED", "CANCELLED"})
#: How the python backend says its stub process stopped answering (status INTERNAL): the server, not the model.
_STUB_UNHEALTHY = "is not healthy"
#: How Triton says a request names a shared memory region it does not know (status NOT_FOUND): the
#: server restarted and forgot the client's registrations, which a reconnection makes again.
_REGION_UNKNOWN = "unable to find shared memory region"

#: Codes of a missing or rejected token (a proxy's answer): permanent, the configuration is wrong.
_DENIED_STATUS = frozenset({"UNAUTHENTICATED", "PERMISSION_DENIED"})
#: How a TLS mismatch and Triton's own header check show in an ``UNAVAILABLE`` failure: permanent too.
_SECURITY_SIGNS = ("handshake failed", "this protocol is restricted")

# Kinds of failure, see _classify.
_RECONNECT, _SLOW_DOWN, _RETRY, _PERMANENT, _MODEL_FAILED = "reconnect", "slow down", "retry", "permanent", "model failed"


class _NotReady(Exception):
    """The server (or the model) answered but is not ready: transient."""


def backoff_delay_s(attempt: int, *, backoff_ms: float, max_backoff_ms: float, jitter_ms: float) -> float:
    """Wait before retry number ``attempt`` (1, 2, …) in seconds.

    ``backoff_ms · 2^(attempt-1)`` capped at ``max_backoff_ms``, plus a uniform random jitter in
    [0, ``jitter_ms``); all three in milliseconds.
    """
    delay_ms = min(backoff_ms * 2.0 ** (attempt - 1), max_backoff_ms) + random.uniform(0.0, jitter_ms)
    return delay_ms / 1000.0


def _status(error: BaseException) -> str:
    """The gRPC status name of ``error`` (``"UNAVAILABLE"``, …), ``""`` when it carries none."""
    status = getattr(error, "status", None)
    status = status() if callable(status) else status
    return str(status or "").rsplit(".", 1)[-1]


def _classify(error: BaseException) -> str:
    """How to react to ``error``: one of the kinds ``_RECONNECT`` … ``_MODEL_FAILED``."""
    if isinstance(error, CoffeaLorentzError):
        return _PERMANENT
    if isinstance(error, _NotReady):
        return _SLOW_DOWN
    if isinstance(error, OSError):  # a refused or reset connection outside gRPC
        return _RECONNECT
    status = _status(error)
    if status in _DENIED_STATUS or any(sign in str(error).lower() for sign in _SECURITY_SIGNS):
        return _PERMANENT  # a missing or rejected token, a failed TLS handshake: configuration, not an outage
    if status in _RECONNECT_STATUS or (status == "NOT_FOUND" and _REGION_UNKNOWN in str(error).lower()):
        return _RECONNECT
    if status in _SLOW_DOWN_STATUS:
        return _SLOW_DOWN
    if status in _RETRY_STATUS:
        return _RETRY
    if status == "INTERNAL" and _STUB_UNHEALTHY in str(error):
        return _SLOW_DOWN
    if status in _PERMANENT_STATUS or not status:
        return _PERMANENT
    return _MODEL_FAILED


def _one_line(error: BaseException | str) -> str:
    return " ".join(str(error).split())


@dataclass(kw_only=True)
class _Outage:
    """The time budget of one run of transient failures (mutable, private to one call).

    ``started_s`` is the ``time.monotonic()`` of the first failure, None while all is well.
    """

    server_wait_s: float
    backoff_ms: float
    max_backoff_ms: float
    jitter_ms: float
    started_s: float | None = None
    n_failures: int = 0
    last_error: str = ""
    totals: RetryTotals | None = None

    def elapsed_s(self) -> float:
        return 0.0 if self.started_s is None else time.monotonic() - self.started_s

    def remaining_s(self) -> float:
        return self.server_wait_s - self.elapsed_s()

    def failed(self, error: BaseException | str) -> float | None:
        """Record a failure; the wait before the next try in seconds, None once the budget is spent."""
        if self.started_s is None:
            self.started_s = time.monotonic()
        self.n_failures += 1
        self.last_error = _one_line(error)
        remaining_s = self.remaining_s()
        if remaining_s <= 0.0:
            self._add_wait()
            return None
        if self.totals is not None:
            self.totals.retries += 1
        delay_s = backoff_delay_s(
            self.n_failures, backoff_ms=self.backoff_ms, max_backoff_ms=self.max_backoff_ms, jitter_ms=self.jitter_ms
        )
        return min(delay_s, remaining_s)

    def probe_timeout_s(self, timeout_s: float) -> float:
        """Deadline of a readiness probe in seconds: ``timeout_s``, shortened to what is left of the budget."""
        if self.started_s is None:
            return timeout_s
        return min(timeout_s, max(self.remaining_s(), 1.0))

    def _add_wait(self) -> None:
        if self.totals is not None:
            self.totals.waited_s += self.elapsed_s()

    def reset(self) -> None:
        self._add_wait()
        self.started_s = None
        self.n_failures = 0
        self.last_error = ""

    def gave_up(self, url: str, model: str | None, what: str) -> ServerError:
        """The one-line error raised when the budget is spent."""
        where = f"Triton server {url}" + (f", model {model!r}" if model else "")
        return ServerError(
            f"{where}: {what} failed for {self.elapsed_s():.1f} s ({self.n_failures} tries, "
            f"server_wait_s={self.server_wait_s:g}); last error: {self.last_error}"
        )


#: What a client asks while it connects (readiness, the model's signature and configuration).
_CONNECT_CALLS = frozenset({"is_server_ready", "is_model_ready", "get_model_repository_index", "get_model_metadata",
                            "get_model_config"})


class _Remembering:
    """A Triton client whose answers to the calls made while connecting are kept in ``answers``.

    A rate-limited front door refuses single calls (``RESOURCE_EXHAUSTED``); a connection needs
    four in a row. With the answers kept from one try to the next (the caller clears ``answers``
    after any other failure), each try asks only what is still unanswered, so it gets further even
    when the bucket holds one request and several workers draw from it. A "not ready" answer is
    never kept.
    """

    def __init__(self, client, answers: dict[tuple, object]) -> None:
        self._client = client
        self._answers = answers

    def __getattr__(self, method: str):
        if method not in _CONNECT_CALLS:
            raise AttributeError(method)

        def ask(*args, client_timeout: float, **kwargs):
            key = (method, args, tuple(sorted(kwargs.items())))
            if key in self._answers:
                return self._answers[key]
            answer = getattr(self._client, method)(*args, client_timeout=client_timeout, **kwargs)
            if answer is not False:
                self._answers[key] = answer
            return answer

        return ask

    def close(self) -> None:
        self._client.close()
