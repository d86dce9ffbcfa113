"""``baseline``: a particle transformer without Lorentz equivariance, the reference the equivariant taggers beat or not.

Each constituent is described relative to the jet axis J (the sum of real constituents) by
log(pT / s), log(E / s), log(pT / pT_J), log(E / E_J), Δη, Δφ and ΔR (s = ``scale_gev``);
masked multi-head self-attention layers mix the constituents and a class token, which is always
present, so attention never runs over an empty set. No positional information enters, so the
output is permutation invariant; every feature is unchanged by rotations about the beam axis, which
is the only symmetry it has (E and log E/E_J change under z-boosts).
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from ..errors import InvalidInputError
from .base import TaggerModel
from .layers import MLP, check_inputs, jet_p4
from .minkowski import masked_p4

__all__ = ["ParticleTransformer", "ParticleTransformerConfig", "PRESETS", "jet_frame_features"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ParticleTransformerConfig:
    """Transformer hyper-parameters.

    ``scale_gev``: unit of the log pT and log E features. ``min_pt_gev``: pT floor (GeV) used for
    logs and pseudorapidities, so a constituent along the beam or with zero energy stays finite.
    ``width``: token width; ``n_heads`` must divide it; ``ffn_factor``: hidden width of the
    feed-forward part in units of ``width``.
    """

    width: int = 32
    n_heads: int = 4
    n_layers: int = 3
    ffn_factor: int = 2
    scale_gev: float = 1.0
    min_pt_gev: float = 1e-3


#: ``size`` presets: compact ≈ 30k parameters (CPU), large ≈ 200k, like the large equivariant taggers.
PRESETS: dict[str, dict[str, int]] = {
    "compact": {"width": 32, "n_heads": 4, "n_layers": 3, "ffn_factor": 2},
    "large": {"width": 64, "n_heads": 4, "n_layers": 4, "ffn_factor": 4},
}

N_FEATURES = 7


def _pt_eta(p4: torch.Tensor, min_pt_gev: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pT (GeV, floored at ``min_pt_gev``) and pseudorapidity of [..., 4] → two [...] tensors."""
    pt = torch.sqrt(p4[..., 1] ** 2 + p4[..., 2] ** 2).clamp(min=min_pt_gev)
    ratio = p4[..., 3] / pt
    # asinh written out (precise near 0): ONNX has no aten::asinh export
    magnitude = ratio.abs()
    eta = torch.sign(ratio) * torch.log1p(magnitude + magnitude * magnitude / (1.0 + torch.sqrt(1.0 + magnitude * magnitude)))
    return pt, eta


