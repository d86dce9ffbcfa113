"""The Triton gRPC client: several requests in flight, per-request timeouts, one time-budgeted retry layer, preflight.

The served model takes ``p4`` FP32 [B, N, 4] and ``mask`` BOOL [B, N] (batch dimension implicit in
``config.pbtxt``) and returns ``score`` FP32 [B, n_classes], the softmax probabilities. The client
checks that signature against the server's model metadata at connect time (and again after every
reconnection) and raises :class:`~coffea_lorentz.errors.ModelMismatchError` on any difference,
or when the ``model_sha256`` of the served config changes across a reconnection.

Failures fall into three groups:

- transient — gRPC ``UNAVAILABLE``, ``DEADLINE_EXCEEDED``, ``RESOURCE_EXHAUSTED``, ``ABORTED``,
  ``CANCELLED``, a refused connection, a server or model that is not ready, a python-backend stub
  process reported unhealthy: retried with exponential backoff and jitter until ``server_wait_s``
  seconds have passed since the first failure of the current outage (any answered request ends the
  outage). After ``UNAVAILABLE`` or a refused connection the gRPC client is closed and recreated,
  so a server restarted on the same port is found again. After ``DEADLINE_EXCEEDED`` or an unready
  server (hung or overloaded) the window of requests in flight drops to one and nothing is re-sent
  before the server answers a readiness probe; after ``RESOURCE_EXHAUSTED`` (a rate limit, which
  has answered) the window drops to one and the request is re-sent after the backoff, no probe;
  each answered request widens the window by one again, up to ``max_in_flight``. Connecting asks
  four things in a row (readiness of server and model, metadata, configuration); through a rate
  limit the answers already given are kept from one try to the next.
- permanent request errors — ``INVALID_ARGUMENT``, ``NOT_FOUND``, ``UNIMPLEMENTED``,
  ``FAILED_PRECONDITION``: :class:`~coffea_lorentz.errors.ServerError` at once; except ``NOT_FOUND``
  for a shared memory region (``shared_memory=True``: the server restarted and forgot the
  registrations), which reconnects and registers the regions again like ``UNAVAILABLE``.
- the model failed on the server — any other status (``INTERNAL``, ``UNKNOWN``, …):
  :class:`~coffea_lorentz.errors.InferenceError` at once.

Every error raised after retrying is one line: server URL, model, what failed, for how long and
how many times it was tried.

:func:`inspect_served_models` is the preflight: before any data is read it checks that a server
serves every model with the expected signature and a large enough ``max_batch_size``, and returns
what it learned (:class:`ServedModel`, including the ``model_sha256`` written by
:func:`coffea_lorentz.repository.build_repository`).

The parts live beside this module: :mod:`~coffea_lorentz.infer.urls` (addresses),
:mod:`~coffea_lorentz.infer.outage` (failure kinds, the time budget and backoff),
:mod:`~coffea_lorentz.infer.served` (the preflight), :mod:`~coffea_lorentz.infer.plan` (the
request plan), :mod:`~coffea_lorentz.infer.shared_memory` (inputs through shared memory) and
:mod:`~coffea_lorentz.infer.balance` (several servers); this module holds :class:`TritonBackend`.
"""


from __future__ import annotations

import functools
import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np

from ..batch import Batch
from ..errors import ConfigurationError, InferenceError, InvalidInputError, ModelMismatchError, ServerError
from .base import Backend
# _classify, _Outage, _NotReady, backoff_delay_s and the preflight are also reached from here.
from .outage import _MODEL_FAILED, _PERMANENT, _RECONNECT, _SLOW_DOWN, _classify, _NotReady, _one_line, _Outage  # noqa: F401
from .outage import _Remembering, _status
from .outage import RetryTotals, backoff_delay_s  # noqa: F401
from .served import EXPECTED_INPUTS, OUTPUT_NAME, SHA256_PARAMETER, ServedModel, inspect_served_models  # noqa: F401
from .served import ZOO_SIGNATURE, Signature
from .served import _check_metadata, _config_sha256, _describe_served, _served_models
from .plan import _Requests
from .shared_memory import NoRoom, SharedInputs
from .security import BearerToken, TlsConfig, open_client, resolve_tls, security_failure
from .urls import normalise_url, split_urls

