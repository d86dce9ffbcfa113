"""``lorentznet``: LorentzNet, a Lorentz-group-equivariant graph network (Gong et al. 2022, arXiv:2201.08187).

Each Lorentz group equivariant block (LGEB) updates scalars h_i and four-vectors x_i:

    m_ij   = φ_e(h_i, h_j, ψ(⟨x_i − x_j⟩²), ψ(⟨x_i, x_j⟩))
    x_i   ← x_i + c · Σ_j φ_x(m_ij) x_j
    h_i   ← h_i + φ_h(h_i, mean_j σ(φ_m(m_ij)) m_ij)

with the sums over real constituents j ≠ i only. Scalars enter through invariants alone, and x
changes only by adding invariant multiples of four-vectors, so logits are Lorentz invariant.
The readout averages h over real constituents and decodes it to logits.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .layers import (
    PairTagger,
    MLP,
    InvariantEmbedding,
    masked_mean,
    pair_invariants,
    pair_mask,
)
from .minkowski import masked_p4

__all__ = ["LorentzNet", "LorentzNetConfig", "PRESETS"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LorentzNetConfig:
    """LorentzNet hyper-parameters.

    ``scale_gev``: four-momenta enter as x = p4 / scale_gev, so invariants are in units of scale_gev²;
    100 GeV (about a fat-jet mass) keeps the float32 rounding of near-lightlike invariants small.
    ``coordinate_weight``: c in the x update. ``hidden``: width of h and of the messages.
    ``pairs_per_chunk``: on a CPU, run the batch in chunks of about this many constituent pairs
    (results are the same; large batches run faster); 0 runs every batch whole, as on a GPU.
    """

    hidden: int = 32
    n_layers: int = 4
    coordinate_weight: float = 1e-3
    scale_gev: float = 100.0
    pairs_per_chunk: int = 65536


#: ``size`` presets: compact ≈ 27k parameters (CPU), large ≈ the published 72-wide, 6-block net.
PRESETS: dict[str, dict[str, int]] = {
    "compact": {"hidden": 32, "n_layers": 4},
    "large": {"hidden": 72, "n_layers": 6},
}


class LGEB(nn.Module):
    """One Lorentz group equivariant block.

    ``h`` [B, N, hidden], ``x`` [B, N, 4] dimensionless, ``node_mask`` [B, N] bool, ``edge_mask``
    [B, N, N] bool → (``h``, ``x``) of the same shapes; padded nodes come out exactly zero.
    """

    def __init__(self, hidden: int, *, coordinate_weight: float, update_x: bool = True, beam_reference: bool = False):
        super().__init__()
        self.beam_reference = beam_reference
        # φ_e's first linear layer on cat(h_i, h_j, invariants), split so the [B, N, N, 2h+2] concat is never built
        self.edge_from_i = nn.Linear(hidden, hidden)
        self.edge_from_j = nn.Linear(hidden, hidden, bias=False)
        self.edge_from_invariants = nn.Linear(4 if beam_reference else 2, hidden, bias=False)
        self.edge_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        # φ_m (attention weight, before the sigmoid) and φ_x (coordinate weight) read m_ij with one product
        self.edge_heads = nn.Linear(hidden, 2)
        self.node_update = MLP(2 * hidden, hidden, hidden)
        self.update_x = update_x
        self.coordinate_weight = coordinate_weight

    def forward(
        self, h: torch.Tensor, x: torch.Tensor, node_mask: torch.Tensor, edge_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # the [B, N, N, hidden] tensors dominate the cost: build them in place, contract them with bmm
        pre = self.edge_from_invariants(pair_invariants(x, self.beam_reference))
        pre += self.edge_from_i(h).unsqueeze(2)
        pre += self.edge_from_j(h).unsqueeze(1)
        messages = self.edge_out(pre)  # m_ij [B, N, N, hidden]
        heads = self.edge_heads(messages)  # [B, N, N, 2]
        zeros = torch.zeros_like(heads[..., 0])
        weights = torch.where(edge_mask, torch.sigmoid(heads[..., 0]), zeros)
        n_neighbours = edge_mask.to(h.dtype).sum(-1, keepdim=True).clamp(min=1.0)
        aggregated = torch.einsum("bij,bijh->bih", weights, messages) / n_neighbours  # [B, N, hidden]
        h = h + self.node_update(torch.cat([h, aggregated], dim=-1))
        if self.update_x:
            phi_x = torch.where(edge_mask, heads[..., 1], zeros)  # [B, N, N]
            x = x + self.coordinate_weight * torch.einsum("bij,bjd->bid", phi_x, x)
        h = torch.where(node_mask.unsqueeze(-1), h, torch.zeros_like(h))
        x = torch.where(node_mask.unsqueeze(-1), x, torch.zeros_like(x))
        return h, x


class LorentzNet(PairTagger, name="lorentznet", config=LorentzNetConfig, presets=PRESETS):
    """LorentzNet tagger: ``forward(p4 [B, N, 4] GeV, mask [B, N] bool) → logits [B, n_classes]``.

    Node scalars start from ψ(m_i²/s²) and ψ(⟨p_i, J⟩/s²) (J = jet four-momentum, s = ``scale_gev``).
    With ``beam_reference=True`` the time (1,0,0,0) and beam (0,0,0,1) spurions enter by splitting
    every Minkowski product into its longitudinal part L(a, b) = a⁰b⁰ − a³b³ and transverse part
    T(a, b) = a¹b¹ + a²b² (:func:`.layers.transverse_dot`), in the node scalars and in every block's
    edge invariants, so the logits are exactly invariant under z-boosts and z-rotations only.

    >>> import torch
    >>> model = LorentzNet()
    >>> model(torch.rand(2, 5, 4) + torch.tensor([3.0, 0, 0, 0]), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 2])
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        self.scale_gev = float(config.scale_gev)
        self.embedding = InvariantEmbedding(scale_gev=config.scale_gev, beam_reference=self.beam_reference)
        self.encoder = nn.Linear(self.embedding.n_features, config.hidden)
        self.blocks = nn.ModuleList(
            [
                LGEB(
                    config.hidden,
                    coordinate_weight=config.coordinate_weight,
                    update_x=index < config.n_layers - 1,
                    beam_reference=self.beam_reference,
                )
                for index in range(config.n_layers)
            ]
        )
        self.decoder = MLP(config.hidden, config.hidden, self.n_classes)

    def logits(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass on one chunk: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] → [B, n_classes]."""
        x = masked_p4(p4, mask) / self.scale_gev
        h = self.encoder(self.embedding(p4, mask))
        h = torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h))
        edge_mask = pair_mask(mask, False)
        for block in self.blocks:
            h, x = block(h, x, mask, edge_mask)
        pooled = masked_mean(h, mask, dim=1)
        return self.decoder(pooled)
