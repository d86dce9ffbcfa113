"""Batch: flat jet constituents → padded, length-bucketed float32 batches + mask, and back.

Jets are truncated to their ``max_constituents`` leading-pT constituents, then put in the
smallest bucket length ``N`` that holds them (``BatchConfig.buckets``), so a batch of short jets
is not padded to the longest jet of the chunk. Each bucket is cut into batches of at most
``max_batch_size`` jets. After inference, :func:`scatter` puts each jet's value back at its
place and :func:`unflatten` restores the jagged ``[events][jets]`` structure.

Tail merging
------------
A bucket whose jets do not fill its last batch ends in a small *tail* batch, which would pay a
whole request's fixed cost for a few jets. :func:`plan_batches` moves such a tail up into the next
longer bucket that has jets when all of these hold:

- the tail fits in the free places of that bucket's last batch, so one request fewer is sent;
- the padded constituent slots it adds, ``tail jets × (N_next − N)``, are at most
  ``BatchConfig.request_cost_slots`` (a request's fixed cost expressed in padded slots);
- the chunk as a whole stays within ``BatchConfig.max_padding_ratio``: padded constituent slots of
  all batches ≤ ratio × the real (kept) constituents. The bound is global, not per bucket, so the
  slack left by well-filled buckets pays for merging sparse ones; a chunk already above the bound
  gets no merge.

Buckets are visited from the shortest up, so a tail moved into a bucket may move on with that
bucket's own tail. Merged jets are padded to the longer length and masked as usual; taggers ignore
masked entries (``symmetry.TOLERANCE[...].padding``), so scores do not depend on the merging.

A jet with zero constituents is sent nowhere: its score is NaN.

>>> import numpy as np
>>> from coffea_lorentz.read import JetConstituents
>>> jets = JetConstituents(p4=np.ones((5, 4), np.float32), pt=np.ones(5, np.float32),
...                        n_constituents=np.array([3, 0, 2]), n_jets=np.array([2, 0, 1]))
>>> batches = make_batches(jets, BatchConfig(buckets=(2, 4), max_constituents=4, request_cost_slots=0))
>>> [(b.p4.shape, b.jet_index.tolist()) for b in batches]
[((1, 2, 4), [2]), ((1, 4, 4), [0])]
>>> merged = make_batches(jets, BatchConfig(buckets=(2, 4), max_constituents=4, max_padding_ratio=2.0))
>>> [(b.p4.shape, b.jet_index.tolist()) for b in merged]  # the 2-jet bucket's tail joins the 4-jet bucket
[((2, 4, 4), [0, 2])]
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .errors import InvalidInputError
from .read import JetConstituents

__all__ = ["IN_PROCESS_BATCH_SIZE", "BatchConfig", "Batch", "BatchPlan", "LazyBatches", "plan_batches", "make_batches", "scatter", "unflatten",
           "default_max_constituents"]


#: Jets per batch when none is chosen and no server says how many it takes (in-process torch).
IN_PROCESS_BATCH_SIZE = 256


@dataclass(frozen=True, kw_only=True)
class BatchConfig:
    """How jets are cut and padded.

    Attributes:
        max_constituents: keep at most this many leading-pT constituents per jet.
        buckets: padded lengths N a batch may have; lengths above ``max_constituents`` are ignored
            and ``max_constituents`` itself is always a bucket.
        max_batch_size: most jets in one batch (one request to the server); None: the backend's own
            size (:meth:`~coffea_lorentz.infer.base.Backend.request_size`): a Triton-served tagger's
            ``max_batch_size`` as the server reports it, :data:`IN_PROCESS_BATCH_SIZE` in-process.
            :func:`plan_batches` alone, with no backend, reads None as :data:`IN_PROCESS_BATCH_SIZE`.
        request_cost_slots: the fixed cost of one request expressed in padded constituent slots; a
            bucket's tail is merged upward only when the slots it adds are at most this many (see
            the module docstring). 0 turns merging off. What a request is worth depends on the model
            and the server: on the reference machine (2 CPU cores) tens of thousands of slots with the
            identity model, a few hundred with LorentzNet served on CPU (``bench/bench_pipeline.py``
            prints both); a GPU server lies between. The default merges the small tails (a 1–2 jet
            tail adds at most 64 slots) while a merge costs a CPU-served tagger a few requests' time
            at most.
        max_padding_ratio: merges stop where the chunk's padded constituent slots would exceed this
            many times its real (kept) constituents.
    """

    max_constituents: int = 128
    buckets: tuple[int, ...] = (16, 32, 64, 96, 128)
    max_batch_size: int | None = None
    request_cost_slots: int = 512
    max_padding_ratio: float = 1.3

    def __post_init__(self) -> None:
        if self.max_constituents < 1:
            raise InvalidInputError(f"max_constituents must be ≥ 1, got {self.max_constituents}")
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise InvalidInputError(f"max_batch_size must be ≥ 1, got {self.max_batch_size}")
        if any(b < 1 for b in self.buckets):
            raise InvalidInputError(f"bucket lengths must be ≥ 1, got {self.buckets}")
        if self.request_cost_slots < 0:
            raise InvalidInputError(f"request_cost_slots must be ≥ 0, got {self.request_cost_slots}")
        if not self.max_padding_ratio >= 1.0:
            raise InvalidInputError(f"max_padding_ratio must be ≥ 1, got {self.max_padding_ratio}")

    @property
    def batch_size(self) -> int:
        """Most jets per batch when no backend resolves a None ``max_batch_size``:
        ``max_batch_size``, else :data:`IN_PROCESS_BATCH_SIZE`."""
        return self.max_batch_size or IN_PROCESS_BATCH_SIZE

    @property
    def lengths(self) -> np.ndarray:
        """The bucket lengths in use, ascending, ending at ``max_constituents``."""
        kept = {b for b in self.buckets if b < self.max_constituents}
        return np.array(sorted(kept | {self.max_constituents}), dtype=np.int64)



def default_max_constituents(taggers: Sequence[str], fallback: int = 128) -> int:
    """Constituents to keep per jet: the fewest any tagger's shipped weights were trained on, else ``fallback``.

    A tagger is evaluated on what it was trained on; sum-aggregating taggers change their output
    when given soft constituents they never saw. ``coffea-lorentz run`` and
    :class:`~coffea_lorentz.Tagger` both take it from here, so they keep the same constituents.
    """
    from .models import trained_max_constituents

    trained = [n for n in (trained_max_constituents(name) for name in taggers) if n is not None]
    return min(trained) if trained else fallback

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

    def rows(self, start: int, stop: int) -> Batch:
        """Jets ``start:stop`` of this batch (one request of a batch cut at a server's limit)."""
        return Batch(p4=self.p4[start:stop], mask=self.mask[start:stop], jet_index=self.jet_index[start:stop])


@dataclass(frozen=True)
class BatchPlan:
    """Which jets go in which batch, before any padding is done.

    Attributes:
        jet_index: one int64 [B_i] array per batch: its jets, in flat jet order of
            :class:`JetConstituents`; every jet with constituents is in exactly one batch.
        lengths: int64 [n_batches] padded length N of each batch, ascending.
        kept: int64 [n_jets] constituents kept per jet (after truncation).
    """

    jet_index: tuple[np.ndarray, ...]
    lengths: np.ndarray
    kept: np.ndarray

    def __len__(self) -> int:
        return len(self.jet_index)

    @property
    def padded_slots(self) -> int:
        """Constituent slots of all batches, padding included: Σ B_i × N_i."""
        return int(sum(len(index) * int(length) for index, length in zip(self.jet_index, self.lengths)))

    @property
    def real_constituents(self) -> int:
        """Constituents actually sent (the kept ones of every planned jet)."""
        return int(self.kept.sum())

    @property
    def padding_ratio(self) -> float:
        """``padded_slots / real_constituents`` (1.0 for an empty plan)."""
        real = self.real_constituents
        return self.padded_slots / real if real else 1.0


def plan_batches(jets: JetConstituents, config: BatchConfig = BatchConfig()) -> BatchPlan:
    """Assign every jet with constituents to a batch: length buckets, batches of at most
    ``max_batch_size`` jets, bucket tails merged upward as the module docstring says.

    Costs O(n_jets) vectorised work plus a loop over the (few) buckets; nothing is padded here.
    """
    lengths = config.lengths
    size = config.batch_size
    kept = np.minimum(jets.n_constituents, config.max_constituents).astype(np.int64)
    real = np.flatnonzero(kept > 0)
    bucket_of_jet = np.searchsorted(lengths, kept[real])  # first bucket length ≥ kept
    order = np.argsort(bucket_of_jet, kind="stable")  # jets of a bucket stay in jet order
    bounds = np.searchsorted(bucket_of_jet[order], np.arange(len(lengths) + 1))
    own = [real[order[bounds[b] : bounds[b + 1]]] for b in range(len(lengths))]

    padded = int(sum(len(members) * int(length) for members, length in zip(own, lengths)))
    allowed = config.max_padding_ratio * int(kept.sum())
    nonempty = [b for b in range(len(lengths)) if len(own[b])]
    carried: dict[int, np.ndarray] = {}  # bucket → tail jets moved into it from a shorter bucket
    batches: list[np.ndarray] = []
    batch_lengths: list[int] = []
    for bucket, length in enumerate(lengths):
        members = own[bucket]
        if bucket in carried:
            members = np.concatenate([members, carried.pop(bucket)])  # the moved jets join the last batch
        n_tail = len(members) % size
        later = [b for b in nonempty if b > bucket]
        if n_tail and later and config.request_cost_slots:
            target = later[0]
            room = -len(own[target]) % size  # free places in the target's last batch
            extra = n_tail * int(lengths[target] - length)
            if n_tail <= room and extra <= config.request_cost_slots and padded + extra <= allowed:
                padded += extra
                carried[target] = members[len(members) - n_tail :]
                members = members[: len(members) - n_tail]
        for first in range(0, len(members), size):
            batches.append(members[first : first + size])
            batch_lengths.append(int(length))
    return BatchPlan(jet_index=tuple(batches), lengths=np.array(batch_lengths, dtype=np.int64), kept=kept)


def _pad(p4: np.ndarray, offsets: np.ndarray, kept: np.ndarray, jet_index: np.ndarray, length: int) -> Batch:
    """The jets ``jet_index`` (int64 [B]) padded to ``length``: ``p4`` float32 [n_constituents_total, 4]
    GeV grouped jet after jet, ``offsets`` int64 [n_jets + 1] where each jet starts, ``kept`` int64
    [n_jets] the constituents to keep per jet (≤ ``length``)."""
    counts = kept[jet_index]  # [B] real constituents of each jet of the batch
    mask = np.arange(length)[None, :] < counts[:, None]
    # Work in proportion to the real constituents, not to the padded slots: each kept constituent
    # is copied once to its row and place; the zeros of the padding come from np.zeros. A
    # four-vector (4 float32, 16 bytes) moves as one 16-byte item (a complex128 view of the same
    # bytes, never computed with): numpy's 1-d gather and scatter are ~3x faster than on [n, 4] rows.
    within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    source = np.repeat(offsets[jet_index], counts) + within
    destination = np.repeat(np.arange(len(jet_index)) * length, counts) + within
    padded = np.zeros((len(jet_index), length, 4), dtype=np.float32)
    four_vectors = np.ascontiguousarray(p4, dtype=np.float32).view(np.complex128).reshape(-1)
    padded.view(np.complex128).reshape(-1)[destination] = four_vectors[source]
    return Batch(p4=padded, mask=mask, jet_index=jet_index)


class LazyBatches(Sequence[Batch]):
    """The batches of a :class:`BatchPlan`, each padded on first access and kept.

    A backend that sends batch ``i`` as soon as it has it (the Triton client reads a batch only when
    it sends it) thus pads later batches while earlier requests are in flight. Safe to share
    between threads: several backends reading the same batch pad it once.
    """

    def __init__(self, jets: JetConstituents, plan: BatchPlan):
        self.jets = jets
        self.plan = plan
        self._built: list[Batch | None] = [None] * len(plan)
        self._lock = threading.Lock()
        self._offsets = jets.offsets  # int64 [n_jets + 1]

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index):  # type: ignore[override] - an int gives a Batch, a slice a list
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        batch = self._built[index]
        if batch is None:
            with self._lock:
                batch = self._built[index]
                if batch is None:
                    batch = _pad(self.jets.p4, self._offsets, self.plan.kept, self.plan.jet_index[index],
                                 int(self.plan.lengths[index]))
                    self._built[index] = batch
        return batch

    def __iter__(self) -> Iterator[Batch]:
        return (self[i] for i in range(len(self)))


def make_batches(jets: JetConstituents, config: BatchConfig = BatchConfig()) -> list[Batch]:
    """Cut ``jets`` into padded batches, shortest length first; jets with no constituents are left out
    (see :func:`plan_batches` for the plan, :class:`LazyBatches` to pad batch after batch)."""
    return list(LazyBatches(jets, plan_batches(jets, config)))


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
