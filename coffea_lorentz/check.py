"""What a model is invariant under, measured: ``coffea-lorentz check MODEL``.

For any model — a tagger of the zoo, or a model you bring (:mod:`coffea_lorentz.user_model`) —
:func:`check_model` measures on realistic jets (:func:`coffea_lorentz.symmetry.random_jets`) the
relative change of its outputs, ``max |f(p') − f(p)| / max |f(p)|``, under

- Lorentz transformations (random rotations and boosts up to rapidity 1),
- boosts along and rotations about the beam axis (what a beam-referenced tagger keeps),
- permutations of the constituents,
- extra padded slots,
- batch composition (each jet alone against in a batch),

and compares each with :data:`coffea_lorentz.symmetry.TOLERANCE` of the dtype it ran in: float64
for the zoo (the model is cast), float32 for a model file. Nothing is refused: a model that is not
invariant (a weaver ParT, which sees η and φ) is reported "not invariant" with its figure.

A model you bring sees its inputs through its spec: the four-vectors become the constituents'
pT, η, φ and mass, the jet's four-vector is the sum of its constituents', and the variables that
do not come from four-vectors hold neutral values (charge 0, photon, impact parameters 0). Its
padded slots are the spec's, not the jets': for the padding check each input of variable length
({min, max}) and constant padding gets 7 more padded slots than the batch's longest jet, the same
objects kept (an input of fixed length always sees the same padding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .errors import ConfigurationError
from .symmetry import (
    apply_transform,
    random_jets,
    random_lorentz,
    random_z_transform,
    relative_change,
    tolerance,
)

__all__ = ["CheckRow", "check_model", "SpecModelFunction"]


@dataclass(frozen=True)
class CheckRow:
    """One measured symmetry: the check, the residual, the tolerance it is held to, the dtype."""

    check: str
    residual: float
    tolerance: float
    dtype: str

    @property
    def invariant(self) -> bool:
        return self.residual <= self.tolerance

    def line(self) -> str:
        verdict = "invariant" if self.invariant else "not invariant"
        return f"{self.check:<44} {self.residual:>10.2e}  (tolerance {self.tolerance:.0e}, {self.dtype})  {verdict}"


class SpecModelFunction:
    """A model you bring as ``f(p4 [B, N, 4] (E, px, py, pz) GeV, mask [B, N]) → outputs [B, K]``,
    through its own spec and feature library (see the module docstring)."""

    def __init__(self, model, backend, *, extra_padding: int = 0):
        self.model = model
        self.backend = backend
        self.extra_padding = int(extra_padding)

    def padded(self, extra: int) -> SpecModelFunction:
        """The same model with ``extra`` more padded slots in each variable-length input of constant
        padding (the same objects kept: the truncation stays the spec's)."""
        return SpecModelFunction(self.model, self.backend, extra_padding=extra)

    def _pad(self, batch):
        """``batch`` with :attr:`extra_padding` more slots of each input's ``pad`` values."""
        from .spec_batch import SpecBatch

        tensors = dict(batch.tensors)
        for spec_input in self.model.spec.inputs:
            if spec_input.length is not None or spec_input.pad_mode != "constant":
                continue
            array = tensors[spec_input.name]
            pad = np.array([variable.pad for variable in spec_input.variables], dtype=np.float32)
            if spec_input.layout == "channels_first":
                block, axis = np.broadcast_to(pad[None, :, None], (len(array), len(pad), self.extra_padding)), 2
            else:
                block, axis = np.broadcast_to(pad[None, None, :], (len(array), self.extra_padding, len(pad))), 1
            tensors[spec_input.name] = np.ascontiguousarray(np.concatenate([array, block], axis=axis))
        return SpecBatch(jet_index=batch.jet_index, tensors=tensors)

    def __call__(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        import awkward as ak

        from .features import PARTICLES, VERTICES, JetObjects
        from .spec_batch import SpecInputs

        if any(spec_input.objects == VERTICES for spec_input in self.model.spec.inputs):
            raise ConfigurationError(f"model {self.model.name!r}: the check builds PF candidates from four-vectors; "
                                     "a spec with secondary-vertex inputs cannot be checked this way")
        p4 = p4.detach().to(torch.float64).numpy()
        mask = mask.numpy().astype(bool)
        counts = mask.sum(axis=1)
        real = p4[mask]  # [n_objects, 4], jet after jet in slot order
        energy, px, py, pz = real.T
        pt = np.hypot(px, py)
        with np.errstate(divide="ignore", invalid="ignore"):
            eta = np.arcsinh(pz / pt)
            mass = np.sqrt(np.maximum(energy**2 - px**2 - py**2 - pz**2, 0.0))
        jet = np.where(mask[..., None], p4, 0.0).sum(axis=1)
        jet_pt = np.hypot(jet[:, 1], jet[:, 2])
        jet_fields = {"pt": jet_pt, "eta": np.arcsinh(jet[:, 3] / jet_pt), "phi": np.arctan2(jet[:, 2], jet[:, 1]),
                      "mass": np.sqrt(np.maximum(jet[:, 0] ** 2 - jet_pt**2 - jet[:, 3] ** 2, 0.0))}
        neutral = {"charge": 0.0, "pdgId": 22.0, "d0": 0.0, "dz": 0.0, "d0Err": 1.0, "dzErr": 1.0,
                   "puppiWeight": 1.0, "pvAssocQuality": 7.0, "lostInnerHits": 0.0, "trkChi2": 0.0, "trkQuality": 0.0}
        object_fields = {"pt": pt, "eta": eta, "phi": np.arctan2(py, px), "mass": mass}
        object_fields.update({name: np.full(len(pt), value) for name, value in neutral.items()})
        n_jets = len(counts)
        arrays = {("count", "jet"): ak.Array(np.ones(n_jets, dtype=np.int64)),
                  ("count", "object"): ak.Array(counts.astype(np.int64)),
                  ("link", "pFCandsIdx"): ak.unflatten(np.concatenate([np.arange(n) for n in counts]) if n_jets else
                                                       np.zeros(0, dtype=np.int64), counts),
                  ("link", "jetIdx"): ak.unflatten(np.zeros(int(counts.sum()), dtype=np.int64), counts)}
        for name, values in object_fields.items():
            arrays[("object", name)] = ak.unflatten(values, counts)
        for name, values in jet_fields.items():
            arrays[("jet", name)] = ak.unflatten(values, np.ones(n_jets, dtype=np.int64))
        for name in ("btagEtaRel", "btagPtRatio", "btagPParRatio", "btagSip3dVal", "btagSip3dSig", "btagJetDistVal"):
            arrays[("link", name)] = ak.unflatten(np.zeros(int(counts.sum())), counts)
        objects = JetObjects(arrays, source="<check>", link_name="PFCands", index_field="pFCandsIdx")
        inputs = SpecInputs({PARTICLES: objects}, self.model.spec, batch_size=max(n_jets, 1))
        batches = [self._pad(batch) for batch in inputs] if self.extra_padding else inputs
        outputs = inputs.scatter(self.backend.infer_named(batches))
        return torch.from_numpy(outputs.astype(np.float64))


def _zoo_function(name: str, dtype: torch.dtype):
    from .models import pretrained

    model = pretrained(name).to(dtype).eval()
    return lambda p4, mask: model(p4, mask)


def check_model(target: str, *, spec=None, backend: str | None = None, n_jets: int = 32, n_constituents: int = 32,
                seed: int = 0) -> list[CheckRow]:
    """Measure the symmetries of ``target`` (a zoo name, or a model path; ``spec``/``backend`` as for
    :func:`coffea_lorentz.user_model.load_model` and :meth:`~coffea_lorentz.user_model.SpecModel.backend`)."""
    from .user_model import load_model, looks_like_path

    if looks_like_path(target):
        model = load_model(target, spec=spec)
        model_backend = model.backend(backend)
        model.check(model_backend)
        function, dtype = SpecModelFunction(model, model_backend), torch.float32
    else:
        from .run.preflight import check_taggers

        check_taggers([target])
        function, dtype = _zoo_function(target, torch.float64), torch.float64
    limits = tolerance(dtype)
    p4, mask = random_jets(n_jets, n_constituents, dtype=dtype, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)

    def evaluate(p4_: torch.Tensor, mask_: torch.Tensor, padded_by: int = 0) -> torch.Tensor:
        chosen = function.padded(padded_by) if padded_by and isinstance(function, SpecModelFunction) else function
        with torch.no_grad():
            return chosen(p4_, mask_).to(torch.float64)

    reference = evaluate(p4, mask)
    rows = []

    def add(check: str, other: torch.Tensor, limit: float) -> None:
        rows.append(CheckRow(check, relative_change(reference, other), limit, str(dtype).removeprefix("torch.")))

    add("Lorentz boosts (rapidity <= 1) and rotations",
        evaluate(apply_transform(p4, random_lorentz(n_jets, max_rapidity=1.0, generator=generator)), mask),
        limits.invariance)
    add("boosts along, rotations about the beam axis",
        evaluate(apply_transform(p4, random_z_transform(n_jets, max_rapidity=1.0, generator=generator)), mask),
        limits.invariance)
    order = torch.argsort(torch.rand(mask.shape, generator=generator), dim=1)
    add("constituent permutations",
        evaluate(torch.gather(p4, 1, order.unsqueeze(-1).expand_as(p4)), torch.gather(mask, 1, order)),
        limits.permutation)
    extra = 7
    padded_p4 = torch.cat([torch.where(mask.unsqueeze(-1), p4, torch.zeros_like(p4)),
                           torch.zeros(n_jets, extra, 4, dtype=dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(n_jets, extra, dtype=torch.bool)], dim=1)
    add(f"padding length (+{extra} padded slots)", evaluate(padded_p4, padded_mask, extra), limits.padding)
    alone = torch.cat([evaluate(p4[i:i + 1], mask[i:i + 1]) for i in range(n_jets)])
    add("batch composition (each jet alone)", alone, limits.batch)
    return rows


def report(target: str, rows: list[CheckRow]) -> str:
    """The lines ``coffea-lorentz check`` prints."""
    lorentz = rows[0].invariant
    beam = rows[1].invariant
    group = "Lorentz-invariant" if lorentz else ("invariant under the beam subgroup only" if beam else
                                                 "not Lorentz-invariant")
    lines = [f"{target}: {group}", *(row.line() for row in rows)]
    if not math.isfinite(max(row.residual for row in rows)):
        lines.append("(a non-finite output was seen)")
    return "\n".join(lines)
