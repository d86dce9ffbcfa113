"""Batch: flat jet constituents → padded, length-bucketed float32 batches + mask, and back.

Jets are truncated to their ``max_constituents`` leading-pT constituents, then put in the
smallest bucket length ``N`` that holds them (``BatchConfig.buckets``), so a batch of short jets
is not padded to the longest jet of the chunk. Each bucket is cut into batches of at most
``max_batch_size`` jets. After inference, :func:`scatter` puts each jet's value back at its
place and :func:`unflatten` restores the jagged ``[events][jets]`` structure.

A jet with zero constituents is sent nowhere: its score is NaN.

>>> import numpy as np
>>> from coffea_lorentz.read import JetConstituents
>>> jets = JetConstituents(p4=np.ones((5, 4), np.float32), pt=np.ones(5, np.float32),
...                        n_constituents=np.array([3, 0, 2]), n_jets=np.array([2, 0, 1]))
>>> batches = make_batches(jets, BatchConfig(buckets=(2, 4), max_constituents=4))
>>> [(b.p4.shape, b.jet_index.tolist()) for b in batches]
[((1, 2, 4), [2]), ((1, 4, 4), [0])]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .errors import InvalidInputError
from .read import JetConstituents

__all__ = ["BatchConfig", "Batch", "make_batches", "scatter", "unflatten"]


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """How jets are cut and padded.

    Attributes:
        max_constituents: keep at most this many leading-pT constituents per jet.
        buckets: padded lengths N a batch may have; lengths above ``max_constituents`` are ignored
            and ``max_constituents`` itself is always a bucket.
        max_batch_size: most jets in one batch (one request to the server).
    """

    max_constituents: int = 128
    buckets: tuple[int, ...] = (16, 32, 64, 96, 128)
    max_batch_size: int = 256

    def __post_init__(self) -> None:
        if self.max_constituents < 1:
            raise InvalidInputError(f"max_constituents must be ≥ 1, got {self.max_constituents}")
        if self.max_batch_size < 1:
            raise InvalidInputError(f"max_batch_size must be ≥ 1, got {self.max_batch_size}")
        if any(b < 1 for b in self.buckets):
            raise InvalidInputError(f"bucket lengths must be ≥ 1, got {self.buckets}")

    @property
    def lengths(self) -> np.ndarray:
        """The bucket lengths in use, ascending, ending at ``max_constituents``."""
        kept = {b for b in self.buckets if b < self.max_constituents}
        return np.array(sorted(kept | {self.max_constituents}), dtype=np.int64)


@dataclass(frozen=True)
class Batch:
    """One padded batch of jets.

    Attributes:
        p4: float32 [B, N, 4] as (E, px, py, pz) in GeV; padded entries are 0.
        mask: bool [B, N], True = real constituent; real entries come first in each row.
        jet_index: int64 [B], each row's jet in the flat jet order of :class:`JetConstituents`.
    """

    p4: np.ndarray
    mask: np.ndarray
    jet_index: np.ndarray

    def __len__(self) -> int:
        return len(self.jet_index)


def make_batches(jets: JetConstituents, config: BatchConfig = BatchConfig()) -> list[Batch]:
    """Cut ``jets`` into padded batches, shortest bucket first; jets with no constituents are left out."""
    lengths = config.lengths
    kept = np.minimum(jets.n_constituents, config.max_constituents)
    bucket_of_jet = np.searchsorted(lengths, kept)  # first bucket length ≥ kept
    starts = jets.offsets[:-1]
    batches: list[Batch] = []
    for bucket, length in enumerate(lengths):
        members = np.flatnonzero((bucket_of_jet == bucket) & (kept > 0))
        for first in range(0, len(members), config.max_batch_size):
            jet_index = members[first : first + config.max_batch_size]
            position = np.arange(length)
            mask = position[None, :] < kept[jet_index, None]
            gather = np.where(mask, starts[jet_index, None] + position[None, :], 0)
            p4 = jets.p4[gather]
            p4[~mask] = 0.0
            batches.append(Batch(p4=p4, mask=mask, jet_index=jet_index))
    return batches


def scatter(batches: Sequence[Batch], outputs: Sequence[np.ndarray], total_jets: int) -> np.ndarray:
    """Put each batch's per-jet ``outputs`` ([B] or [B, k]) back in flat jet order.

    Returns float32 [total_jets] or [total_jets, k]; jets that were in no batch hold NaN.
    """
    if len(batches) != len(outputs):
        raise InvalidInputError(f"{len(batches)} batches but {len(outputs)} outputs")
    trailing = outputs[0].shape[1:] if outputs else ()
    result = np.full((total_jets, *trailing), np.nan, dtype=np.float32)
    for batch, output in zip(batches, outputs):
        if output.shape[:1] != (len(batch),) or output.shape[1:] != trailing:
            raise InvalidInputError(
                f"output of shape {output.shape} for a batch of {len(batch)} jets; expected {(len(batch), *trailing)}"
            )
        result[batch.jet_index] = output
    return result


def unflatten(values: np.ndarray, n_jets: np.ndarray) -> ak.Array:
    """Flat per-jet ``values`` [total_jets, ...] → jagged [events][jets, ...] with ``n_jets`` per event."""
    if len(values) != int(np.sum(n_jets)):
        raise InvalidInputError(f"{len(values)} jet values for {int(np.sum(n_jets))} jets")
    return ak.unflatten(values, n_jets)
