"""What Triton itself measured: per-model requests, batches, queue and compute time, before/after a run.

Triton counts, per model, since it started: requests answered and failed, jets computed
(``inference_count``), model executions (``execution_count``: the batches its dynamic batcher
formed), and the time requests spent waiting in its queue and in the model (input, forward,
output). Two readings around a run give what the run cost the server:

>>> before = read_server_statistics("grpc://127.0.0.1:8001", ["lloca"])      # doctest: +SKIP
>>> ...                                                                       # the run
>>> delta = statistics_delta(before, read_server_statistics("grpc://127.0.0.1:8001", ["lloca"]))
>>> print("\\n".join(format_statistics(delta, wall_s=123.0)))                 # doctest: +SKIP

or ``with ServerStatisticsWindow(url, models) as window: ...`` and ``window.delta`` afterwards.

``url`` takes the forms the client takes (``grpc://HOST:PORT``, ``HOST:PORT``, a comma-separated
list: the counts of every server are added) and ``http://HOST:PORT`` (Triton's HTTP port,
``GET /v2/models/<name>/stats``). Read each server at its own address: through a load balancer
(Envoy) a reading comes from whichever server the balancer picks.

Triton updates a model's counts just after it answers; read "after" once the client has all its
answers (:func:`read_server_statistics` with ``settle_s`` waits until two readings agree).
"""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

from ..errors import ServerError
from .outage import _status, backoff_delay_s
from .security import BearerToken, TlsConfig, open_client, resolve_tls
from .triton_client import normalise_url

__all__ = [
    "ModelStatistics",
    "ServerStatisticsWindow",
    "advice",
    "format_statistics",
    "read_server_statistics",
    "statistics_delta",
]

#: Queue time above this share of queue + compute time gets the "add instances or servers" advice.
QUEUE_DOMINATES_SHARE = 0.5
#: Fewest requests for that advice: a handful of requests says nothing about the queue of a long run.
ADVICE_MIN_REQUESTS = 20


@dataclass(frozen=True, kw_only=True)
class ModelStatistics:
    """Triton's counters of one model (summed over its versions, and over servers when several).

    Attributes:
        model: served model name.
        requests: inference requests answered successfully.
        failed_requests: inference requests that failed.
        inference_count: jets computed (batch items of the successful requests).
        execution_count: model executions, i.e. batches formed by the dynamic batcher.
        request_s: summed end-to-end time of the successful requests inside the server, seconds.
        queue_s: summed time requests waited in the scheduler queue, seconds.
        compute_input_s: summed time preparing inputs (copies to the model instance), seconds.
        compute_infer_s: summed time in the model's forward, seconds.
        compute_output_s: summed time collecting outputs, seconds.

    Times are sums over requests: with several requests waiting or computing at once they can
    exceed the wall time.
    """

    model: str
    requests: int = 0
    failed_requests: int = 0
    inference_count: int = 0
    execution_count: int = 0
    request_s: float = 0.0
    queue_s: float = 0.0
    compute_input_s: float = 0.0
    compute_infer_s: float = 0.0
    compute_output_s: float = 0.0

    @property
    def compute_s(self) -> float:
        """Input + forward + output time, seconds."""
        return self.compute_input_s + self.compute_infer_s + self.compute_output_s

    @property
    def average_batch_size(self) -> float:
        """Jets per model execution (what the dynamic batcher formed); NaN without executions."""
        return self.inference_count / self.execution_count if self.execution_count else float("nan")

    @property
    def queue_share(self) -> float:
        """queue ÷ (queue + compute) time, in [0, 1]; NaN when both are zero."""
        total = self.queue_s + self.compute_s
        return self.queue_s / total if total else float("nan")

    @property
    def mean_queue_ms(self) -> float:
        """Average wait of one request in the queue, milliseconds; NaN without requests."""
        return 1000.0 * self.queue_s / self.requests if self.requests else float("nan")

    @property
    def mean_compute_ms(self) -> float:
        """Average compute time of one request, milliseconds; NaN without requests."""
        return 1000.0 * self.compute_s / self.requests if self.requests else float("nan")

    def _combine(self, other: ModelStatistics, sign: int) -> ModelStatistics:
        if other.model != self.model:
            raise ValueError(f"cannot combine the statistics of models {self.model!r} and {other.model!r}")
        values = {f.name: getattr(self, f.name) + sign * getattr(other, f.name) for f in fields(self) if f.name != "model"}
        return ModelStatistics(model=self.model, **values)

    def __add__(self, other: ModelStatistics) -> ModelStatistics:
        return self._combine(other, +1)

    def __sub__(self, other: ModelStatistics) -> ModelStatistics:
        return self._combine(other, -1)


