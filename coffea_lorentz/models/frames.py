"""Lorentz-group primitives on tensors: inverse transforms, boosts to rest, local frames.

Pure tensor functions, no parameters, TorchScript-compatible and in the input's dtype; the taggers
build on them (:mod:`.lloca` for its local frames, :mod:`.lgn` for its working frame). Conventions
as in :mod:`.minkowski`: four-vectors [..., 4] as (E, px, py, pz); the metric g = diag(+1, −1, −1, −1)
comes from :func:`.minkowski.metric_signs`. A Lorentz matrix Λ [..., 4, 4] acts as p'^μ = Λ^μ_ν p^ν
and satisfies Λᵀ g Λ = g. Masses and ``min_mass2`` are in the unit² of the vectors they are
compared with (the taggers pass dimensionless x = p4 / scale_gev).

The float64 transforms the symmetry checks apply (random rotations, boosts of a given rapidity)
are in :mod:`coffea_lorentz.symmetry`, which samples them; these are the ones the networks compute.
"""

from __future__ import annotations

import torch

from .minkowski import metric_signs, minkowski_dot

__all__ = [
    "inverse_lorentz",
    "rest_frame_boost",
    "timelike_completion",
    "boost_to_rest",
    "longitudinal_rest_boost",
    "local_frames",
    "canonical_boost",
]


def inverse_lorentz(frames: torch.Tensor) -> torch.Tensor:
    """Λ⁻¹ = g Λᵀ g for Lorentz matrices [..., 4, 4] (exact, no matrix inversion)."""
    signs = metric_signs(frames)
    return signs.unsqueeze(-1) * frames.transpose(-1, -2) * signs


def rest_frame_boost(velocity: torch.Tensor) -> torch.Tensor:
    """The pure boost taking the unit timelike ``velocity`` u [..., 4] (u² = 1, u⁰ > 0) to (1, 0, 0, 0).

    Returns [..., 4, 4]: [[γ, −u⃗ᵀ], [−u⃗, 1 + u⃗u⃗ᵀ/(γ + 1)]] with γ = u⁰.
    """
    gamma = velocity[..., :1]  # [..., 1]
    spatial = velocity[..., 1:]  # [..., 3]
    eye = torch.eye(3, dtype=velocity.dtype, device=velocity.device)
    block = eye + spatial.unsqueeze(-1) * spatial.unsqueeze(-2) / (gamma + 1.0).unsqueeze(-1)
    top = torch.cat([gamma, -spatial], dim=-1).unsqueeze(-2)  # [..., 1, 4]
    bottom = torch.cat([-spatial.unsqueeze(-1), block], dim=-1)  # [..., 3, 4]
    return torch.cat([top, bottom], dim=-2)


def timelike_completion(v: torch.Tensor, min_mass2: float) -> torch.Tensor:
    """``v`` [..., 4] where future timelike with v² ≥ ``min_mass2``, else (|v⃗| + μ, v⃗) with μ² = ``min_mass2``.

    The completion is not covariant; callers use it where any rest frame serves (a nearly
    massless jet, a degenerate frame vector) and keep the result deterministic.
    """
    spatial_norm = torch.linalg.vector_norm(v[..., 1:], dim=-1)
    completed = torch.cat([(spatial_norm + min_mass2**0.5).unsqueeze(-1), v[..., 1:]], dim=-1)
    good = (minkowski_dot(v, v) >= min_mass2) & (v[..., 0] > 0)
    return torch.where(good.unsqueeze(-1), v, completed)


def boost_to_rest(v: torch.Tensor, min_mass2: float) -> torch.Tensor:
    """The pure boost [..., 4, 4] to the rest frame of ``v`` [..., 4], completed by :func:`timelike_completion`."""
    timelike = timelike_completion(v, min_mass2)
    velocity = timelike / torch.sqrt(minkowski_dot(timelike, timelike)).unsqueeze(-1)
    return rest_frame_boost(velocity)


def longitudinal_rest_boost(jet: torch.Tensor, min_mass2: float) -> torch.Tensor:
    """The boost along z [B, 4, 4] that takes ``jet`` [B, 4] to pz = 0 (zero rapidity).

    cosh y = E / m_T, sinh y = pz / m_T with m_T² = E² − pz²; the identity where m_T² ≤
    ``min_mass2`` or E ≤ 0. An element of the beam subgroup, so taggers with beam reference may use it.
    """
    n_batch = jet.shape[0]
    eye = torch.eye(4, dtype=jet.dtype, device=jet.device).expand(n_batch, 4, 4)
    energy, pz = jet[:, 0], jet[:, 3]
    mt2 = energy * energy - pz * pz
    good = (mt2 > min_mass2) & (energy > 0)
    mt = torch.sqrt(torch.where(good, mt2, torch.ones_like(mt2)))
    cosh, sinh = energy / mt, pz / mt
    zeros, ones = torch.zeros_like(cosh), torch.ones_like(cosh)
    z_boost = torch.stack(
        [
            torch.stack([cosh, zeros, zeros, -sinh], dim=-1),
            torch.stack([zeros, ones, zeros, zeros], dim=-1),
            torch.stack([zeros, zeros, ones, zeros], dim=-1),
            torch.stack([-sinh, zeros, zeros, cosh], dim=-1),
        ],
        dim=-2,
    )
    return torch.where(good.unsqueeze(-1).unsqueeze(-1), z_boost, eye)


