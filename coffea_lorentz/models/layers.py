"""Layers shared by the taggers: masked MLPs and reductions, invariant embeddings, the pair-tagger base.

Conventions as in :mod:`.minkowski`: ``p4`` [B, N, 4] as (E, px, py, pz) in GeV, ``mask`` [B, N]
bool with True = real constituent. Every function here selects with ``torch.where`` on the mask,
never by multiplying with it, so padded entries holding NaN or inf cannot reach a real output.

Invariants are made dimensionless with a fixed, documented scale ``scale_gev`` that each tagger
exposes as a config field: a dot product ⟨p_i, p_j⟩ in GeV² enters a network as
ψ(⟨p_i, p_j⟩ / scale_gev²), with ψ from :func:`.minkowski.psi`.

Beam reference. The time t = (1, 0, 0, 0) and beam z = (0, 0, 0, 1) spurions enter only through
the longitudinal metric t tᵀ − z zᵀ, i.e. through L(a, b) = ⟨a, t⟩⟨b, t⟩ − ⟨a, z⟩⟨b, z⟩ = a⁰b⁰ − a³b³.
L is invariant under boosts along z and rotations about z (the group the beams leave alone),
whereas ⟨p, t⟩ = E and ⟨p, z⟩ = −pz alone are not invariant under z-boosts. So is the transverse
part T(a, b) = L(a, b) − ⟨a, b⟩ = a¹b¹ + a²b². A tagger given L and T in place of ⟨a, b⟩ is exactly
invariant under that subgroup, no longer under the full group, and better conditioned in float32:
a z-boost leaves px, py and so T untouched, while ⟨a, b⟩ of a collinear pair is a small difference.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError
from .base import TaggerModel, resolve_config
from .minkowski import masked_p4, minkowski_dot, minkowski_norm2, pairwise_dot, psi

__all__ = [
    "MLP",
    "MaskedMLP",
    "masked_sum",
    "masked_mean",
    "masked_count",
    "pair_mask",
    "diagonal_mask",
    "jet_p4",
    "pair_invariants",
    "longitudinal_dot",
    "transverse_dot",
    "InvariantEmbedding",
    "resolve_config",
    "jets_per_chunk",
    "check_inputs",
    "PairTagger",
]

def check_inputs(p4: torch.Tensor, mask: torch.Tensor) -> None:
    """Raise :class:`InvalidInputError` unless ``p4`` is [B, N, 4] floating and ``mask`` is [B, N] bool."""
    if p4.dim() != 3 or p4.shape[-1] != 4:
        raise InvalidInputError(f"p4: expected shape [B, N, 4], got {list(p4.shape)}")
    if not p4.is_floating_point():
        raise InvalidInputError(f"p4: expected a floating dtype, got {p4.dtype}")
    if mask.dtype != torch.bool:
        raise InvalidInputError(f"mask: expected dtype torch.bool, got {mask.dtype}")
    if mask.dim() != 2 or mask.shape[0] != p4.shape[0] or mask.shape[1] != p4.shape[1]:
        raise InvalidInputError(f"mask: expected shape {list(p4.shape[:2])} to match p4, got {list(mask.shape)}")


def jets_per_chunk(n_jets: int, n_constituents: int, pairs_per_chunk: int) -> int:
    """How many jets to run at once so one [jets, N, N, C] tensor holds about ``pairs_per_chunk`` pairs.

    Returns ``n_jets`` (no chunking) when ``pairs_per_chunk`` ≤ 0. On a CPU, pair tensors of a few
    MB stay in the allocator's reused memory, while 100 MB ones are mapped and faulted in afresh on
    every call, which makes large batches several times slower per jet.
    """
    if pairs_per_chunk <= 0:
        return n_jets
    return max(1, min(n_jets, pairs_per_chunk // max(1, n_constituents * n_constituents)))


class PairTagger(TaggerModel):
    """Base of taggers whose cost is dominated by [B, N, N, C] pair tensors (a :class:`~.base.TaggerModel`).

    :meth:`forward` checks ``p4`` [B, N, 4] GeV and ``mask`` [B, N] bool, then calls the subclass's
    ``logits(p4, mask) → [B, n_classes]`` on slices of at most :func:`jets_per_chunk` jets when
    running on a CPU (``pairs_per_chunk`` ≤ 0 or a CUDA tensor: the whole batch at once). Each jet
    is computed on its own, so slicing never changes a result. The config's ``pairs_per_chunk``
    field (about 65k pairs by default) sets the slice.
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.pairs_per_chunk = int(self.config.pairs_per_chunk)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inputs(p4, mask)
        chunk = self.pairs_per_chunk if not p4.is_cuda else 0
        n_jets_chunk = jets_per_chunk(p4.shape[0], p4.shape[1], chunk)
        if n_jets_chunk < p4.shape[0]:
            p4_chunks = torch.split(p4, n_jets_chunk)
            mask_chunks = torch.split(mask, n_jets_chunk)
            return torch.cat([self.logits(p4_chunks[index], mask_chunks[index]) for index in range(len(p4_chunks))])
        return self.logits(p4, mask)


