"""Batching for a model spec: jets → padded named tensors, and the outputs back to the jets.

The counterpart of :mod:`coffea_lorentz.batch` (which builds ``p4`` + ``mask`` for the zoo) for any
model described by a :class:`~coffea_lorentz.modelspec.ModelSpec`:

1. each kind of objects the spec uses (PF candidates, secondary vertices) is read once
   (:func:`coffea_lorentz.features.read_objects`), sorted by pT within each jet;
2. every variable is computed for every object and transformed (``clip((x − median) · norm_factor,
   lower, upper)``, non-finite → ``replace_inf_value``), float32;
3. jets with at least one object of the spec's first input are scored; they are ordered by that
   count and cut into batches of at most ``batch_size`` jets, so a batch of a variable-length input
   (``{"min", "max"}``) is padded only to its own longest jet (clamped), as SONIC does;
4. each batch's tensors are filled by one fancy-indexing assignment per input (no per-jet loop);
   padded places hold each variable's ``pad`` (or repeat the jet's objects with ``"wrap"``).

Jets with no objects of the first input are not sent and get NaN, like the zoo's empty jets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import awkward as ak
import numpy as np

from .features import JetObjects, read_objects
from .modelspec import InputSpec, ModelSpec

__all__ = ["SpecBatch", "SpecInputs", "spec_inputs"]


@dataclass(frozen=True)
class SpecBatch:
    """One request: ``jet_index`` int64 [b] (which jets of the chunk), ``tensors`` name → float32
    array [b, C, P] (channels first) or [b, P, C]."""

    jet_index: np.ndarray
    tensors: Mapping[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.jet_index)

    def rows(self, start: int, stop: int) -> SpecBatch:
        """Jets ``start:stop`` of this batch (one request of a batch cut at a server's limit)."""
        return SpecBatch(jet_index=self.jet_index[start:stop],
                         tensors={name: array[start:stop] for name, array in self.tensors.items()})


def _transform(values: np.ndarray, spec: InputSpec) -> np.ndarray:
    """float64 [n, C] raw → float32 [n, C] transformed (see the module docstring)."""
    median = np.array([v.median for v in spec.variables])
    norm = np.array([v.norm_factor for v in spec.variables])
    lower = np.array([v.lower_bound for v in spec.variables])
    upper = np.array([v.upper_bound for v in spec.variables])
    replace = np.array([v.replace_inf_value for v in spec.variables])
    with np.errstate(invalid="ignore", over="ignore"):
        out = np.clip((values - median) * norm, lower, upper)
        out = np.where(np.isfinite(out), out, replace)
    return out.astype(np.float32)


class SpecInputs:
    """The inputs of one chunk for one spec, planned into batches (padded when a batch is taken).

    Attributes:
        total_jets: jets of the chunk; ``n_jets`` int64 [n_events] per event.
        batches: the planned requests, as a sequence of :class:`SpecBatch` built on access.
    """

    def __init__(self, objects: Mapping[str, JetObjects], spec: ModelSpec, batch_size: int):
        self.spec = spec
        self.objects = objects
        first = objects[spec.inputs[0].objects]
        self.n_jets = first.n_jets
        self.total_jets = int(first.n_per_jet.size)
        self._offsets = {kind: np.concatenate([[0], np.cumsum(o.n_per_jet)]).astype(np.int64)
                         for kind, o in objects.items()}
        self._values = {}
        for input_spec in spec.inputs:
            o = objects[input_spec.objects]
            raw = np.stack([o.variable(name) for name in input_spec.variable_names], axis=1) if o.n_objects else \
                np.zeros((0, input_spec.n_channels))
            self._values[input_spec.name] = _transform(raw, input_spec)
        counts = first.n_per_jet
        scored = np.flatnonzero(counts > 0)
        scored = scored[np.argsort(counts[scored], kind="stable")]
        self._groups = [scored[start:start + batch_size] for start in range(0, len(scored), batch_size)]

    def __len__(self) -> int:
        return len(self._groups)

    def __getitem__(self, index: int) -> SpecBatch:
        jets = self._groups[index]
        tensors = {spec.name: self._tensor(spec, jets) for spec in self.spec.inputs}
        return SpecBatch(jet_index=jets, tensors=tensors)

    def __iter__(self):
        return (self[index] for index in range(len(self)))

    def scatter(self, outputs: Sequence[np.ndarray]) -> np.ndarray:
        """float32 [total_jets, K]: the output of batch i (``outputs[i]``, [b_i, K]) at its jets; NaN
        for jets not sent (K = 1 when there are no batches)."""
        n_classes = int(np.asarray(outputs[0]).shape[-1]) if len(outputs) else 1
        result = np.full((self.total_jets, n_classes), np.nan, dtype=np.float32)
        for jets, output in zip(self._groups, outputs):
            result[jets] = np.asarray(output, dtype=np.float32).reshape(len(jets), n_classes)
        return result

    def _tensor(self, spec: InputSpec, jets: np.ndarray) -> np.ndarray:
        objects = self.objects[spec.objects]
        n = objects.n_per_jet[jets]
        length = spec.length if spec.length is not None else int(np.clip(n.max(initial=0), spec.min_length,
                                                                          spec.max_length))
        kept = np.minimum(n, length)
        position = np.arange(length)[None, :]
        if spec.pad_mode == "wrap":
            valid = (kept > 0)[:, None] & np.ones((1, length), dtype=bool)
            source = position % np.maximum(kept, 1)[:, None]
        else:
            valid = position < kept[:, None]
            source = position
        pad = np.array([v.pad for v in spec.variables], dtype=np.float32)
        out = np.broadcast_to(pad, (len(jets), length, spec.n_channels)).copy()
        flat = (self._offsets[spec.objects][jets][:, None] + source)[valid]
        out[valid] = self._values[spec.name][flat]
        return np.ascontiguousarray(out.transpose(0, 2, 1)) if spec.layout == "channels_first" else out


def spec_inputs(events: ak.Array, spec: ModelSpec, *, collection: str = "FatJet", batch_size: int = 256,
                source: str = "<events>") -> SpecInputs:
    """Read what ``spec`` needs from ``events`` (eager or virtual NanoEvents) for every jet of
    ``collection`` and plan its batches."""
    kinds = list(dict.fromkeys(spec_input.objects for spec_input in spec.inputs))
    objects = {kind: read_objects(events, collection, kind, spec.variables(kind), source=source) for kind in kinds}
    return SpecInputs(objects, spec, batch_size)
