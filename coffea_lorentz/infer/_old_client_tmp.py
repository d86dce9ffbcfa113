"""The Triton gRPC client: several requests in flight, per-request timeouts, retries with backoff.

The served model takes ``p4`` FP32 [B, N, 4] and ``mask`` BOOL [B, N] (batch dimension implicit in
``config.pbtxt``) and returns ``score`` FP32 [B, n_classes], the softmax probabilities. The client
checks that signature against the server's model metadata at connect time and raises
:class:`~coffea_lorentz.errors.ModelMismatchError` on any difference.
"""

from __future__ import annotations

import functools
import heapq
import random
import threading
import time
from collections.abc import Sequence

import numpy as np

from ..batch import Batch
from ..errors import ModelMismatchError, ServerError
from .base import Backend

__all__ = ["TritonBackend", "normalise_url"]

#: The inputs every served tagger takes: name → (datatype, shape with -1 for B and N).
EXPECTED_INPUTS: dict[str, tuple[str, tuple[int, ...]]] = {"p4": ("FP32", (-1, -1, 4)), "mask": ("BOOL", (-1, -1))}
#: The output every served tagger returns.
OUTPUT_NAME = "score"
#: gRPC status codes that mean "the request itself is wrong": retrying cannot help.
_PERMANENT_STATUS = ("INVALID_ARGUMENT", "NOT_FOUND", "UNIMPLEMENTED", "FAILED_PRECONDITION")


def normalise_url(url: str) -> str:
    """``grpc://HOST:PORT`` or ``HOST:PORT`` → ``HOST:PORT``."""
    for prefix in ("grpc://", "grpcs://"):
        if url.startswith(prefix):
            return url[len(prefix) :]
    if "://" in url:
        raise ServerError(f"unsupported server URL {url!r}: expected grpc://HOST:PORT")
    return url


def _is_permanent(error: Exception) -> bool:
    status = getattr(error, "status", None)
    status = str(status() if callable(status) else status or "")
    return any(code in status for code in _PERMANENT_STATUS)


