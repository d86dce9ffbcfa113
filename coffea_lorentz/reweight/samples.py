"""Jet samples for reweighting: padded constituents plus jet observables, read, split and pooled.

numpy only (torch tensors are accepted as inputs, never imported); the generator's HDF5 reader
is imported when a dataset is read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputFileError, InvalidInputError

__all__ = ["JetSample", "concatenate_samples", "split_sample"]

#: Alternative spellings of observables in datasets → the names used here.
_ALIASES: dict[str, str] = {
    "nConstituents": "n_constituents",
    "n_constituent": "n_constituents",
    "sdmass": "msoftdrop",
    "softdrop_mass": "msoftdrop",
    "msd": "msoftdrop",
}


@dataclass(frozen=True)
class JetSample:
    """Jets of one sample: padded constituents plus jet observables.

    An event-level sample (:func:`~coffea_lorentz.reweight.events.read_event_sample`) holds one
    entry per event instead: the event's objects as "constituents" and event observables.

    Attributes:
        p4: float32 [n_jets, N, 4] constituent four-vectors (E, px, py, pz) in GeV, pT-descending
            within each jet, padded with zeros.
        mask: bool [n_jets, N], True = real constituent (real entries first).
        observables: name → [n_jets] jet observables (``mass``, ``msoftdrop``, ``pt`` in GeV,
            ``n_constituents``, ``tau32`` …), computed from all constituents (not truncated).
    """

    p4: np.ndarray
    mask: np.ndarray
    observables: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.p4.ndim != 3 or self.p4.shape[-1] != 4:
            raise InvalidInputError(f"JetSample.p4: expected [n_jets, N, 4], got shape {self.p4.shape}")
        if self.mask.shape != self.p4.shape[:2]:
            raise InvalidInputError(
                f"JetSample.mask: expected shape {self.p4.shape[:2]} (p4 without the last axis), got {self.mask.shape}"
            )
        for name, values in self.observables.items():
            if len(values) != len(self.p4):
                raise InvalidInputError(
                    f"JetSample.observables[{name!r}]: expected {len(self.p4)} values (one per jet), got {len(values)}"
                )

    def __len__(self) -> int:
        return len(self.p4)

    @property
    def n_constituents(self) -> np.ndarray:
        """int64 [n_jets] real constituents kept per jet."""
        return self.mask.sum(axis=1).astype(np.int64)

    def subset(self, index: np.ndarray) -> JetSample:
        """The jets at ``index`` (integer indices or a boolean mask), padding trimmed to the longest kept jet."""
        mask = self.mask[index]
        width = max(int(mask.sum(axis=1).max(initial=0)), 1)
        return JetSample(
            p4=self.p4[index][:, :width],
            mask=mask[:, :width],
            observables={name: np.asarray(values)[index] for name, values in self.observables.items()},
        )

    @classmethod
    def from_arrays(cls, p4, mask, observables: Mapping[str, np.ndarray] | None = None, *,
                    max_constituents: int | None = None) -> JetSample:
        """A sample from array-likes (torch tensors or numpy); observable names are normalised
        (``nConstituents`` → ``n_constituents``, ...) and the padding cut to ``max_constituents``."""
        p4 = np.asarray(_numpy(p4), dtype=np.float32)
        mask = np.asarray(_numpy(mask), dtype=bool)
        if max_constituents is not None:
            p4, mask = p4[:, :max_constituents], mask[:, :max_constituents]
        named = {}
        for name, values in (observables or {}).items():
            named[_ALIASES.get(name, name)] = np.asarray(_numpy(values))
        if "n_constituents" not in named:
            named["n_constituents"] = mask.sum(axis=1).astype(np.int32)
        return cls(p4=p4, mask=mask, observables=named)

    @classmethod
    def from_dataset(cls, path: str | Path, split: str | None = None, *, max_constituents: int | None = None,
                     label: int | None = None) -> JetSample:
        """Jets of the generator's HDF5 dataset ``path`` (:func:`coffea_lorentz.generate.dataset.load_dataset`).

        ``split`` selects one split (``"train"``, ``"val"``, ``"test"``); None concatenates all
        splits present. ``label`` keeps only jets with that truth label (e.g. 0 = QCD).
        """
        from ..generate.dataset import load_dataset  # optional generator dependencies load only here

        splits = [split] if split is not None else _dataset_splits(path)
        parts = []
        for name in splits:
            p4, mask, labels, observables = load_dataset(path, name)
            sample = cls.from_arrays(p4, mask, observables, max_constituents=max_constituents)
            if label is not None:
                sample = sample.subset(np.flatnonzero(np.asarray(labels) == label))
            parts.append(sample)
        return concatenate_samples(parts)


def _numpy(values):
    """``values.numpy()`` for a torch tensor (or anything else offering it), else ``values`` itself."""
    return values.numpy() if hasattr(values, "numpy") and not isinstance(values, np.ndarray) else values


def _dataset_splits(path: str | Path) -> list[str]:
    import h5py

    try:
        with h5py.File(path, "r") as file:
            names = [name for name in ("train", "val", "test") if name in file]
    except OSError as err:
        raise InputFileError(str(path), f"cannot open as HDF5 ({err})") from err
    if not names:
        raise InvalidInputError(f"{path}: no 'train', 'val' or 'test' group in the dataset")
    return names


def concatenate_samples(samples: Sequence[JetSample]) -> JetSample:
    """One sample with the jets of ``samples`` in order; padding widened to the longest; common observables only."""
    if not samples:
        raise InvalidInputError("concatenate_samples: expected at least one sample, got none")
    width = max(s.p4.shape[1] for s in samples)
    p4 = np.concatenate([np.pad(s.p4, ((0, 0), (0, width - s.p4.shape[1]), (0, 0))) for s in samples])
    mask = np.concatenate([np.pad(s.mask, ((0, 0), (0, width - s.mask.shape[1]))) for s in samples])
    names = set.intersection(*(set(s.observables) for s in samples))
    observables = {name: np.concatenate([s.observables[name] for s in samples]) for name in sorted(names)}
    return JetSample(p4=p4, mask=mask, observables=observables)


def split_sample(sample: JetSample, fractions: Sequence[float], *, seed: int) -> list[JetSample]:
    """Random disjoint parts of ``sample`` with the given fractions (summing to ≤ 1), reproducible with ``seed``."""
    if any(f <= 0 for f in fractions) or sum(fractions) > 1 + 1e-9:
        raise InvalidInputError(f"split_sample: fractions must be > 0 and sum to <= 1, got {list(fractions)}")
    order = np.random.default_rng(seed).permutation(len(sample))
    bounds = np.round(np.cumsum([0.0, *fractions]) * len(sample)).astype(int)
    return [sample.subset(np.sort(order[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
