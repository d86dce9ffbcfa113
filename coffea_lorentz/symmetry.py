"""Symmetry checks for taggers, shipped with the package so any tagger can be checked the same way.

Transforms are [4, 4] (or [B, 4, 4], one per jet) proper orthochronous Lorentz matrices Λ acting on
(E, px, py, pz): p'^μ = Λ^μ_ν p^ν. They are built and applied in float64 and cast back to the
input dtype, so a float32 check measures the tagger's own rounding, not the transform's.

Each ``assert_*`` check returns the measured relative logit change
``max |f(p') − f(p)| / max |f(p)|`` (over the whole batch) and raises :class:`SymmetryError`
when it exceeds the tolerance: ``rtol`` when given, else the check's entry of :data:`TOLERANCE`
for the input's dtype — one set of numbers per dtype that every tagger meets and every test reads
(as e3nn's ``FLOAT_TOLERANCE``). Pass models in ``eval()`` mode.

A tagger states the group it is invariant under in a string attribute ``invariance``:
``"lorentz"`` (proper orthochronous Lorentz group), ``"z_boost_rotation"`` (boosts along and
rotations about the beam axis, what ``beam_reference=True`` leaves), ``"z_rotation"`` or
``"none"``; :func:`declared_invariance` reads it.

>>> import torch
>>> transform = random_lorentz(3, max_rapidity=2.0, generator=torch.Generator().manual_seed(0))
>>> lorentz_violation(transform) < 1e-12
True
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .errors import InvalidInputError, SymmetryError
from .models.base import INVARIANCES  # the values a tagger's ``invariance`` may take, largest group first
from .models.minkowski import metric

__all__ = [
    "SymmetryError",
    "Tolerance",
    "TOLERANCE",
    "tolerance",
    "INVARIANCES",
    "declared_invariance",
    "rotation_matrix",
    "random_rotation",
    "boost",
    "random_lorentz",
    "z_boost",
    "z_rotation",
    "random_z_transform",
    "lorentz_violation",
    "apply_transform",
    "random_jets",
    "boundary_inputs",
    "relative_change",
    "assert_invariant",
    "assert_permutation_invariant",
    "assert_padding_invariant",
    "assert_batch_independent",
    "invariance_curve",
]




@dataclass(frozen=True, kw_only=True)
class Tolerance:
    """Relative logit changes ``max |Δf| / max |f|`` the checks allow, for one dtype.

    Attributes:
        invariance: under a transformation of the tagger's group (float64: boosts up to
            rapidity 4; float32: beam-subgroup transforms up to Δy = 2, beyond which the rounding of
            the boosted inputs themselves dominates).
        permutation: constituent slots shuffled.
        padding: padded slots refilled (NaN, ±inf, large values) or appended; a batch run in
            chunks instead of whole.
        batch: a jet computed alone instead of in a batch.
        float64_agreement: this dtype's logits against a float64 evaluation of the same weights.
        violation: a transformation outside the tagger's group must change the logits by more
            than this (the check that a broken symmetry is really broken).
    """

    invariance: float
    permutation: float
    padding: float
    batch: float
    float64_agreement: float
    violation: float


#: One :class:`Tolerance` per dtype, read by every symmetry test and by the checks' defaults.
TOLERANCE: Mapping[torch.dtype, Tolerance] = types.MappingProxyType(
    {
        torch.float32: Tolerance(
            invariance=1e-3, permutation=1e-5, padding=1e-6, batch=1e-5, float64_agreement=1e-3, violation=1e-3
        ),
        torch.float64: Tolerance(
            invariance=1e-9, permutation=1e-9, padding=1e-9, batch=1e-9, float64_agreement=0.0, violation=1e-6
        ),
    }
)


def tolerance(dtype: torch.dtype) -> Tolerance:
    """``TOLERANCE[dtype]``, with an error naming the dtypes that have one."""
    try:
        return TOLERANCE[dtype]
    except KeyError:
        known = ", ".join(map(str, TOLERANCE))
        raise InvalidInputError(f"no symmetry tolerance for {dtype}; expected one of {known}") from None


def declared_invariance(model: nn.Module, *, beam_reference: bool) -> str:
    """``model.invariance``, or what the tagger contract implies when the attribute is absent:
    ``"z_boost_rotation"`` with ``beam_reference``, else ``"lorentz"``."""
    invariance = getattr(model, "invariance", None)
    if invariance is None:
        return "z_boost_rotation" if beam_reference else "lorentz"
    if invariance not in INVARIANCES:
        raise SymmetryError(f"{type(model).__name__}.invariance is {invariance!r}; expected one of {', '.join(INVARIANCES)}")
    return invariance


# ----------------------------------------------------------------------------- transforms


def _as_generator(generator: torch.Generator | None, seed: int) -> torch.Generator:
    return generator if generator is not None else torch.Generator().manual_seed(seed)


def rotation_matrix(rotation3: torch.Tensor) -> torch.Tensor:
    """Embed spatial rotations [..., 3, 3] into Lorentz matrices [..., 4, 4]."""
    out = torch.zeros(rotation3.shape[:-2] + (4, 4), dtype=rotation3.dtype)
    out[..., 0, 0] = 1.0
    out[..., 1:, 1:] = rotation3
    return out


def random_rotation(n: int, *, generator: torch.Generator | None = None, seed: int = 0) -> torch.Tensor:
    """``n`` uniformly random rotations (unit quaternions) as Lorentz matrices [n, 4, 4], float64."""
    generator = _as_generator(generator, seed)
    q = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    rotation3 = torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    return rotation_matrix(rotation3)


def boost(rapidity: torch.Tensor | float, direction: torch.Tensor) -> torch.Tensor:
    """Pure boosts of ``rapidity`` [n] along unit ``direction`` [n, 3] → [n, 4, 4], float64.

    Λ⁰₀ = cosh y, Λ⁰ᵢ = Λⁱ₀ = sinh y nᵢ, Λⁱⱼ = δᵢⱼ + (cosh y − 1) nᵢ nⱼ.
    """
    direction = direction.to(torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    rapidity = torch.as_tensor(rapidity, dtype=torch.float64).expand(direction.shape[0])
    cosh = torch.cosh(rapidity)[:, None, None]
    sinh = torch.sinh(rapidity)[:, None]
    out = torch.zeros(direction.shape[0], 4, 4, dtype=torch.float64)
    out[:, 0, 0] = cosh[:, 0, 0]
    out[:, 0, 1:] = sinh * direction
    out[:, 1:, 0] = sinh * direction
    out[:, 1:, 1:] = torch.eye(3, dtype=torch.float64) + (cosh - 1.0) * direction[:, :, None] * direction[:, None, :]
    return out


def random_lorentz(
    n: int, *, max_rapidity: float, generator: torch.Generator | None = None, seed: int = 0
) -> torch.Tensor:
    """``n`` random proper orthochronous transforms [n, 4, 4], float64: rotation, then a boost.

    Each boost has a rapidity uniform in [0, ``max_rapidity``] along a uniformly random direction.
    """
    generator = _as_generator(generator, seed)
    rotation = random_rotation(n, generator=generator)
    direction = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    rapidity = max_rapidity * torch.rand(n, generator=generator, dtype=torch.float64)
    return boost(rapidity, direction) @ rotation


def z_boost(rapidity: torch.Tensor | float) -> torch.Tensor:
    """Boosts along the beam (z) axis by ``rapidity`` (scalar or [n]) → [n, 4, 4], float64."""
    rapidity = torch.as_tensor(rapidity, dtype=torch.float64).reshape(-1)
    direction = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(rapidity.shape[0], 3)
    return boost(rapidity, direction)


def z_rotation(angle: torch.Tensor | float) -> torch.Tensor:
    """Rotations about the beam (z) axis by ``angle`` rad (scalar or [n]) → [n, 4, 4], float64."""
    angle = torch.as_tensor(angle, dtype=torch.float64).reshape(-1)
    out = torch.zeros(angle.shape[0], 4, 4, dtype=torch.float64)
    out[:, 0, 0] = 1.0
    out[:, 3, 3] = 1.0
    out[:, 1, 1] = torch.cos(angle)
    out[:, 1, 2] = -torch.sin(angle)
    out[:, 2, 1] = torch.sin(angle)
    out[:, 2, 2] = torch.cos(angle)
    return out


def random_z_transform(
    n: int, *, max_rapidity: float, generator: torch.Generator | None = None, seed: int = 0
) -> torch.Tensor:
    """``n`` random elements of the beam subgroup [n, 4, 4], float64: a z-rotation (any angle) then a
    z-boost with rapidity uniform in [−``max_rapidity``, ``max_rapidity``]."""
    generator = _as_generator(generator, seed)
    angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    rapidity = max_rapidity * (2 * torch.rand(n, generator=generator, dtype=torch.float64) - 1)
    return z_boost(rapidity) @ z_rotation(angle)


def lorentz_violation(transform: torch.Tensor) -> float:
    """How far ``transform`` [..., 4, 4] is from the proper orthochronous group.

    Returns max |Λᵀ g Λ − g| relative to max(1, |Λ|²); returns inf when det Λ ≠ +1 (beyond
    rounding) or Λ⁰₀ < 1.
    """
    transform = transform.to(torch.float64)
    g = metric(torch.float64)
    scale = max(1.0, transform.abs().max().item() ** 2)
    deviation = (transform.transpose(-1, -2) @ g @ transform - g).abs().max().item() / scale
    det = torch.linalg.det(transform)
    if ((det - 1.0).abs() > 1e-9 * scale**2).any() or (transform[..., 0, 0] < 1.0 - 1e-12).any():
        return math.inf
    return deviation


def apply_transform(p4: torch.Tensor, transform: torch.Tensor) -> torch.Tensor:
    """Λ p for every constituent: ``p4`` [B, N, 4], ``transform`` [4, 4], [1, 4, 4] or [B, 4, 4].

    Computed in float64, returned in ``p4``'s dtype. NaN in padded entries stays in those entries.
    """
    transform = transform.to(torch.float64)
    if transform.dim() == 2:
        transform = transform.unsqueeze(0)
    out = torch.einsum("bij,bnj->bni", transform.expand(p4.shape[0], 4, 4), p4.to(torch.float64))
    return out.to(p4.dtype)


# ----------------------------------------------------------------------------- inputs


def random_jets(
    n_jets: int,
    n_constituents: int,
    *,
    min_constituents: int = 1,
    jet_pt_gev: float = 500.0,
    max_abs_eta: float = 2.0,
    cone_width: float = 0.2,
    pion_mass_gev: float = 0.13957,
    pad_value: float = 0.0,
    dtype: torch.dtype = torch.float64,
    generator: torch.Generator | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Realistic test jets: ``p4`` [n_jets, n_constituents, 4] GeV and ``mask`` [n_jets, n_constituents].

    Each jet has pT within ±20 % of ``jet_pt_gev``, η uniform in ±``max_abs_eta``, φ uniform, and a
    number of constituents uniform in [``min_constituents``, ``n_constituents``]. Constituents share
    the pT with steeply falling fractions, sit Gaussian-distributed (width ``cone_width``) around
    the axis in (η, φ), and are photons (massless) or charged pions. Padded slots hold ``pad_value``.
    """
    generator = _as_generator(generator, seed)
    f64 = torch.float64

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, dtype=f64)

    jet_pt = jet_pt_gev * (0.8 + 0.4 * uniform(n_jets, 1))
    jet_eta = max_abs_eta * (2 * uniform(n_jets, 1) - 1)
    jet_phi = math.pi * (2 * uniform(n_jets, 1) - 1)
    lengths = torch.randint(min_constituents, n_constituents + 1, (n_jets, 1), generator=generator)
    mask = torch.arange(n_constituents).unsqueeze(0) < lengths
    weights = (-torch.log(uniform(n_jets, n_constituents).clamp(min=1e-12))) ** 2
    weights = torch.where(mask, weights, torch.zeros_like(weights))
    pt = jet_pt * weights / weights.sum(-1, keepdim=True)
    eta = jet_eta + cone_width * torch.randn(n_jets, n_constituents, generator=generator, dtype=f64)
    phi = jet_phi + cone_width * torch.randn(n_jets, n_constituents, generator=generator, dtype=f64)
    mass = torch.where(uniform(n_jets, n_constituents) < 0.3, torch.zeros_like(pt), torch.full_like(pt, pion_mass_gev))
    px, py, pz = pt * torch.cos(phi), pt * torch.sin(phi), pt * torch.sinh(eta)
    energy = torch.sqrt(px**2 + py**2 + pz**2 + mass**2)
    p4 = torch.stack([energy, px, py, pz], dim=-1)
    p4 = torch.where(mask.unsqueeze(-1), p4, torch.full_like(p4, pad_value))
    return p4.to(dtype), mask


