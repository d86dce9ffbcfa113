"""Jets for training: a split of a dataset file as :class:`JetSet`, truncation, and the batches.

Jets are cut to their ``max_constituents`` leading-pT constituents. Batches hold jets of similar
length and are padded to their own longest jet only: the training set is shuffled each epoch, cut
into pools of ``POOL_BATCHES`` batches, each pool sorted by length and cut into batches, and the
batch order shuffled again. Scoring batches are cut from the length order, fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InvalidInputError

__all__ = ["JetSet", "truncate", "load_split", "SPLITS", "POOL_BATCHES"]

#: Training batches whose jets are sorted by length together (larger: less padding, less mixing).
POOL_BATCHES = 16

#: The splits of a dataset file, in the order they are read.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Independent random streams drawn from one seed (SeedSequence spawn keys).
_STREAM_N_TRAIN, _STREAM_N_VAL, _STREAM_BATCHES, _STREAM_TORCH = 1, 2, 3, 4


@dataclass(frozen=True)
class JetSet:
    """Jets of one split, truncated.

    Attributes:
        p4: float32 [n_jets, n_max, 4] as (E, px, py, pz) in GeV, leading-pT first, zero-padded.
        mask: bool [n_jets, n_max], True = real constituent.
        label: int64 [n_jets], 1 = top, 0 = QCD.
        observables: name → [n_jets] per-jet observables (mass etc., GeV for masses).
    """

    p4: np.ndarray
    mask: np.ndarray
    label: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.label)

    def take(self, index: np.ndarray) -> JetSet:
        """The jets at ``index`` (int array), in that order."""
        return JetSet(
            p4=self.p4[index],
            mask=self.mask[index],
            label=self.label[index],
            observables={k: v[index] for k, v in self.observables.items()},
        )

    @property
    def lengths(self) -> np.ndarray:
        """int64 [n_jets] real constituents per jet."""
        return self.mask.sum(axis=1).astype(np.int64)


def truncate(p4: np.ndarray, mask: np.ndarray, max_constituents: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep the ``max_constituents`` leading-pT real constituents of each jet.

    ``p4`` float [n_jets, N, 4] (E, px, py, pz) GeV and ``mask`` bool [n_jets, N] →
    p4 float32 [n_jets, min(N, max_constituents), 4] pT-descending with zeros after the real ones, and its mask.
    """
    if p4.ndim != 3 or p4.shape[-1] != 4 or mask.shape != p4.shape[:2]:
        raise InvalidInputError(f"truncate: expected p4 [n, N, 4] and mask [n, N], got {p4.shape} and {mask.shape}")
    pt = np.hypot(p4[..., 1], p4[..., 2])
    order = np.argsort(-np.where(mask, pt, -1.0), axis=1, kind="stable")[:, :max_constituents]
    p4_out = np.take_along_axis(p4, order[..., np.newaxis], axis=1).astype(np.float32)
    mask_out = np.take_along_axis(mask, order, axis=1)
    p4_out[~mask_out] = 0.0
    return p4_out, mask_out


def load_split(path: str | Path, split: str, *, max_constituents: int) -> JetSet:
    """One split of a dataset file, truncated to ``max_constituents`` (see :func:`truncate`)."""
    from ..generate.dataset import load_dataset

    p4, mask, label, observables = load_dataset(path, split)
    if len(label) == 0:
        raise InvalidInputError(f"{path}: split {split!r} holds no jets")
    p4, mask = truncate(p4, mask, max_constituents)
    return JetSet(p4=p4, mask=mask, label=np.asarray(label, dtype=np.int64), observables=observables)


def _length_sorted_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Indices [n] cut into batches of similar length, in a fixed order (shortest first)."""
    order = np.argsort(lengths, kind="stable")
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _training_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch of shuffled, length-pooled batches (see the module docstring)."""
    permutation = rng.permutation(len(lengths))
    pool_size = batch_size * POOL_BATCHES
    batches = []
    for start in range(0, len(permutation), pool_size):
        pool = permutation[start : start + pool_size]
        pool = pool[np.argsort(lengths[pool], kind="stable")]
        batches.extend(pool[k : k + batch_size] for k in range(0, len(pool), batch_size))
    return [batches[k] for k in rng.permutation(len(batches))]


def _to_tensors(jets: JetSet, index: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """p4 [b, n, 4] and mask [b, n] of the jets at ``index``, padded to their longest jet (n ≥ 1)."""
    n_max = max(int(jets.mask[index].sum(axis=1).max()), 1)
    p4 = torch.from_numpy(np.ascontiguousarray(jets.p4[index, :n_max])).to(device)
    mask = torch.from_numpy(np.ascontiguousarray(jets.mask[index, :n_max])).to(device)
    return p4, mask


def _subsample(jets: JetSet, n: int | None, seed: int, stream: int, what: str) -> JetSet:
    """``n`` jets drawn without replacement (kept in file order), or all of them when ``n`` is None."""
    if n is None or n == len(jets):
        return jets
    if n > len(jets):
        raise InvalidInputError(f"{what}: asked for {n} jets but the split holds {len(jets)}")
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream,)))
    return jets.take(np.sort(rng.permutation(len(jets))[:n]))