class TritonBackend(Backend):
    """Scores batches on a Triton Inference Server over gRPC.

    Args:
        url: gRPC address, ``grpc://HOST:PORT`` or ``HOST:PORT``.
        model: served model name (the tagger name).
        model_version: served version; ``""`` lets the server choose.
        max_in_flight: most requests awaiting an answer at once.
        timeout_s: per-request deadline in seconds.
        retries: further tries of a failed request (and of the first connection) before giving up.
        backoff_ms: delay before the first retry in milliseconds; doubled each further retry.
        jitter_ms: a uniform random delay in [0, jitter_ms) milliseconds added to each backoff.
    """

    _lazy_attributes = ("_client", "_n_classes")

    def __init__(
        self,
        url: str,
        model: str,
        *,
        model_version: str = "",
        max_in_flight: int = 4,
        timeout_s: float = 300.0,
        retries: int = 3,
        backoff_ms: float = 200.0,
        jitter_ms: float = 100.0,
    ):
        self.url = normalise_url(url)
        self.model = model
        self.model_version = model_version
        self.max_in_flight = max(1, int(max_in_flight))
        self.timeout_s = float(timeout_s)
        self.retries = max(0, int(retries))
        self.backoff_ms = float(backoff_ms)
        self.jitter_ms = float(jitter_ms)
        self._client = None
        self._n_classes: int | None = None

    # -- connection -------------------------------------------------------------------------
    def _delay_s(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (1, 2, …), in seconds."""
        delay_ms = self.backoff_ms * 2 ** (attempt - 1) + random.uniform(0.0, self.jitter_ms)
        return delay_ms / 1000.0

    @property
    def client(self):
        """The gRPC client, connected and checked on first use in this process."""
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _connect(self):
        import tritonclient.grpc as grpcclient

        last_error: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self._delay_s(attempt))
            try:
                client = grpcclient.InferenceServerClient(self.url)
                if not client.is_server_ready(client_timeout=self.timeout_s):
                    raise ServerError(f"Triton server at {self.url} is not ready")
                if not client.is_model_ready(self.model, self.model_version, client_timeout=self.timeout_s):
                    raise ModelMismatchError(f"Triton server at {self.url} does not serve a ready model {self.model!r}")
                metadata = client.get_model_metadata(self.model, self.model_version, as_json=True, client_timeout=self.timeout_s)
                self._n_classes = self._check_metadata(metadata)
                return client
            except ModelMismatchError:
                raise
            except Exception as err:  # noqa: BLE001 - gRPC raises several types for an absent server
                last_error = err
        raise ServerError(
            f"cannot reach Triton server at {self.url} for model {self.model!r} after {self.retries + 1} tries: {last_error}"
        )

    def _check_metadata(self, metadata: dict) -> int:
        """Compare the served signature with :data:`EXPECTED_INPUTS`; return n_classes."""
        where = f"model {self.model!r} at {self.url}"
        inputs = {entry["name"]: entry for entry in metadata.get("inputs", [])}
        for name, (datatype, shape) in EXPECTED_INPUTS.items():
            if name not in inputs:
                raise ModelMismatchError(f"{where}: no input {name!r}; it has {sorted(inputs)}")
            got_type = inputs[name]["datatype"]
            got_shape = tuple(int(d) for d in inputs[name]["shape"])
            if got_type != datatype or len(got_shape) != len(shape) or got_shape[-1] != shape[-1]:
                raise ModelMismatchError(
                    f"{where}: input {name!r} is {got_type} {list(got_shape)}, expected {datatype} {list(shape)}"
                )
        outputs = {entry["name"]: entry for entry in metadata.get("outputs", [])}
        if OUTPUT_NAME not in outputs:
            raise ModelMismatchError(f"{where}: no output {OUTPUT_NAME!r}; it has {sorted(outputs)}")
        out = outputs[OUTPUT_NAME]
        shape = [int(d) for d in out["shape"]]
        if out["datatype"] != "FP32" or len(shape) != 2 or shape[-1] < 1:
            raise ModelMismatchError(
                f"{where}: output {OUTPUT_NAME!r} is {out['datatype']} {shape}, expected FP32 [-1, n_classes]"
            )
        return shape[-1]

    # -- requests ---------------------------------------------------------------------------
    def _submit(self, batch: Batch, index: int, on_done) -> None:
        import tritonclient.grpc as grpcclient

        p4 = grpcclient.InferInput("p4", list(batch.p4.shape), "FP32")
        p4.set_data_from_numpy(np.ascontiguousarray(batch.p4, dtype=np.float32))
        mask = grpcclient.InferInput("mask", list(batch.mask.shape), "BOOL")
        mask.set_data_from_numpy(np.ascontiguousarray(batch.mask, dtype=bool))
        self.client.async_infer(
            self.model,
            [p4, mask],
            callback=functools.partial(on_done, index),
            model_version=self.model_version,
            outputs=[grpcclient.InferRequestedOutput(OUTPUT_NAME)],
            client_timeout=self.timeout_s,
        )

    def infer_batches(self, batches: Sequence[Batch]) -> list[np.ndarray]:
        results: list[np.ndarray | None] = [None] * len(batches)
        attempts = [0] * len(batches)
        finished: list[tuple[int, object, Exception | None]] = []
        condition = threading.Condition()

        def on_done(index: int, result=None, error=None) -> None:
            with condition:
                finished.append((index, result, error))
                condition.notify()

        ready = list(range(len(batches)))[::-1]  # a stack: pop() takes batches in order
        retry_heap: list[tuple[float, int]] = []
        in_flight = 0
        remaining = len(batches)
        while remaining:
            now = time.monotonic()
            while retry_heap and retry_heap[0][0] <= now:
                ready.append(heapq.heappop(retry_heap)[1])
            while ready and in_flight < self.max_in_flight:
                index = ready.pop()
                self._submit(batches[index], index, on_done)
                in_flight += 1
            with condition:
                if not finished:
                    wait_s = self.timeout_s + 5.0
                    if retry_heap:
                        wait_s = min(wait_s, max(0.0, retry_heap[0][0] - time.monotonic()))
                    condition.wait(timeout=wait_s)
                done, finished[:] = list(finished), []
            for index, result, error in done:
                in_flight -= 1
                if error is None:
                    results[index] = self._check_output(result.as_numpy(OUTPUT_NAME), batches[index])
                    remaining -= 1
                    continue
                attempts[index] += 1
                if _is_permanent(error) or attempts[index] > self.retries:
                    raise ServerError(
                        f"request {index} ({len(batches[index])} jets, N={batches[index].p4.shape[1]}) to model "
                        f"{self.model!r} at {self.url} failed after {attempts[index]} tries: {error}"
                    )
                heapq.heappush(retry_heap, (time.monotonic() + self._delay_s(attempts[index]), index))
        return results  # type: ignore[return-value]

    def _check_output(self, score: np.ndarray | None, batch: Batch) -> np.ndarray:
        expected = (len(batch), self._n_classes)
        if score is None or score.shape != expected:
            got = None if score is None else score.shape
            raise ModelMismatchError(f"model {self.model!r} at {self.url} returned {OUTPUT_NAME!r} of shape {got}, expected {expected}")
        return score.astype(np.float32, copy=False)