def boundary_inputs(dtype: torch.dtype = torch.float32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Edge cases every tagger must map to finite logits: name → (``p4`` GeV, ``mask``).

    single constituent (N = 1); massless collinear constituents; exactly massless back-to-back pair;
    N = 128 full; all but one padded (with NaN padding); a very soft constituent next to a hard one.
    """
    f64 = torch.float64
    cases: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    cases["single"] = (torch.tensor([[[500.0, 300.0, 0.0, 400.0]]], dtype=f64), torch.ones(1, 1, dtype=torch.bool))
    direction = torch.tensor([0.6, 0.0, 0.8], dtype=f64)
    energies = torch.tensor([300.0, 150.0, 50.0, 1.0], dtype=f64)
    collinear = torch.cat([energies[:, None], energies[:, None] * direction], dim=-1)
    cases["collinear_massless"] = (collinear.unsqueeze(0), torch.ones(1, 4, dtype=torch.bool))
    back_to_back = torch.tensor([[[100.0, 100.0, 0.0, 0.0], [100.0, -100.0, 0.0, 0.0]]], dtype=f64)
    cases["back_to_back_massless"] = (back_to_back, torch.ones(1, 2, dtype=torch.bool))
    cases["n128"] = random_jets(2, 128, min_constituents=128, dtype=f64, seed=128)
    p4, mask = random_jets(3, 16, dtype=f64, seed=16)
    mask = torch.zeros_like(mask)
    mask[:, 0] = True
    cases["all_but_one_padded"] = (torch.where(mask.unsqueeze(-1), p4, torch.full_like(p4, math.nan)), mask)
    soft = torch.tensor([[[400.0, 0.0, 0.0, 400.0], [1e-3, 0.0, 1e-4, 1e-3]]], dtype=f64)
    cases["soft_and_hard"] = (soft, torch.ones(1, 2, dtype=torch.bool))
    return {name: (p4.to(dtype), mask) for name, (p4, mask) in cases.items()}


# ----------------------------------------------------------------------------- checks


def relative_change(reference: torch.Tensor, other: torch.Tensor) -> float:
    """max |other − reference| / max |reference| over all entries (inf if ``other`` is not finite)."""
    if not bool(torch.isfinite(other).all()) or not bool(torch.isfinite(reference).all()):
        return math.inf
    scale = reference.abs().max().item()
    diff = (other - reference).abs().max().item()
    return diff / scale if scale > 0 else diff


def _evaluate(model: nn.Module, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(p4, mask)


def _check(name: str, measured: float, tolerance: float, detail: str) -> float:
    if not measured <= tolerance:
        raise SymmetryError(f"{name}: relative logit change {measured:.3g} exceeds tolerance {tolerance:g} ({detail})")
    return measured


def assert_invariant(
    model: nn.Module, p4: torch.Tensor, mask: torch.Tensor, transform: torch.Tensor, rtol: float | None = None
) -> float:
    """Check f(Λp) = f(p) for ``transform`` [4, 4] or [B, 4, 4]; returns the relative logit change.

    ``rtol`` defaults to ``TOLERANCE[p4.dtype].invariance``.
    """
    rtol = tolerance(p4.dtype).invariance if rtol is None else rtol
    reference = _evaluate(model, p4, mask)
    moved = _evaluate(model, apply_transform(p4, transform), mask)
    measured = relative_change(reference, moved)
    return _check("invariance under the transform", measured, rtol, f"dtype {p4.dtype}, shape {list(p4.shape)}")


def assert_permutation_invariant(
    model: nn.Module, p4: torch.Tensor, mask: torch.Tensor, rtol: float | None = None, *, seed: int = 0
) -> float:
    """Check that shuffling constituent slots (real and padded alike, per jet) leaves logits unchanged.

    ``rtol`` defaults to ``TOLERANCE[p4.dtype].permutation``.
    """
    rtol = tolerance(p4.dtype).permutation if rtol is None else rtol
    generator = torch.Generator().manual_seed(seed)
    order = torch.argsort(torch.rand(mask.shape, generator=generator), dim=1)
    shuffled_p4 = torch.gather(p4, 1, order.unsqueeze(-1).expand_as(p4))
    shuffled_mask = torch.gather(mask, 1, order)
    measured = relative_change(_evaluate(model, p4, mask), _evaluate(model, shuffled_p4, shuffled_mask))
    return _check("permutation invariance", measured, rtol, f"dtype {p4.dtype}, shape {list(p4.shape)}")


def assert_padding_invariant(
    model: nn.Module,
    p4: torch.Tensor,
    mask: torch.Tensor,
    rtol: float | None = None,
    *,
    extra: int = 7,
    pad_value: float = math.nan,
) -> float:
    """Check that refilling padded slots with ``pad_value`` and appending ``extra`` padded slots
    changes nothing; returns the relative logit change. ``rtol`` defaults to
    ``TOLERANCE[p4.dtype].padding``."""
    rtol = tolerance(p4.dtype).padding if rtol is None else rtol
    n_jets = p4.shape[0]
    refilled = torch.where(mask.unsqueeze(-1), p4, torch.full_like(p4, pad_value))
    padded_p4 = torch.cat([refilled, torch.full((n_jets, extra, 4), pad_value, dtype=p4.dtype)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(n_jets, extra, dtype=torch.bool)], dim=1)
    measured = relative_change(_evaluate(model, p4, mask), _evaluate(model, padded_p4, padded_mask))
    return _check("padding invariance", measured, rtol, f"pad value {pad_value}, {extra} extra slots, dtype {p4.dtype}")


def assert_batch_independent(
    model: nn.Module, p4: torch.Tensor, mask: torch.Tensor, rtol: float | None = None
) -> float:
    """Check that each jet's logits are the same alone as in the batch.

    ``rtol`` defaults to ``TOLERANCE[p4.dtype].batch``.
    """
    rtol = tolerance(p4.dtype).batch if rtol is None else rtol
    together = _evaluate(model, p4, mask)
    alone = torch.cat([_evaluate(model, p4[index : index + 1], mask[index : index + 1]) for index in range(p4.shape[0])])
    measured = relative_change(together, alone)
    return _check("batch independence", measured, rtol, f"batch of {p4.shape[0]}, dtype {p4.dtype}")


def invariance_curve(
    model: nn.Module,
    rapidities: list[float],
    *,
    n_jets: int = 64,
    n_constituents: int = 32,
    dtype: torch.dtype = torch.float32,
    beam_subgroup: bool = False,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """Relative logit change against boost rapidity, for a README curve.

    For each rapidity y, every jet gets a random rotation followed by a boost of exactly y along a
    random direction (or, with ``beam_subgroup``, a random z-rotation and a z-boost of y).
    Returns [(y, relative change)].
    """
    p4, mask = random_jets(n_jets, n_constituents, dtype=dtype, seed=seed)
    reference = _evaluate(model, p4, mask)
    generator = torch.Generator().manual_seed(seed + 1)
    curve: list[tuple[float, float]] = []
    for rapidity in rapidities:
        y = torch.full((n_jets,), float(rapidity), dtype=torch.float64)
        if beam_subgroup:
            angle = 2 * math.pi * torch.rand(n_jets, generator=generator, dtype=torch.float64)
            transform = z_boost(y) @ z_rotation(angle)
        else:
            direction = torch.randn(n_jets, 3, generator=generator, dtype=torch.float64)
            transform = boost(y, direction) @ random_rotation(n_jets, generator=generator)
        moved = _evaluate(model, apply_transform(p4, transform), mask)
        curve.append((float(rapidity), relative_change(reference, moved)))
    return curve

