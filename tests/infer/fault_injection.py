"""Faults struck from inside a call: batches that run a fault when the client takes one of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from coffea_lorentz.batch import Batch


class FaultAt(Sequence):
    """``batches`` that call ``fault()`` once, when the client first takes batch ``at`` to send it:
    the fault then strikes in the middle of ``infer_batches``, with earlier requests in flight."""

    def __init__(self, batches: Sequence[Batch], at: int, fault: Callable[[], None]):
        self.batches, self.at, self.fault = batches, at, fault
        self.struck = False

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> Batch:
        if index == self.at and not self.struck:
            self.struck = True
            self.fault()
        return self.batches[index]
