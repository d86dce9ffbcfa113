"""The requests of one call: each batch cut at the served ``max_batch_size``, planned lazily."""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np

from ..batch import Batch

__all__: list[str] = []


class _Requests:
    """The requests of one call, planned lazily: a batch of more than the served ``max_batch_size``
    jets goes as several requests (pieces), found when the batch is first taken to be sent; the
    caller's sequence is read only to send a request and to check its answer.

    A request is named by its key ``(batch index, piece)``; ``pending`` is a heap of keys, piece -1
    meaning "not planned yet".
    """

    def __init__(self, batches: Sequence[Batch], limit):
        self.batches = batches
        self.limit = limit  # () -> most jets per request (None: no limit known)
        self.pending: list[tuple[int, int]] = [(index, -1) for index in range(len(batches))]
        self.pieces: list[list[np.ndarray | None] | None] = [None] * len(batches)
        self.sizes: list[int] = [0] * len(batches)  # jets per piece of each planned batch
        self.remaining = len(batches)  # requests not answered yet
        self.n_requests = len(batches)

    def take(self) -> tuple[tuple[int, int], Batch]:
        """The next request to send: its key and its batch (or piece)."""
        index, piece = heapq.heappop(self.pending)
        if piece < 0:
            batch = self.batches[index]
            limit = self.limit()
            size = len(batch) if limit is None or len(batch) <= limit else limit
            n_pieces = max(1, -(-len(batch) // max(size, 1)))
            self.pieces[index], self.sizes[index] = [None] * n_pieces, size
            self.remaining += n_pieces - 1
            self.n_requests += n_pieces - 1
            for later in range(1, n_pieces):
                heapq.heappush(self.pending, (index, later))
            return (index, 0), self._piece(batch, index, 0)
        return (index, piece), self.batch((index, piece))

    def batch(self, key: tuple[int, int]) -> Batch:
        """The batch (or piece) of request ``key``."""
        return self._piece(self.batches[key[0]], *key)

    def _piece(self, batch: Batch, index: int, piece: int) -> Batch:
        if len(self.pieces[index]) == 1:
            return batch
        first, stop = piece * self.sizes[index], (piece + 1) * self.sizes[index]
        return batch.rows(first, stop)

    def retry(self, key: tuple[int, int]) -> None:
        heapq.heappush(self.pending, key)

    def answered(self, key: tuple[int, int], output: np.ndarray) -> None:
        self.pieces[key[0]][key[1]] = output
        self.remaining -= 1

    def results(self) -> list[np.ndarray]:
        return [pieces[0] if len(pieces) == 1 else np.concatenate(pieces) for pieces in self.pieces]

    def describe_done(self) -> str:
        return f"{self.n_requests - self.remaining} of {self.n_requests} requests done"
