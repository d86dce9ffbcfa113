"""Minkowski-space primitives shared by every tagger: pure tensor functions, no parameters.

Conventions: four-vectors ``p4`` have shape [..., 4] as (E, px, py, pz) in GeV; the metric is
diag(+1, -1, -1, -1), so a massive particle has ``minkowski_norm2(p4) = m² > 0``. ``mask`` is bool,
True = real constituent.
"""

from __future__ import annotations

import torch

__all__ = [
    "METRIC_SIGNS",
    "metric_signs",
    "metric",
    "minkowski_dot",
    "minkowski_norm2",
    "pairwise_dot",
    "pairwise_diff_norm2",
    "masked_p4",
    "beam_reference_vectors",
    "psi",
]

def metric_signs(like: torch.Tensor) -> torch.Tensor:
    """The diagonal of the Minkowski metric, (+1, −1, −1, −1), as a [4] tensor in ``like``'s dtype and device.

    The one place the signature is written: every primitive and tagger that needs g takes it from
    here (a function rather than a module constant, which TorchScript cannot read).
    """
    return torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=like.dtype, device=like.device)


#: The diagonal of the Minkowski metric, (+, -, -, -), as Python floats.
METRIC_SIGNS: tuple[float, ...] = tuple(metric_signs(torch.empty(0, dtype=torch.float64)).tolist())


def metric(dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> torch.Tensor:
    """The Minkowski metric g = diag(+1, -1, -1, -1) as a [4, 4] tensor."""
    return torch.diag(metric_signs(torch.empty(0, dtype=dtype, device=device)))


def minkowski_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a, b⟩ = a⁰b⁰ − a·b over the last axis: [..., 4] × [..., 4] → [...], GeV²."""
    return (a * b * metric_signs(a)).sum(-1)


def minkowski_norm2(p4: torch.Tensor) -> torch.Tensor:
    """⟨p, p⟩ = E² − |p|² (the squared mass for one particle): [..., 4] → [...], GeV²."""
    return minkowski_dot(p4, p4)


def pairwise_dot(p4: torch.Tensor) -> torch.Tensor:
    """All pairwise inner products ⟨p_i, p_j⟩: [B, N, 4] → [B, N, N], GeV²."""
    return torch.einsum("bid,bjd->bij", p4 * metric_signs(p4), p4)


def pairwise_diff_norm2(p4: torch.Tensor) -> torch.Tensor:
    """All ⟨p_i − p_j, p_i − p_j⟩ = m_i² + m_j² − 2⟨p_i, p_j⟩: [B, N, 4] → [B, N, N], GeV²."""
    dots = pairwise_dot(p4)
    norms = torch.diagonal(dots, dim1=-2, dim2=-1)
    return norms.unsqueeze(-1) + norms.unsqueeze(-2) - 2.0 * dots


def masked_p4(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``p4`` with padded entries set to exactly zero (NaN in padding included): [B, N, 4]."""
    return torch.where(mask.unsqueeze(-1), p4, torch.zeros_like(p4))


def beam_reference_vectors(like: torch.Tensor) -> torch.Tensor:
    """The two spurions that break the Lorentz group down to z-boosts × z-rotations.

    Returns [2, 4]: the time reference (1, 0, 0, 0) and the beam axis (0, 0, 0, 1), dimensionless,
    in ``like``'s dtype and device. Their inner products with a constituent are E and −pz.
    """
    ref = torch.zeros(2, 4, dtype=like.dtype, device=like.device)
    ref[0, 0] = 1.0
    ref[1, 3] = 1.0
    return ref


def psi(x: torch.Tensor) -> torch.Tensor:
    """ψ(x) = sign(x)·log(1 + |x|): a smooth, odd compression of invariants spanning many decades."""
    return torch.sign(x) * torch.log1p(x.abs())
