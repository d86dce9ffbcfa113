"""``lorentz_transformer``: a transformer whose attention sees only Lorentz invariants.

Each block

- biases the attention logits QKᵀ with a learned function of invariant pair quantities,
  ψ(⟨x_i − x_j⟩²) and ψ(⟨x_i, x_j⟩), of the current coordinates x = p4 / ``scale_gev``;
- updates particle features with softmax(QKᵀ/√d + bias) V (features are Lorentz scalars);
- updates coordinates equivariantly, x̂_i = Σ_j softmax_j(MLP(pair features))_ij x_j, a convex
  combination of four-vectors.

Features start from invariants only (ψ of masses and of ⟨x_i, X_jet⟩), so the logits are
invariant under the proper orthochronous Lorentz group.

With ``beam_reference=True`` the time and beam spurions t = (1, 0, 0, 0), z = (0, 0, 0, 1) enter
through the projection onto their plane, x∥ = ⟨x, t⟩ t − ⟨x, z⟩ z = (E, 0, 0, pz) / ``scale_gev``;
every invariant gains its ∥ partner (⟨x_i∥, x_j∥⟩ = (E_i E_j − pz_i pz_j) / scale²). The plane is
kept by boosts along z and rotations about z, so the logits are invariant under exactly those.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InvalidInputError
from .base import resolve_config
from .layers import PairTagger
from .minkowski import beam_reference_vectors, masked_p4, minkowski_dot, pairwise_dot, psi

__all__ = [
    "LorentzTransformerConfig",
    "LorentzTransformer",
    "PRESETS",
    "preset",
    "beam_plane_projection",
    "pair_invariants",
]

#: Added to attention logits of padded keys; exp of it underflows to exactly 0 in float32/64.
_MASKED_LOGIT = -1.0e30


@dataclass(frozen=True, kw_only=True)
class LorentzTransformerConfig:
    """Hyper-parameters of :class:`LorentzTransformer`.

    ``scale_gev`` divides every four-vector before invariants are formed (GeV), so invariants
    are dimensionless and O(1) for constituents of O(``scale_gev``) energy.
    ``invariants_float64``: keep coordinates and form invariants in float64 whatever the model
    dtype; in float32, E_i E_j − p⃗_i·p⃗_j of collinear, boosted constituents loses ~1e-4 relative.
    ``pairs_per_chunk``: on a CPU, run the batch in chunks of about this many constituent pairs
    (results are the same; large batches run faster); 0 runs every batch whole, as on a GPU.
    """

    hidden: int = 32
    n_heads: int = 4
    n_blocks: int = 3
    pair_hidden: int = 24
    ffn_factor: int = 2
    scale_gev: float = 100.0
    invariants_float64: bool = True
    pairs_per_chunk: int = 65536


#: ``size`` presets: compact ≤ 50k parameters (CPU), large for a GPU.
PRESETS = types.MappingProxyType(
    {
        "compact": types.MappingProxyType({}),
        "large": types.MappingProxyType(
            {"hidden": 128, "n_heads": 8, "n_blocks": 6, "pair_hidden": 64, "ffn_factor": 4}
        ),
    }
)


def preset(size: str) -> LorentzTransformerConfig:
    """The ``"compact"`` (≤ 50k parameters, CPU) or ``"large"`` (GPU) configuration."""
    return resolve_config(LorentzTransformerConfig, PRESETS, size=size, where="lorentz_transformer")


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.SiLU(), nn.Linear(n_hidden, n_out))


def beam_plane_projection(x: torch.Tensor) -> torch.Tensor:
    """x∥ = ⟨x, t⟩ t − ⟨x, z⟩ z, the part of x [..., 4] in the plane of the time and beam spurions."""
    reference = beam_reference_vectors(x)
    time, beam = reference[0], reference[1]
    return minkowski_dot(x, time).unsqueeze(-1) * time - minkowski_dot(x, beam).unsqueeze(-1) * beam


def pair_invariants(x: torch.Tensor, beam_reference: bool) -> torch.Tensor:
    """Invariant pair features of dimensionless four-vectors x [B, T, 4] → [B, T, T, F].

    F = 2: ψ(⟨x_i − x_j⟩²), ψ(⟨x_i, x_j⟩); F = 3 with ``beam_reference``: also ψ(⟨x_i∥, x_j∥⟩).
    """
    diff = x.unsqueeze(2) - x.unsqueeze(1)  # from the difference itself: no m² + m² − 2⟨⟩ cancellation
    features = [psi(minkowski_dot(diff, diff)), psi(pairwise_dot(x))]
    if beam_reference:
        features.append(psi(pairwise_dot(beam_plane_projection(x))))
    return torch.stack(features, dim=-1)


class InvariantAttentionBlock(nn.Module):
    """One block: invariant-biased attention on features, convex-combination update of coordinates.

    ``h`` [B, N, hidden] Lorentz scalars, ``x`` [B, N, 4] dimensionless four-vectors, ``mask``
    [B, N] bool (True = real constituent) → (h, x) of the same shapes. Padded entries keep h = 0
    and x unchanged.
    """

    def __init__(self, hidden: int, n_heads: int, pair_hidden: int, ffn_factor: int, beam_reference: bool):
        super().__init__()
        self.beam_reference = beam_reference
        self.masked_logit = _MASKED_LOGIT
        self.n_heads = n_heads
        self.head_dim = hidden // n_heads
        self.norm_attention = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.pair_mlp = _mlp(3 if beam_reference else 2, pair_hidden, n_heads + 1)
        self.norm_ffn = nn.LayerNorm(hidden)
        self.ffn = _mlp(hidden, ffn_factor * hidden, hidden)

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n_batch, n_tokens, hidden = h.shape
        pair = self.pair_mlp(pair_invariants(x, self.beam_reference).to(h.dtype))  # [B, N, N, heads + 1]
        key_mask = mask.unsqueeze(1)  # [B, 1, N]

        q, k, v = self.qkv(self.norm_attention(h)).chunk(3, dim=-1)
        q = q.reshape(n_batch, n_tokens, self.n_heads, self.head_dim)
        k = k.reshape(n_batch, n_tokens, self.n_heads, self.head_dim)
        v = v.reshape(n_batch, n_tokens, self.n_heads, self.head_dim)
        logits = torch.einsum("bihd,bjhd->bhij", q, k) / (self.head_dim**0.5)
        logits = logits + pair[..., : self.n_heads].permute(0, 3, 1, 2)
        logits = torch.where(key_mask.unsqueeze(1), logits, torch.full_like(logits, self.masked_logit))
        weights = torch.softmax(logits, dim=-1)
        update = torch.einsum("bhij,bjhd->bihd", weights, v).reshape(n_batch, n_tokens, hidden)
        h = h + self.out(update)
        h = h + self.ffn(self.norm_ffn(h))
        h = torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h))

        coord_logits = pair[..., self.n_heads]
        coord_logits = torch.where(key_mask, coord_logits, torch.full_like(coord_logits, self.masked_logit))
        x_new = torch.einsum("bij,bjd->bid", torch.softmax(coord_logits, dim=-1).to(x.dtype), x)
        x = torch.where(mask.unsqueeze(-1), x_new, x)
        return h, x


class LorentzTransformer(PairTagger, name="lorentz_transformer", config=LorentzTransformerConfig, presets=PRESETS):
    """Invariant-attention transformer tagger.

    ``forward(p4, mask)``: ``p4`` [B, N, 4] (E, px, py, pz) GeV, ``mask`` [B, N] bool
    (True = real constituent) → logits [B, n_classes]. Options are the fields of
    :class:`LorentzTransformerConfig` (e.g. ``scale_gev=100.0``, ``hidden=32``).
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        if config.hidden % config.n_heads != 0:
            raise InvalidInputError(
                f"lorentz_transformer: hidden={config.hidden} must be a multiple of n_heads={config.n_heads}"
            )
        if not config.scale_gev > 0:
            raise InvalidInputError(f"lorentz_transformer: scale_gev must be > 0 GeV, got {config.scale_gev}")
        self.scale_gev = float(config.scale_gev)
        self.invariants_float64 = bool(config.invariants_float64)
        hidden = config.hidden
        # inputs per constituent: ψ(x²), ψ(⟨x, X_jet⟩) (+ their ∥ partners with beam_reference)
        n_features = 4 if self.beam_reference else 2
        self.embed = _mlp(n_features, hidden, hidden)
        self.blocks = nn.ModuleList(
            [
                InvariantAttentionBlock(
                    hidden, config.n_heads, config.pair_hidden, config.ffn_factor, self.beam_reference
                )
                for _ in range(config.n_blocks)
            ]
        )
        self.norm_out = nn.LayerNorm(hidden)
        self.head = _mlp(hidden + n_features // 2, hidden, self.n_classes)

    def logits(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass on one chunk: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] bool → [B, n_classes]."""
        invariant_dtype = torch.float64 if self.invariants_float64 else p4.dtype
        x = masked_p4(p4, mask).to(invariant_dtype) / self.scale_gev  # [B, N, 4], dimensionless
        jet = x.sum(dim=1, keepdim=True)  # [B, 1, 4]
        features = [psi(minkowski_dot(x, x)), psi(minkowski_dot(x, jet))]
        jet_features = [psi(minkowski_dot(jet, jet))]
        if self.beam_reference:
            x_par, jet_par = beam_plane_projection(x), beam_plane_projection(jet)
            features += [psi(minkowski_dot(x_par, x_par)), psi(minkowski_dot(x_par, jet_par))]
            jet_features.append(psi(minkowski_dot(jet_par, jet_par)))
        h = self.embed(torch.stack(features, dim=-1).to(p4.dtype))
        h = torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h))
        for block in self.blocks:
            h, x = block(h, x, mask)

        weight = mask.to(h.dtype).unsqueeze(-1)
        pooled = (self.norm_out(h) * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
        return self.head(torch.cat([pooled, torch.cat(jet_features, dim=-1).to(p4.dtype)], dim=-1))