# ----------------------------------------------------------------------------- MLPs


class MLP(nn.Module):
    """Feed-forward net applied to the last axis: [..., n_in] → [..., n_out].

    ``n_hidden_layers`` hidden layers of width ``n_hidden`` with SiLU; the output layer is linear.
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, n_hidden_layers: int = 1, bias_out: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(n_hidden_layers):
            layers += [nn.Linear(width, n_hidden), nn.SiLU()]
            width = n_hidden
        layers.append(nn.Linear(width, n_out, bias=bias_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MaskedMLP(nn.Module):
    """An :class:`MLP` whose output is exactly zero where ``mask`` is False.

    ``x`` [..., n_in], ``mask`` bool broadcastable to ``x.shape[:-1]`` → [..., n_out].
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int, *, n_hidden_layers: int = 1):
        super().__init__()
        self.mlp = MLP(n_in, n_hidden, n_out, n_hidden_layers=n_hidden_layers)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.mlp(x)
        return torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out))


# ----------------------------------------------------------------------------- masked reductions


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum of ``x`` over ``dim`` where ``mask`` is True.

    ``mask`` has ``x``'s leading shape (``x.dim()`` or ``x.dim() - 1`` axes; with one axis fewer it
    applies to every channel of the last axis). Padded values, NaN included, contribute exactly 0.
    """
    if mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)
    return torch.where(mask, x, torch.zeros_like(x)).sum(dim)


def masked_count(mask: torch.Tensor, dim: int, like: torch.Tensor) -> torch.Tensor:
    """Number of True entries of ``mask`` along ``dim`` (keepdim), at least 1, in ``like``'s dtype."""
    return mask.to(like.dtype).sum(dim, keepdim=True).clamp(min=1.0)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``mask`` is True (0 where nothing is real); mask as in :func:`masked_sum`."""
    if mask.dim() < x.dim():
        mask = mask.unsqueeze(-1)
    total = torch.where(mask, x, torch.zeros_like(x)).sum(dim)
    count = mask.to(x.dtype).sum(dim).clamp(min=1.0)
    return total / count


def diagonal_mask(n: int, device: torch.device) -> torch.Tensor:
    """[N, N] bool identity, built by comparison (ONNX Runtime has no boolean EyeLike)."""
    index = torch.arange(n, device=device)
    return index.unsqueeze(1) == index.unsqueeze(0)


def pair_mask(mask: torch.Tensor, include_self: bool = True) -> torch.Tensor:
    """[B, N] bool → [B, N, N] bool, True where both i and j are real (and i ≠ j unless ``include_self``)."""
    pairs = mask.unsqueeze(-1) & mask.unsqueeze(-2)
    if not include_self:
        pairs = pairs & ~diagonal_mask(mask.shape[-1], mask.device)
    return pairs


# ----------------------------------------------------------------------------- invariants


def jet_p4(p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The jet four-momentum, sum of real constituents: [B, N, 4] GeV → [B, 4] GeV."""
    return masked_sum(p4, mask, dim=1)