def _seconds(entry: Mapping | None) -> float:
    return int((entry or {}).get("ns", 0) or 0) / 1e9


def _count(entry: Mapping | None) -> int:
    return int((entry or {}).get("count", 0) or 0)


def _parse(model_stats: Sequence[Mapping]) -> dict[str, ModelStatistics]:
    """Triton's ``model_stats`` list (HTTP JSON, or gRPC JSON with int64 as strings) → per model, versions summed."""
    result: dict[str, ModelStatistics] = {}
    for entry in model_stats:
        stats = entry.get("inference_stats", {})
        one = ModelStatistics(
            model=entry["name"],
            requests=_count(stats.get("success")),
            failed_requests=_count(stats.get("fail")),
            inference_count=int(entry.get("inference_count", 0) or 0),
            execution_count=int(entry.get("execution_count", 0) or 0),
            request_s=_seconds(stats.get("success")),
            queue_s=_seconds(stats.get("queue")),
            compute_input_s=_seconds(stats.get("compute_input")),
            compute_infer_s=_seconds(stats.get("compute_infer")),
            compute_output_s=_seconds(stats.get("compute_output")),
        )
        result[one.model] = result[one.model] + one if one.model in result else one
    return result


def _read_one(url: str, timeout_s: float, tls: TlsConfig | None = None,
              token: BearerToken | None = None) -> dict[str, ModelStatistics]:
    """Every model's statistics from one server (``http://HOST:PORT`` or a gRPC address, over TLS
    for ``grpcs://`` or with ``tls``, with ``token`` on the call)."""
    if url.startswith(("http://", "https://")):
        address = url.rstrip("/")
        try:
            with urllib.request.urlopen(f"{address}/v2/models/stats", timeout=timeout_s) as response:
                return _parse(json.load(response).get("model_stats", []))
        except (urllib.error.URLError, OSError, ValueError) as err:
            raise ServerError(f"Triton server {address}: reading /v2/models/stats failed: {err}") from None
    address = normalise_url(url)
    client = open_client(address, tls=resolve_tls(url, tls), token=token)
    deadline_s = time.monotonic() + timeout_s
    try:
        for attempt in itertools.count():
            try:
                return _parse(client.get_inference_statistics("", as_json=True, client_timeout=timeout_s)
                              .get("model_stats", []))
            except Exception as err:  # noqa: BLE001 - one line naming the server
                # A rate-limited front door: wait for the bucket (within timeout_s), else give up.
                delay_s = backoff_delay_s(attempt, backoff_ms=250.0, max_backoff_ms=2_000.0, jitter_ms=100.0)
                if _status(err) == "RESOURCE_EXHAUSTED" and time.monotonic() + delay_s < deadline_s:
                    time.sleep(delay_s)
                    continue
                raise ServerError(f"Triton server {address}: reading the inference statistics failed: "
                                  f"{' '.join(str(err).split())}") from None
    finally:
        client.close()


def read_server_statistics(url: str | Sequence[str], models: Sequence[str] | None = None, *, timeout_s: float = 10.0,
                           settle_s: float = 0.0, tls: TlsConfig | None = None,
                           token: BearerToken | None = None) -> dict[str, ModelStatistics]:
    """Triton's statistics of ``models`` (default: every model) now, summed over the servers of ``url``.

    Args:
        url: one address (``grpc://HOST:PORT``, ``HOST:PORT``, ``http://HOST:PORT``), a comma-separated
            list of them, or a sequence.
        models: model names; a model a server does not serve counts as zero there.
        timeout_s: deadline of each reading, seconds.
        settle_s: read again every ``settle_s`` seconds until two readings agree (Triton updates
            its counts just after answering); 0 reads once.
        tls, token: TLS and bearer token of the gRPC readings, as the client's
            (:mod:`coffea_lorentz.infer.security`; ``grpcs://`` always means TLS).

    Raises:
        ServerError: a server could not be read (named).
    """
    urls = [part.strip() for part in (url.split(",") if isinstance(url, str) else url) if part.strip()]
    if not urls:
        raise ServerError(f"no server address in {url!r}")

    def read() -> dict[str, ModelStatistics]:
        total: dict[str, ModelStatistics] = {}
        for one in urls:
            for name, stats in _read_one(one, timeout_s, tls, token).items():
                total[name] = total[name] + stats if name in total else stats
        wanted = list(total) if models is None else list(models)
        return {name: total.get(name, ModelStatistics(model=name)) for name in wanted}

    reading = read()
    while settle_s > 0:
        time.sleep(settle_s)
        again = read()
        if again == reading:
            break
        reading = again
    return reading