def jet_frame_features(p4: torch.Tensor, mask: torch.Tensor, scale_gev: float, min_pt_gev: float) -> torch.Tensor:
    """Per-constituent features relative to the jet axis: [B, N, 4] GeV, [B, N] → [B, N, 7].

    (log pT/s, log E/s, log pT/pT_J, log E/E_J, Δη, Δφ, ΔR); padded rows are exactly 0. Δφ comes
    from atan2 of the transverse cross and dot products with the axis, so it needs no wrapping.
    """
    p4 = masked_p4(p4, mask)
    jet = jet_p4(p4, mask).unsqueeze(1)  # [B, 1, 4]

    pt, eta = _pt_eta(p4, min_pt_gev)
    jet_pt, jet_eta = _pt_eta(jet, min_pt_gev)
    energy = p4[..., 0].clamp(min=min_pt_gev)
    jet_energy = jet[..., 0].clamp(min=min_pt_gev)
    cross = jet[..., 1] * p4[..., 2] - jet[..., 2] * p4[..., 1]
    dot = jet[..., 1] * p4[..., 1] + jet[..., 2] * p4[..., 2]
    delta_phi = torch.atan2(cross, dot)
    delta_eta = eta - jet_eta
    features = torch.stack(
        [
            torch.log(pt / scale_gev),
            torch.log(energy / scale_gev),
            torch.log(pt / jet_pt),
            torch.log(energy / jet_energy),
            delta_eta,
            delta_phi,
            torch.sqrt(delta_eta**2 + delta_phi**2),
        ],
        dim=-1,
    )
    return torch.where(mask.unsqueeze(-1), features, torch.zeros_like(features))


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention over tokens [B, T, width] with key mask [B, T] bool → [B, T, width].

    Masked keys get exactly zero weight; every row must have at least one real key.
    """

    def __init__(self, width: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.head_width = width // n_heads
        self.qkv = nn.Linear(width, 3 * width)
        self.out = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        n_jets, n_tokens, width = tokens.shape
        qkv = self.qkv(tokens).reshape(n_jets, n_tokens, 3, self.n_heads, self.head_width).permute(2, 0, 3, 1, 4)
        query, key, value = qkv[0], qkv[1], qkv[2]  # [B, H, T, head_width]
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_width)
        scores = torch.where(key_mask[:, None, None, :], scores, torch.full_like(scores, -math.inf))
        attended = torch.softmax(scores, dim=-1) @ value
        return self.out(attended.transpose(1, 2).reshape(n_jets, n_tokens, width))


class TransformerBlock(nn.Module):
    """Pre-norm attention and feed-forward, both residual: [B, T, width] → [B, T, width]."""

    def __init__(self, width: int, n_heads: int, ffn_factor: int):
        super().__init__()
        self.norm_attention = nn.LayerNorm(width)
        self.attention = MaskedSelfAttention(width, n_heads)
        self.norm_ffn = nn.LayerNorm(width)
        self.ffn = MLP(width, ffn_factor * width, width)

    def forward(self, tokens: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attention(self.norm_attention(tokens), key_mask)
        return tokens + self.ffn(self.norm_ffn(tokens))


class ParticleTransformer(
    TaggerModel, name="baseline", config=ParticleTransformerConfig, presets=PRESETS, symmetry="z_rotation"
):
    """Non-equivariant transformer: ``forward(p4 [B, N, 4] GeV, mask [B, N] bool) → logits [B, n_classes]``.

    ``beam_reference`` is accepted for the common contract and changes nothing: the features are
    already measured relative to the beam axis. The class token's final state is decoded to logits.

    >>> import torch
    >>> model = ParticleTransformer()
    >>> model(torch.rand(2, 5, 4) + torch.tensor([3.0, 0, 0, 0]), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 2])
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        if config.width % config.n_heads != 0:
            raise InvalidInputError(f"baseline: width {config.width} is not divisible by n_heads {config.n_heads}")
        self.scale_gev = float(config.scale_gev)
        self.min_pt_gev = float(config.min_pt_gev)
        self.embed = MLP(N_FEATURES, 2 * config.width, config.width)
        self.class_token = nn.Parameter(0.02 * torch.randn(1, 1, config.width))
        self.blocks = nn.ModuleList(
            [TransformerBlock(config.width, config.n_heads, config.ffn_factor) for _ in range(config.n_layers)]
        )
        self.norm = nn.LayerNorm(config.width)
        self.head = nn.Linear(config.width, self.n_classes)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inputs(p4, mask)
        n_jets = p4.shape[0]
        features = jet_frame_features(p4, mask, self.scale_gev, self.min_pt_gev)
        tokens = self.embed(features)
        tokens = torch.where(mask.unsqueeze(-1), tokens, torch.zeros_like(tokens))
        tokens = torch.cat([self.class_token.expand(n_jets, 1, -1).to(tokens.dtype), tokens], dim=1)
        key_mask = torch.cat([torch.ones(n_jets, 1, dtype=torch.bool, device=mask.device), mask], dim=1)
        for block in self.blocks:
            tokens = block(tokens, key_mask)
        return self.head(self.norm(tokens[:, 0, :]))