def longitudinal_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """L(a, b) = ⟨a, t⟩⟨b, t⟩ − ⟨a, z⟩⟨b, z⟩ = a⁰b⁰ − a³b³ over the last axis: [..., 4] × [..., 4] → [...].

    Invariant under z-boosts and z-rotations only; L(p, p) = E² − pz² = pT² + m² (transverse mass²).
    """
    return a[..., 0] * b[..., 0] - a[..., 3] * b[..., 3]


def transverse_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """T(a, b) = a¹b¹ + a²b² = L(a, b) − ⟨a, b⟩ over the last axis: [..., 4] × [..., 4] → [...].

    Invariant under z-boosts and z-rotations only. With beam reference, (L, T) carry the same
    information as (L, ⟨a, b⟩) but are better conditioned: a z-boost leaves px, py untouched, so
    T of float32 inputs is exact, while ⟨a, b⟩ = L − T of a collinear pair cancels and inherits
    L's rounding at large rapidity.
    """
    return a[..., 1] * b[..., 1] + a[..., 2] * b[..., 2]


def pair_invariants(x: torch.Tensor, beam_reference: bool = False) -> torch.Tensor:
    """Pairwise invariants of dimensionless vectors ``x`` [B, N, 4] → [B, N, N, 2] (or 4).

    Without beam reference: ψ(⟨x_i − x_j⟩²), ψ(⟨x_i, x_j⟩). With it, each Minkowski product is
    split into its longitudinal and transverse parts (⟨a, b⟩ = L − T, see :func:`transverse_dot`):
    ψ(L(Δ, Δ)), ψ(T(Δ, Δ)), ψ(L(x_i, x_j)), ψ(T(x_i, x_j)) with Δ = x_i − x_j. The squared
    difference is taken from the difference vector itself, which loses less precision than
    m_i² + m_j² − 2⟨x_i, x_j⟩ for nearly collinear, nearly massless pairs.
    """
    x_i, x_j = x.unsqueeze(2), x.unsqueeze(1)
    diff = x_i - x_j
    if beam_reference:
        channels = [
            longitudinal_dot(diff, diff),
            transverse_dot(diff, diff),
            longitudinal_dot(x_i, x_j),
            transverse_dot(x_i, x_j),
        ]
    else:
        channels = [minkowski_norm2(diff), pairwise_dot(x)]
    return psi(torch.stack(channels, dim=-1))


class InvariantEmbedding(nn.Module):
    """Per-constituent Lorentz-invariant features, no trainable weights.

    ``forward(p4 [B, N, 4] GeV, mask [B, N])`` → [B, N, n_features] with, in order:
    ψ(m_i² / s²), ψ(⟨p_i, J⟩ / s²) with J the jet four-momentum; when ``beam_reference``, each
    product is split into longitudinal and transverse parts instead (:func:`transverse_dot`):
    ψ(L(p_i, p_i) / s²) = ψ(m_T,i² / s²), ψ(T(p_i, p_i) / s²) = ψ(pT,i² / s²), ψ(L(p_i, J) / s²),
    ψ(T(p_i, J) / s²); ``s`` = ``scale_gev``.
    Padded rows are exactly 0.
    """

    def __init__(self, *, scale_gev: float, beam_reference: bool = False):
        super().__init__()
        if not scale_gev > 0:
            raise InvalidInputError(f"InvariantEmbedding: scale_gev must be > 0, got {scale_gev}")
        self.scale_gev = float(scale_gev)
        self.beam_reference = beam_reference
        self.n_features = 4 if beam_reference else 2

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = masked_p4(p4, mask) / self.scale_gev
        jet = jet_p4(x, mask).unsqueeze(1)
        if self.beam_reference:
            features = [longitudinal_dot(x, x), transverse_dot(x, x), longitudinal_dot(x, jet), transverse_dot(x, jet)]
        else:
            features = [minkowski_norm2(x), minkowski_dot(x, jet)]
        out = psi(torch.stack(features, dim=-1))
        return torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out))