def _pick_direction(
    candidate: torch.Tensor, reference: torch.Tensor, fallback: torch.Tensor, eps: float
) -> torch.Tensor:
    """Unit 3-vector: ``candidate`` [..., 3] normalised if its norm exceeds ``eps``·``reference`` [...],
    else the longest of the ``fallback`` rows [..., 3, 3], normalised (first one on ties)."""
    norm = torch.linalg.vector_norm(candidate, dim=-1)
    fallback_norm = torch.linalg.vector_norm(fallback, dim=-1)  # [..., 3]
    best = torch.argmax(fallback_norm, dim=-1, keepdim=True)  # [..., 1]
    one_hot = (best == torch.arange(3, device=best.device)).to(fallback.dtype)  # [..., 3]
    chosen = (one_hot.unsqueeze(-1) * fallback).sum(-2) / (one_hot * fallback_norm).sum(-1, keepdim=True)
    good = norm > eps * reference
    safe_norm = torch.where(good, norm, torch.ones_like(norm))
    return torch.where(good.unsqueeze(-1), candidate / safe_norm.unsqueeze(-1), chosen)


def local_frames(
    v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, *, min_mass2: float, eps: float
) -> torch.Tensor:
    """Proper orthochronous frames Λ [..., 4, 4] from four-vectors v0, v1, v2 [..., 4].

    Λ boosts v0 to rest (Λ v0 ∝ (1, 0, 0, 0)), puts v1 in the (t, x) plane with positive x and v2 in
    the (t, x, y) half-plane with positive y; the third axis is the cross product. Equivariant:
    frames of (Λ' v0, Λ' v1, Λ' v2) equal Λ Λ'⁻¹ whenever v0² ≥ ``min_mass2`` and the directions
    are longer than ``eps`` (relative to the rest-frame vector). Otherwise completed
    deterministically: v0 by :func:`timelike_completion`, a vanishing direction by the lab axis with
    the largest orthogonal remainder. Λᵀ g Λ = g always.
    """
    boost = boost_to_rest(v0, min_mass2)  # [..., 4, 4]
    rest1 = torch.einsum("...ij,...j->...i", boost, v1)
    rest2 = torch.einsum("...ij,...j->...i", boost, v2)
    axes = boost[..., 1:, 1:].transpose(-1, -2)  # rows: rest-frame spatial parts of the lab axes

    # directions count as degenerate relative to the Euclidean size of the rest-frame vector
    u1 = _pick_direction(rest1[..., 1:], torch.linalg.vector_norm(rest1, dim=-1), axes, eps)
    residual2 = rest2[..., 1:] - (rest2[..., 1:] * u1).sum(-1, keepdim=True) * u1
    axes_residual = axes - (axes * u1.unsqueeze(-2)).sum(-1, keepdim=True) * u1.unsqueeze(-2)
    u2 = _pick_direction(residual2, torch.linalg.vector_norm(rest2, dim=-1), axes_residual, eps)
    u3 = torch.linalg.cross(u1, u2, dim=-1)

    rotation = torch.stack([u1, u2, u3], dim=-2)  # [..., 3, 3]
    zeros = torch.zeros_like(u1)
    one = torch.ones_like(u1[..., :1])
    top = torch.cat([one, zeros], dim=-1).unsqueeze(-2)
    bottom = torch.cat([zeros.unsqueeze(-1), rotation], dim=-1)
    return torch.cat([top, bottom], dim=-2) @ boost


def canonical_boost(jet: torch.Tensor, *, beam_reference: bool, max_gamma: float) -> torch.Tensor:
    """A boost B [B, 4, 4] that takes the jet momentum ``jet`` [B, 4] close to rest.

    Without beam reference: the pure boost to the rest frame of the jet, with the Lorentz factor
    capped at ``max_gamma`` (and B = 1 for a jet without spatial momentum). With beam reference:
    the z-boost to zero jet rapidity, the rapidity capped at acosh(``max_gamma``), so B stays in
    the group a beam-reference tagger respects. A tagger invariant under any such B uses it only
    for numerics: in these coordinates momenta and frames are O(jet mass) instead of O(jet
    energy), and later boosts no longer amplify rounding.
    """
    energy = jet[:, 0]
    max_beta_gamma = (max_gamma**2 - 1.0) ** 0.5
    if beam_reference:
        transverse_mass2 = energy**2 - jet[:, 3] ** 2
        heavy = (transverse_mass2 > 0) & (energy > 0)
        safe_mass = torch.sqrt(torch.where(heavy, transverse_mass2, torch.ones_like(energy)))
        cap = torch.full_like(energy, max_beta_gamma)
        longitudinal = (jet[:, 3] / safe_mass).clamp(-max_beta_gamma, max_beta_gamma)
        beta_gamma = torch.where(heavy, longitudinal, torch.sign(jet[:, 3]) * cap)
        gamma = torch.sqrt(1.0 + beta_gamma**2)
        zeros = torch.zeros_like(energy)
        velocity = torch.stack([gamma, zeros, zeros, beta_gamma], dim=-1)
        return rest_frame_boost(velocity)
    momentum = torch.linalg.vector_norm(jet[:, 1:], dim=-1)
    mass2 = minkowski_dot(jet, jet)
    heavy = (mass2 > 0) & (energy > 0)
    safe_mass = torch.sqrt(torch.where(heavy, mass2, torch.ones_like(mass2)))
    cap = torch.full_like(momentum, max_beta_gamma)
    beta_gamma = torch.where(heavy, (momentum / safe_mass).clamp(max=max_beta_gamma), cap)
    moving = momentum > 0
    direction = jet[:, 1:] / torch.where(moving, momentum, torch.ones_like(momentum)).unsqueeze(-1)
    beta_gamma = torch.where(moving, beta_gamma, torch.zeros_like(beta_gamma))
    velocity = torch.cat([torch.sqrt(1.0 + beta_gamma**2).unsqueeze(-1), beta_gamma.unsqueeze(-1) * direction], dim=-1)
    return rest_frame_boost(velocity)