__all__ = ["ServedModel", "TritonBackend", "inspect_served_models", "normalise_url", "split_urls"]


class TritonBackend(Backend):
    """Scores batches on a Triton Inference Server over gRPC — or on several.

    With several servers (``url`` a comma-separated list) each request goes to the server with the
    fewest outstanding requests, and a server that fails is taken out for ``server_cooldown_s`` while
    its requests are resent to the others (:mod:`coffea_lorentz.infer.balance`).

    Args:
        url: gRPC address, ``grpc://HOST:PORT`` or ``HOST:PORT``; several separated by commas.
        model: served model name (the tagger name).
        model_version: served version; ``""`` lets the server choose.
        max_in_flight: most requests awaiting an answer at once.
        timeout_s: per-request deadline in seconds (also the deadline of readiness probes).
        server_wait_s: how long, in seconds, transient failures (see the module docstring) are
            retried, counted from the first failure of an outage; a success starts the count anew.
        backoff_ms: wait before the first retry of an outage in milliseconds; doubled each further retry.
        max_backoff_ms: cap of each wait before the jitter, in milliseconds.
        jitter_ms: a uniform random delay in [0, jitter_ms) milliseconds added to each wait.
        server_cooldown_s: with several servers, how long a failed server gets no request, in seconds.
        shared_memory: send the inputs through Triton system shared memory instead of inside the gRPC
            message (:mod:`coffea_lorentz.infer.shared_memory`). Only for a server on this host (one
            URL, not a proxy in front of other hosts); a server that cannot map the memory fails the
            first request with :class:`~coffea_lorentz.errors.ServerError`. ``coffea-lorentz run``
            turns it on for the local server it starts when the workers are on this host.
            Only for the zoo's ``p4`` + ``mask``.
        signature: the inputs and output the served model must have and the client sends and
            reads (:func:`~coffea_lorentz.infer.served.spec_signature` for a model brought with its
            spec; batches are then :class:`~coffea_lorentz.spec_batch.SpecBatch`); default the zoo's.
        tls: TLS of the connection (:class:`~coffea_lorentz.infer.security.TlsConfig`); a
            ``grpcs://`` URL uses TLS with the system's CA roots when None, a ``grpc://`` URL refuses it.
        token: a :class:`~coffea_lorentz.infer.security.BearerToken` sent with every call.
            A TLS mismatch or a refused token is a :class:`~coffea_lorentz.errors.ConfigurationError`
            at once (never retried, never downgraded).
    """

    _lazy_attributes = ("_client", "_n_classes", "_served_sha256", "_served_max_batch_size", "_pool", "_shared")
    remote = True

    def __init__(
        self,
        url: str,
        model: str,
        *,
        model_version: str = "",
        max_in_flight: int = 4,
        timeout_s: float = 300.0,
        server_wait_s: float = 300.0,
        backoff_ms: float = 200.0,
        max_backoff_ms: float = 10_000.0,
        jitter_ms: float = 100.0,
        server_cooldown_s: float = 5.0,
        shared_memory: bool = False,
        signature: Signature = ZOO_SIGNATURE,
        tls: TlsConfig | None = None,
        token: BearerToken | None = None,
    ):
        addresses = split_urls(url)
        self.tls = resolve_tls(url, tls)
        self.token = token
        if shared_memory and signature != ZOO_SIGNATURE:
            raise InvalidInputError("TritonBackend: shared_memory=True carries the zoo's p4 + mask only, "
                                    f"not {', '.join(signature.input_names)}")
        self.signature = signature
        if shared_memory and len(addresses) > 1:
            raise InvalidInputError("TritonBackend: shared_memory=True needs one server on this host, "
                                    f"not several ({', '.join(addresses)})")
        self.url = ",".join(addresses)
        self.model = model
        self.model_version = model_version
        self.max_in_flight = max(1, int(max_in_flight))
        self.timeout_s = float(timeout_s)
        self.server_wait_s = max(0.0, float(server_wait_s))
        self.backoff_ms = float(backoff_ms)
        self.max_backoff_ms = float(max_backoff_ms)
        self.jitter_ms = float(jitter_ms)
        self.server_cooldown_s = max(0.0, float(server_cooldown_s))
        self.shared_memory = bool(shared_memory)
        #: The shared memory of this process's requests (shared_memory=True), made on first use.
        self._shared = None
        #: One single-server backend per server when there are several, else empty.
        self._servers: tuple[TritonBackend, ...] = ()
        if len(addresses) > 1:
            self._servers = tuple(
                TritonBackend(address, model, model_version=model_version, max_in_flight=max_in_flight,
                              timeout_s=timeout_s, server_wait_s=server_wait_s, backoff_ms=backoff_ms,
                              max_backoff_ms=max_backoff_ms, jitter_ms=jitter_ms, signature=signature,
                              tls=self.tls, token=token)
                for address in addresses
            )
        self._pool = None
        self._served_max_batch_size: int | None = None
        self._client = None
        self._n_classes: int | None = None
        #: sha256 of the served model.pt seen at the last connection (None: not published).
        self._served_sha256: str | None = None
        #: Counts the gRPC clients created in this process; tells a replaced client's failures apart.
        self._generation = 0
        #: Serialises (re)connections of threads sharing this backend.
        self._lock = threading.Lock()
        #: Retries and time waited on outages in this process (read by the run, per chunk).
        self.retry_totals = RetryTotals()

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- retry policy -----------------------------------------------------------------------
    def _delay_s(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1, 2, …), in seconds."""
        return backoff_delay_s(attempt, backoff_ms=self.backoff_ms, max_backoff_ms=self.max_backoff_ms,
                               jitter_ms=self.jitter_ms)

    def _new_outage(self) -> _Outage:
        return _Outage(server_wait_s=self.server_wait_s, backoff_ms=self.backoff_ms,
                       max_backoff_ms=self.max_backoff_ms, jitter_ms=self.jitter_ms, totals=self.retry_totals)

    def retry_counts(self) -> tuple[int, float]:
        """``(retries, waited_s)`` of this backend (and its servers) so far in this process
        (:class:`~coffea_lorentz.infer.outage.RetryTotals`)."""
        own = (self.retry_totals.retries, self.retry_totals.waited_s)
        for server in self._servers:
            retries, waited_s = server.retry_counts()
            own = (own[0] + retries, own[1] + waited_s)
        return own

    # -- connection -------------------------------------------------------------------------
    @property
    def client(self):
        """The gRPC client, connected and checked on first use in this process (with several
        servers: the first server's)."""
        if self._servers:
            return self._servers[0].client
        if self._client is None:
            self._recover(self._new_outage(), reconnect=True, stale_generation=self._generation, resume_at_s=0.0)
        return self._client

    def close(self) -> None:
        """Unregister and remove the shared memory regions (if any), close the gRPC channel(s); the
        backend reconnects (and makes new regions) on its next request. Idempotent."""
        shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()
        client, self._client = self._client, None
        if client is not None:
            client.close()
        for server in self._servers:
            server.close()
        super().close()

    def _open(self, outage: _Outage, expected_sha256: str | None, answers: dict[tuple, object] | None = None):
        """A new gRPC client on a ready server whose model matches; raises on the first failure.

        ``expected_sha256``: the ``model_sha256`` the served model must still have (None: any).
        ``answers``: what earlier tries of this connection were told (:class:`_Remembering`).
        """
        client = open_client(self.url, tls=self.tls, token=self.token)
        try:
            asked = _Remembering(client, {} if answers is None else answers)
            self._probe(asked, outage)
            where = f"model {self.model!r} at {self.url}"
            metadata = asked.get_model_metadata(self.model, self.model_version, as_json=True,
                                                client_timeout=self.timeout_s)
            n_classes = _check_metadata(metadata, where, self.signature)
            config = asked.get_model_config(self.model, self.model_version, as_json=True,
                                            client_timeout=self.timeout_s).get("config", {})
            sha256 = _config_sha256(config)
            served_max_batch_size = int(config.get("max_batch_size", 0))
            if served_max_batch_size < 1:
                raise ModelMismatchError(f"{where}: max_batch_size is {served_max_batch_size}; the client needs a "
                                         "batching model (max_batch_size >= 1)")
            if expected_sha256 is not None and sha256 != expected_sha256:
                raise ModelMismatchError(
                    f"{where}: the served model changed after reconnecting (model_sha256 {expected_sha256} before, "
                    f"{sha256} now); one call's scores would mix two models"
                )
        except BaseException:
            client.close()
            raise
        self._n_classes, self._served_sha256 = n_classes, sha256
        self._served_max_batch_size = served_max_batch_size
        return client

    def _probe(self, client, outage: _Outage) -> None:
        """Raise unless the server and the model answer that they are ready."""
        timeout_s = outage.probe_timeout_s(self.timeout_s)
        if not client.is_server_ready(client_timeout=timeout_s):
            raise _NotReady("server not ready")
        if not client.is_model_ready(self.model, self.model_version, client_timeout=timeout_s):
            served = _served_models(client, timeout_s)
            if self.model not in served:
                raise ModelMismatchError(
                    f"Triton server at {self.url} does not serve model {self.model!r}; it serves: {_describe_served(served)}"
                )
            raise _NotReady(f"model {self.model!r} not ready")

    def _recover(self, outage: _Outage, *, reconnect: bool, stale_generation: int, resume_at_s: float,
                 expected_sha256: str | None = None) -> None:
        """Wait until ``resume_at_s`` (``time.monotonic()``), then make the server usable again.

        With ``reconnect`` the client of generation ``stale_generation`` is replaced by a new one
        (unless another thread already did) whose model must have ``expected_sha256`` (None: any);
        otherwise the current client only probes readiness. Transient failures are retried within
        ``outage``'s budget; permanent ones raise.
        """
        what = "connect" if reconnect else "readiness probe"
        answers: dict[tuple, object] = {}  # kept through a rate limit's refusals only
        while True:
            time.sleep(max(0.0, resume_at_s - time.monotonic()))
            try:
                with self._lock:
                    if self._client is None or (reconnect and self._generation == stale_generation):
                        old, self._client = self._client, None
                        if old is not None:
                            old.close()  # its requests still in flight come back CANCELLED and are re-sent
                        self._client = self._open(outage, expected_sha256, answers)
                        self._generation += 1
                    else:
                        self._probe(self._client, outage)
                return
            except Exception as err:  # noqa: BLE001 - sorted into transient and permanent below
                if isinstance(err, (ModelMismatchError, ConfigurationError)):
                    raise
                if _status(err) != "RESOURCE_EXHAUSTED":
                    answers.clear()
                self._raise_if_insecure(err)
                kind = _classify(err)
                if kind in (_PERMANENT, _MODEL_FAILED):
                    raise ServerError(
                        f"Triton server {self.url}, model {self.model!r}: {what} failed (not retried): {_one_line(err)}"
                    ) from None
                delay_s = outage.failed(err)
                if delay_s is None:
                    raise outage.gave_up(self.url, self.model, what) from None
                resume_at_s = time.monotonic() + delay_s
                if kind == _RECONNECT and not reconnect:
                    reconnect, stale_generation, what = True, self._generation, "connect"

    def _check_metadata(self, metadata: dict) -> int:
        """Compare the served signature with :data:`EXPECTED_INPUTS`; return n_classes."""
        return _check_metadata(metadata, f"model {self.model!r} at {self.url}", self.signature)

    # -- requests ---------------------------------------------------------------------------
    def _submit(self, batch: Batch, on_done, client=None, slot: int | None = None, generation: int = 0) -> None:
        """Send ``batch`` asynchronously on ``client`` (default: this backend's); ``on_done(result=, error=)``.

        With ``slot`` (shared memory on) the inputs go through that slot of the shared memory,
        registered for client generation ``generation``; else, or when ``/dev/shm`` is full, inside
        the message.
        """
        import tritonclient.grpc as grpcclient

        client = client or self._client
        inputs = None
        if slot is not None:
            try:
                inputs = self._shared.inputs(slot, batch, client, generation)
            except NoRoom as err:
                warnings.warn(f"{err}; this request goes inside the gRPC message", RuntimeWarning, stacklevel=2)
        if inputs is None:
            inputs = _infer_inputs(grpcclient, batch, self.signature)
        client.async_infer(
            self.model,
            inputs,
            callback=on_done,
            model_version=self.model_version,
            outputs=[grpcclient.InferRequestedOutput(self.signature.output)],
            client_timeout=self.timeout_s,
        )

    def served_max_batch_size(self) -> int | None:
        """The most jets one request may hold: the served model's ``max_batch_size`` (with several
        servers, the smallest of those known). Connects on first use; None when no server answered."""
        if not self._servers:
            if self._served_max_batch_size is None:
                self.client  # noqa: B018 - connects (retrying within server_wait_s) and reads the config
            return self._served_max_batch_size
        if self._known_max_batch_size() is None:
            from .balance import PoolState, _connected

            with self._lock:
                if self._pool is None:
                    self._pool = PoolState(n_servers=len(self._servers))
            for index in range(len(self._servers)):
                try:
                    _connected(self, index)
                    break
                except ModelMismatchError:
                    raise
                except Exception:  # noqa: BLE001 - this server is down: infer_balanced deals with it
                    continue
        return self._known_max_batch_size()

    def request_size(self) -> int:
        """Jets per request when the user chose no batch size: the served ``max_batch_size``
        (:meth:`served_max_batch_size`; connects on first use), else the in-process default."""
        return self.served_max_batch_size() or super().request_size()

    def _known_max_batch_size(self) -> int | None:
        """The served ``max_batch_size`` learnt so far (the smallest over connected servers); no connecting."""
        if not self._servers:
            return self._served_max_batch_size
        known = [server._served_max_batch_size for server in self._servers if server._served_max_batch_size]
        return min(known) if known else None

    def infer_batches(self, batches: Sequence[Batch]) -> list[np.ndarray]:
        """Probabilities float32 [B, n_classes] for each batch, in order.

        A batch larger than the served ``max_batch_size`` is sent as several requests and its
        results joined. Keeps up to ``max_in_flight`` requests awaiting an answer; see the module
        docstring for how failures are retried.
        """
        if not batches:
            return []
        if self._servers:
            from .balance import PoolState, infer_balanced

            with self._lock:
                if self._pool is None:
                    self._pool = PoolState(n_servers=len(self._servers))
            return infer_balanced(self, batches)
        requests = _Requests(batches, lambda: self._served_max_batch_size)
        if self.shared_memory and self._shared is None:
            with self._lock:
                if self._shared is None:
                    self._shared = SharedInputs(f"Triton server {self.url}, model {self.model!r}")
        slots: dict[tuple[int, int], int] = {}  # request key → its shared memory slot, until answered
        sent: set[tuple[int, int]] = set()  # requests awaiting an answer
        try:
            return self._infer_requests(requests, slots, sent)
        finally:
            for key, slot in slots.items():
                if key not in sent:  # a request still on the server keeps its memory
                    self._shared.give_back(slot)

    def _infer_requests(self, requests: _Requests, slots: dict[tuple[int, int], int],
                        sent: set[tuple[int, int]]) -> list[np.ndarray]:
        """The send/answer loop of :meth:`infer_batches` for one server; ``slots`` and ``sent`` are
        filled as requests take shared memory slots and are sent (the caller gives slots back)."""
        shared = self._shared
        outage = self._new_outage()
        # (request key, epoch at sending, client generation, result, error) of each answered request.
        finished: list[tuple[tuple[int, int], int, int, object, Exception | None]] = []
        condition = threading.Condition()

        def on_done(key: tuple[int, int], epoch: int, generation: int, result=None, error=None) -> None:
            with condition:
                finished.append((key, epoch, generation, result, error))
                condition.notify()

        in_flight = 0
        window = self.max_in_flight
        epoch = 0  # counts handled failures; a failure of a request sent before the last one is not new
        resume_at_s = 0.0  # time.monotonic() before which nothing is sent
        reconnect = self._client is None
        probe = False
        stale_generation = self._generation
        call_sha256: str | None = None  # sha256 of the model that computed this call's first answer
        while requests.remaining:
            if requests.pending and in_flight < window:
                if reconnect or probe:
                    self._recover(outage, reconnect=reconnect, stale_generation=stale_generation,
                                  resume_at_s=resume_at_s, expected_sha256=call_sha256)
                    reconnect = probe = False
                else:  # retried as it was (a rate limit's refusal, an aborted call): wait, then re-send
                    time.sleep(max(0.0, resume_at_s - time.monotonic()))
                generation = self._generation
                while requests.pending and in_flight < window:
                    key, batch = requests.take()
                    callback = functools.partial(on_done, key, epoch, generation)
                    in_flight += 1
                    sent.add(key)
                    if shared is not None and key not in slots:
                        slots[key] = shared.take()
                    try:
                        self._submit(batch, callback, slot=slots.get(key), generation=generation)
                    except Exception as err:  # noqa: BLE001 - handled like an answered failure
                        callback(error=err)
            with condition:
                if not finished:
                    condition.wait(timeout=self.timeout_s + 5.0)
                done, finished[:] = list(finished), []
            for key, sent_epoch, generation, result, error in done:
                in_flight -= 1
                sent.discard(key)
                if error is None:
                    requests.answered(key, self._check_output(result.as_numpy(self.signature.output), requests.batch(key)))
                    if key in slots:
                        shared.give_back(slots.pop(key))
                    call_sha256 = call_sha256 or self._served_sha256
                    outage.reset()
                    window = min(self.max_in_flight, window + 1)
                    continue
                kind = _classify(error)
                if kind in (_PERMANENT, _MODEL_FAILED):
                    self._raise_if_insecure(error)
                    raise self._request_error(kind, key[0], requests.batch(key), error)
                requests.retry(key)
                if sent_epoch < epoch:
                    continue  # sent before the failure being handled already: re-send, nothing new learnt
                epoch += 1
                delay_s = outage.failed(error)
                if delay_s is None:
                    raise outage.gave_up(self.url, self.model, f"inference ({requests.describe_done()})")
                resume_at_s = time.monotonic() + delay_s
                if kind == _RECONNECT:
                    reconnect, stale_generation = True, generation
                elif kind == _SLOW_DOWN:
                    # One request at a time; a hung server (DEADLINE_EXCEEDED) is probed before the
                    # re-send, a rate limit (RESOURCE_EXHAUSTED) has answered: a probe would only
                    # spend a request of its bucket.
                    window, probe = 1, _status(error) != "RESOURCE_EXHAUSTED"
        return requests.results()

    def _raise_if_insecure(self, error: BaseException) -> None:
        """:class:`ConfigurationError` (one line) when ``error`` is a TLS mismatch or a refused token."""
        reason = security_failure(error, self.url, tls=self.tls, token=self.token)
        if reason is not None:
            raise ConfigurationError(f"{reason} (model {self.model!r})")

    def _request_error(self, kind: str, index: int, batch: Batch, error: Exception) -> Exception:
        what = f"request {index} ({_describe_batch(batch)})"
        if kind == _MODEL_FAILED:
            return InferenceError(f"Triton server {self.url}, model {self.model!r}: {what} failed in the model: {_one_line(error)}")
        return ServerError(f"Triton server {self.url}, model {self.model!r}: {what} failed (not retried): {_one_line(error)}")

    def _check_output(self, score: np.ndarray | None, batch: Batch) -> np.ndarray:
        expected = (len(batch), self._n_classes)
        if score is None or score.shape != expected:
            got = None if score is None else score.shape
            raise ModelMismatchError(f"model {self.model!r} at {self.url} returned {self.signature.output!r} of shape "
                                     f"{got}, expected {expected}")
        return score.astype(np.float32, copy=False)


def _infer_inputs(grpcclient, batch, signature: Signature) -> list:
    """The ``InferInput`` tensors of ``batch`` in the message: the zoo's ``p4`` and ``mask``, or a
    :class:`~coffea_lorentz.spec_batch.SpecBatch`'s named tensors."""
    arrays = batch.tensors if hasattr(batch, "tensors") else {"p4": batch.p4, "mask": batch.mask}
    inputs = []
    for name, datatype, _ in signature.inputs:
        array = np.ascontiguousarray(arrays[name], dtype=bool if datatype == "BOOL" else np.float32)
        tensor = grpcclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def _describe_batch(batch) -> str:
    if hasattr(batch, "tensors"):
        return f"{len(batch)} jets, " + ", ".join(f"{name} {list(a.shape[1:])}" for name, a in batch.tensors.items())
    return f"{len(batch)} jets, N={batch.p4.shape[1]}"
