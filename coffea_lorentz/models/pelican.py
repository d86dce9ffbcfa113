"""``pelican``: PELICAN, a permutation-equivariant network on pairwise dot products (Bogatskiy et al. 2022,
arXiv:2211.00454).

The input is the matrix d_ij = ⟨p_i, p_j⟩ / scale_gev², compressed by ψ: every function of it is
Lorentz invariant, so the network only has to respect permutations. Hidden layers are the linear
permutation-equivariant maps of rank-2 tensors (the 15-element basis: identity, transpose,
row/column means and the diagonal broadcast along rows, columns or onto the diagonal, trace and
total mean broadcast everywhere or onto the diagonal), with means taken over real constituents so
the maps do not depend on padding. The readout uses the two rank-2 → rank-0 maps, trace and total mean.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .layers import MLP, check_inputs, diagonal_mask, longitudinal_dot, masked_count, pair_mask, resolve_config
from .minkowski import masked_p4, pairwise_dot, psi

__all__ = ["PELICAN", "PELICANConfig", "PRESETS", "Equivariant2to2", "equivariant_2to0", "diagonal_entries"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PELICANConfig:
    """PELICAN hyper-parameters.

    ``scale_gev``: d_ij = ⟨p_i, p_j⟩ / scale_gev² before ψ (100 GeV, about a fat-jet mass).
    ``channels``: width of the rank-2 hidden tensors; ``n_layers``: equivariant blocks.
    """

    n_classes: int = 2
    beam_reference: bool = False
    channels: int = 24
    n_layers: int = 4
    scale_gev: float = 100.0


#: ``size`` presets: compact ≈ 38k parameters (CPU), large ≈ 300k (GPU).
PRESETS: dict[str, dict[str, int]] = {
    "compact": {"channels": 24, "n_layers": 4},
    "large": {"channels": 56, "n_layers": 6},
}


def diagonal_entries(t: torch.Tensor) -> torch.Tensor:
    """t_ii of a rank-2 tensor: [B, N, N, C] → [B, N, C].

    A strided slice of the flattened pairs rather than ``torch.diagonal``, whose ONNX export gets
    its output shapes wrong.
    """
    n_constituents = t.shape[1]
    return t.reshape(t.shape[0], n_constituents * n_constituents, t.shape[3])[:, :: n_constituents + 1, :]


class Equivariant2to2(nn.Module):
    """Linear permutation-equivariant map of rank-2 tensors: [B, N, N, n_in] → [B, N, N, n_out].

    ``t`` must be exactly zero outside ``pairs`` = (real i) & (real j); ``mask`` [B, N] bool.
    The 15 basis maps are applied as five linear layers on low-rank summaries rather than on 15
    stacked copies of ``t``: the full [B, N, N] cost is two matrix products (``t`` and its transpose).
    Means are over real constituents: rows/columns divide by n, the total by n², the trace by n.
    The output is exactly zero outside ``pairs``.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.from_entry = nn.Linear(n_in, n_out)  # t_ij, with the off-diagonal bias
        self.from_transpose = nn.Linear(n_in, n_out, bias=False)  # t_ji
        self.rows = nn.Linear(3 * n_in, n_out, bias=False)  # row mean_i, column mean_i, t_ii, broadcast along j
        self.columns = nn.Linear(3 * n_in, n_out, bias=False)  # the same three taken at j, broadcast along i
        self.everywhere = nn.Linear(2 * n_in, n_out, bias=False)  # total mean, trace mean
        self.diagonal = nn.Linear(5 * n_in, n_out)  # t_ii, row mean_i, column mean_i, total, trace, on i = j

    def forward(self, t: torch.Tensor, mask: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        n = masked_count(mask, 1, t)  # [B, 1]
        diag = diagonal_entries(t)  # [B, N, C]
        row_sum = t.sum(2)  # [B, N, C]
        column_sum = t.sum(1)
        row_mean = row_sum / n.unsqueeze(-1)
        column_mean = column_sum / n.unsqueeze(-1)
        total_mean = row_sum.sum(1) / (n * n)  # [B, C]
        trace_mean = diag.sum(1) / n
        by_node = torch.cat([row_mean, column_mean, diag], dim=-1)  # [B, N, 3C]
        global_terms = torch.cat([total_mean, trace_mean], dim=-1)  # [B, 2C]
        n_constituents = t.shape[1]
        diagonal_terms = torch.cat(
            [diag, row_mean, column_mean, global_terms.unsqueeze(1).expand(-1, n_constituents, -1)], dim=-1
        )
        out = (
            self.from_entry(t)
            + self.from_transpose(t).transpose(1, 2)
            + self.rows(by_node).unsqueeze(2)
            + self.columns(by_node).unsqueeze(1)
            + self.everywhere(global_terms)[:, None, None, :]
        )
        eye = diagonal_mask(n_constituents, t.device)[None, :, :, None]
        out = out + torch.where(eye, self.diagonal(diagonal_terms).unsqueeze(2), torch.zeros_like(out))
        return torch.where(pairs.unsqueeze(-1), out, torch.zeros_like(out))


def equivariant_2to0(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The two permutation-invariant linear maps of rank-2 tensors, as masked means.

    ``t`` [B, N, N, C], zero outside real pairs → [B, 2C]: (total mean over n², trace mean over n).
    """
    n = masked_count(mask, 1, t)  # [B, 1]
    diag = diagonal_entries(t)
    return torch.cat([t.sum(2).sum(1) / (n * n), diag.sum(1) / n], dim=-1)


class PELICANBlock(nn.Module):
    """Entry-wise message, equivariant aggregation, residual: [B, N, N, C] → [B, N, N, C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.message = nn.Sequential(nn.Linear(channels, channels), nn.SiLU())
        self.aggregate = Equivariant2to2(channels, channels)

    def forward(self, t: torch.Tensor, mask: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
        messages = self.message(t)
        messages = torch.where(pairs.unsqueeze(-1), messages, torch.zeros_like(messages))
        return t + self.aggregate(messages, mask, pairs)


class PELICAN(nn.Module):
    """PELICAN tagger: ``forward(p4 [B, N, 4] GeV, mask [B, N] bool) → logits [B, n_classes]``.

    Input channels per pair: ψ(⟨p_i, p_j⟩ / s²) and, with ``beam_reference=True``,
    ψ(L(p_i, p_j) / s²) where L(a, b) = a⁰b⁰ − a³b³ carries the time and beam spurions in the one
    combination that z-boosts and z-rotations leave unchanged (:func:`.layers.longitudinal_dot`).

    >>> import torch
    >>> model = PELICAN()
    >>> model(torch.rand(2, 5, 4) + torch.tensor([3.0, 0, 0, 0]), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 2])
    """

    def __init__(self, *, n_classes: int = 2, size: str = "compact", beam_reference: bool = False, **options):
        super().__init__()
        config = resolve_config(
            PELICANConfig, PRESETS, size=size, where="pelican", n_classes=n_classes, beam_reference=beam_reference, **options
        )
        self.config = config
        self.invariance = "z_boost_rotation" if beam_reference else "lorentz"
        self.beam_reference = beam_reference
        self.scale_gev = float(config.scale_gev)
        n_inputs = 2 if beam_reference else 1
        self.embed = Equivariant2to2(n_inputs, config.channels)
        self.blocks = nn.ModuleList([PELICANBlock(config.channels) for _ in range(config.n_layers)])
        self.decoder = MLP(2 * config.channels, config.channels, n_classes)

    def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        check_inputs(p4, mask)
        x = masked_p4(p4, mask) / self.scale_gev
        pairs = pair_mask(mask, True)
        channels = [psi(pairwise_dot(x))]
        if self.beam_reference:
            channels.append(psi(longitudinal_dot(x.unsqueeze(2), x.unsqueeze(1))))
        t = torch.stack(channels, dim=-1)
        t = torch.where(pairs.unsqueeze(-1), t, torch.zeros_like(t))
        t = self.embed(t, mask, pairs)
        for block in self.blocks:
            t = block(t, mask, pairs)
        return self.decoder(equivariant_2to0(t, mask))