def statistics_delta(before: Mapping[str, ModelStatistics], after: Mapping[str, ModelStatistics]
                     ) -> dict[str, ModelStatistics]:
    """What happened between two readings, per model of ``after`` (a model new in ``after`` counts from zero).

    A count that went down means the server restarted in between: that model's delta is then
    ``after`` itself (what the new server did), a lower bound.
    """
    delta = {}
    for name, now in after.items():
        then = before.get(name, ModelStatistics(model=name))
        difference = now - then
        restarted = difference.requests < 0 or difference.inference_count < 0 or difference.execution_count < 0
        delta[name] = now if restarted else difference
    return delta


def advice(stats: ModelStatistics) -> str | None:
    """One line when requests waited longer in Triton's queue than they computed, else None."""
    if stats.requests >= ADVICE_MIN_REQUESTS and stats.queue_share > QUEUE_DOMINATES_SHARE:
        return (f"model {stats.model!r}: requests waited {100 * stats.queue_share:.0f}% of their server time in "
                f"Triton's queue ({stats.mean_queue_ms:.1f} ms queue vs {stats.mean_compute_ms:.1f} ms compute per "
                "request): add model instances or servers")
    return None


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{'es' if noun.endswith('ch') else 's'}"


def format_statistics(delta: Mapping[str, ModelStatistics], *, wall_s: float | None = None) -> list[str]:
    """Lines for a run summary: per model, requests, jets, average batch formed, queue vs compute
    time (totals and per request), and the advice line where queueing dominates."""
    lines = []
    for stats in delta.values():
        line = (f"{stats.model}: {_plural(stats.requests, 'request')} ({stats.failed_requests} failed), "
                f"{_plural(stats.inference_count, 'jet')} in {_plural(stats.execution_count, 'batch')} "
                f"(average {stats.average_batch_size:.1f} jets), queue {stats.queue_s:.1f} s vs compute "
                f"{stats.compute_s:.1f} s ({stats.mean_queue_ms:.1f} / {stats.mean_compute_ms:.1f} ms per request)")
        if wall_s:
            line += f", compute {stats.compute_s / wall_s:.2f} s per second of the run (instances run side by side)"
        lines.append(line)
        tip = advice(stats)
        if tip:
            lines.append(tip)
    return lines


class ServerStatisticsWindow:
    """Reads the statistics on entering and leaving a ``with`` block; ``delta`` and ``wall_s`` afterwards.

    ``with ServerStatisticsWindow(url, models) as window: run(); print(window.delta)``. A server
    that cannot be read leaves ``delta`` None and ``error`` set; it never fails the block.
    """

    def __init__(self, url: str | Sequence[str], models: Sequence[str] | None = None, *, timeout_s: float = 10.0,
                 settle_s: float = 0.3, tls: TlsConfig | None = None, token: BearerToken | None = None):
        self.url, self.models, self.timeout_s, self.settle_s = url, models, timeout_s, settle_s
        self._security = {"tls": tls, "token": token}
        self.before: dict[str, ModelStatistics] | None = None
        self.delta: dict[str, ModelStatistics] | None = None
        self.wall_s: float | None = None
        self.error: str | None = None
        self._started_s = 0.0

    def __enter__(self) -> ServerStatisticsWindow:
        self._started_s = time.monotonic()
        try:
            self.before = read_server_statistics(self.url, self.models, timeout_s=self.timeout_s, **self._security)
        except ServerError as err:
            self.error = str(err)
        return self

    def __exit__(self, *exc_info) -> None:
        self.wall_s = time.monotonic() - self._started_s
        if self.before is None:
            return
        try:
            after = read_server_statistics(self.url, self.models, timeout_s=self.timeout_s, settle_s=self.settle_s,
                                           **self._security)
        except ServerError as err:
            self.error = str(err)
            return
        self.delta = statistics_delta(self.before, after)

    def lines(self) -> list[str]:
        """:func:`format_statistics` of the window (or the one-line reading error)."""
        if self.delta is None:
            return [f"server statistics unavailable: {self.error}"] if self.error else []
        return format_statistics(self.delta, wall_s=self.wall_s)
