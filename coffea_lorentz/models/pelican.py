"""``pelican``: PELICAN, a permutation-equivariant network on pairwise dot products (Bogatskiy et al. 2022,
arXiv:2211.00454).

The input is the matrix of dot products ⟨p_i, p_j⟩ in GeV², read at a few learnable scales s_k as
ψ(⟨p_i, p_j⟩ / s_k²) (:class:`PairInputEmbedding`): every function of it is Lorentz invariant, so
the network only has to respect permutations. The scales matter: constituents of a boosted jet are
nearly collinear, so their dot products span about 10⁻⁴ to 10³ GeV², and one fixed scale of 100 GeV
maps nearly all of them to ψ ≈ 0, leaving the per-jet signal orders of magnitude below the biases
(logits then hardly vary across jets and training stays at ln 2). The default scales, 16 and 64 GeV,
are learnt from there. Smaller ones resolve the collinear pairs better but amplify rounding: after
a boost of rapidity 4, float64 dot products of ~10⁵ GeV constituents carry ~10⁻⁶ GeV² of rounding,
and the float64 invariance test (relative logit change < 10⁻⁹) needs the smallest scale ≳ 12 GeV.

Hidden layers are the linear permutation-equivariant maps of rank-2 tensors (the 15-element basis: identity, transpose,
row/column means and the diagonal broadcast along rows, columns or onto the diagonal, trace and
total mean broadcast everywhere or onto the diagonal), with means taken over real constituents so
the maps do not depend on padding. The readout uses the two rank-2 → rank-0 maps, trace and total mean.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .layers import (
    PairTagger,
    MLP,
    diagonal_mask,
    longitudinal_dot,
    masked_count,
    pair_mask,
    transverse_dot,
)
from ..errors import InvalidInputError
from .minkowski import masked_p4, pairwise_dot, psi

__all__ = [
    "PELICAN",
    "PELICANConfig",
    "PRESETS",
    "PairInputEmbedding",
    "Equivariant2to2",
    "equivariant_2to0",
    "diagonal_entries",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PELICANConfig:
    """PELICAN hyper-parameters.

    ``scales_gev``: initial scales s_k of the input channels ψ(⟨p_i, p_j⟩ / s_k²), in GeV, each
    learnt from there (one channel per scale and per invariant). With one scale of 100 GeV the
    dot products of a boosted jet's constituents (about 10⁻⁴ to 10³ GeV²) all map to ψ ≈ 0 and
    the network does not learn; below ~12 GeV float64 rounding after large boosts shows up.
    ``channels``: width of the rank-2 hidden tensors; ``n_layers``: equivariant blocks.
    ``pairs_per_chunk``: on a CPU, run the batch in chunks of about this many constituent pairs
    (results are the same; large batches run faster); 0 runs every batch whole, as on a GPU.
    """

    channels: int = 24
    n_layers: int = 4
    scales_gev: tuple[float, ...] = (16.0, 64.0)
    pairs_per_chunk: int = 65536


#: ``size`` presets: compact ≈ 39k parameters (CPU), large ≈ 300k (GPU).
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

    ``mask`` [B, N] bool; ``pair_weights`` [B, N, N] in ``t``'s dtype, 1 where i and j are both real
    and 0 elsewhere. Entries of ``t`` outside real pairs may hold any finite value: every sum
    weights them by 0, and the output there is finite and never read by a real entry.
    The 15 basis maps are applied as linear layers on low-rank summaries rather than on 15 stacked
    copies of ``t``: the full [B, N, N] cost is one matrix product, a transposed add and two masked
    contractions. Means are over real constituents: rows/columns divide by n, the total by n², the
    trace by n.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.n_out = n_out
        self.from_entry = nn.Linear(n_in, 2 * n_out)  # t_ij and t_ji, with the off-diagonal bias
        self.rows = nn.Linear(3 * n_in, n_out, bias=False)  # row mean_i, column mean_i, t_ii, broadcast along j
        self.columns = nn.Linear(3 * n_in, n_out, bias=False)  # the same three taken at j, broadcast along i
        self.everywhere = nn.Linear(2 * n_in, n_out, bias=False)  # total mean, trace mean
        self.diagonal = nn.Linear(5 * n_in, n_out)  # t_ii, row mean_i, column mean_i, total, trace, on i = j

    def forward(self, t: torch.Tensor, mask: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
        n_constituents = t.shape[1]
        n = masked_count(mask, 1, t)  # [B, 1]
        diag = diagonal_entries(t)  # [B, N, C]
        diag = torch.where(mask.unsqueeze(-1), diag, torch.zeros_like(diag))
        row_sum = torch.einsum("bij,bijc->bic", pair_weights, t)  # [B, N, C]
        column_sum = torch.einsum("bij,bijc->bjc", pair_weights, t)
        row_mean = row_sum / n.unsqueeze(-1)
        column_mean = column_sum / n.unsqueeze(-1)
        total_mean = row_sum.sum(1) / (n * n)  # [B, C]
        trace_mean = diag.sum(1) / n
        by_node = torch.cat([row_mean, column_mean, diag], dim=-1)  # [B, N, 3C]
        global_terms = torch.cat([total_mean, trace_mean], dim=-1)  # [B, 2C]
        diagonal_terms = torch.cat(
            [diag, row_mean, column_mean, global_terms.unsqueeze(1).expand(-1, n_constituents, -1)], dim=-1
        )
        both = self.from_entry(t)
        out = both[..., : self.n_out] + both[..., self.n_out :].transpose(1, 2)
        out += (self.rows(by_node) + self.everywhere(global_terms).unsqueeze(1)).unsqueeze(2)
        out += self.columns(by_node).unsqueeze(1)
        eye = diagonal_mask(n_constituents, t.device).unsqueeze(-1)  # [N, N, 1]
        return torch.where(eye, out + self.diagonal(diagonal_terms).unsqueeze(2), out)


def equivariant_2to0(t: torch.Tensor, mask: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
    """The two permutation-invariant linear maps of rank-2 tensors, as masked means.

    ``t`` [B, N, N, C], ``pair_weights`` as in :class:`Equivariant2to2` → [B, 2C]:
    (total mean over n², trace mean over n).
    """
    n = masked_count(mask, 1, t)  # [B, 1]
    diag = diagonal_entries(t)
    trace = torch.where(mask.unsqueeze(-1), diag, torch.zeros_like(diag)).sum(1)
    total = torch.einsum("bij,bijc->bc", pair_weights, t)
    return torch.cat([total / (n * n), trace / n], dim=-1)


class PairInputEmbedding(nn.Module):
    """ψ of pairwise invariants at learnable scales: [B, N, N, n_invariants] GeV² → [B, N, N, n_invariants·K].

    Channel (a, k) is ψ(d_a / s_k²) = ψ(d_a · exp(−2 log s_k)) for invariant a and scale k; the
    log-scales are parameters initialised at log ``scales_gev``, so the scales stay positive and
    the map stays exactly invariant (a rescaling of an invariant is still an invariant). Entries
    equal to 0 (padded pairs) stay exactly 0.
    """

    def __init__(self, scales_gev: tuple[float, ...]):
        super().__init__()
        if len(scales_gev) == 0 or not all(float(scale) > 0 for scale in scales_gev):
            raise InvalidInputError(f"pelican: scales_gev must be one or more positive scales, got {scales_gev!r}")
        self.n_scales = len(scales_gev)
        self.log_scales = nn.Parameter(torch.log(torch.tensor([float(scale) for scale in scales_gev])))

    def forward(self, invariants_gev2: torch.Tensor) -> torch.Tensor:
        inverse_scale2 = torch.exp(-2.0 * self.log_scales).to(invariants_gev2.dtype)  # [K] GeV⁻²
        scaled = invariants_gev2.unsqueeze(-1) * inverse_scale2  # [B, N, N, n_invariants, K]
        return psi(scaled).flatten(-2)


class PELICANBlock(nn.Module):
    """Entry-wise message, equivariant aggregation, residual: [B, N, N, C] → [B, N, N, C]."""

    def __init__(self, channels: int):
        super().__init__()
        self.message = nn.Sequential(nn.Linear(channels, channels), nn.SiLU())
        self.aggregate = Equivariant2to2(channels, channels)

    def forward(self, t: torch.Tensor, mask: torch.Tensor, pair_weights: torch.Tensor) -> torch.Tensor:
        return t + self.aggregate(self.message(t), mask, pair_weights)


class PELICAN(PairTagger, name="pelican", config=PELICANConfig, presets=PRESETS):
    """PELICAN tagger: ``forward(p4 [B, N, 4] GeV, mask [B, N] bool) → logits [B, n_classes]``.

    Input channels per pair: ψ(⟨p_i, p_j⟩ / s_k²) for the learnable scales s_k
    (:class:`PairInputEmbedding`). With ``beam_reference=True`` the time and beam
    spurions enter through the split ⟨p_i, p_j⟩ = L − T into its longitudinal part
    L = E_i E_j − pz_i pz_j and transverse part T = px_i px_j + py_i py_j, each invariant under
    z-boosts and z-rotations only; the channels are ψ(L / s_k²) and ψ(T / s_k²), which hold ⟨p_i, p_j⟩
    without its cancellation for collinear pairs (:func:`.layers.transverse_dot`).

    >>> import torch
    >>> model = PELICAN()
    >>> model(torch.rand(2, 5, 4) + torch.tensor([3.0, 0, 0, 0]), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 2])
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        self.inputs = PairInputEmbedding(tuple(config.scales_gev))
        n_invariants = 2 if self.beam_reference else 1
        self.embed = Equivariant2to2(n_invariants * self.inputs.n_scales, config.channels)
        self.blocks = nn.ModuleList([PELICANBlock(config.channels) for _ in range(config.n_layers)])
        self.decoder = MLP(2 * config.channels, config.channels, self.n_classes)

    def logits(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass on one chunk: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] → [B, n_classes]."""
        p4 = masked_p4(p4, mask)
        pair_weights = pair_mask(mask, True).to(p4.dtype)
        if self.beam_reference:
            p4_i, p4_j = p4.unsqueeze(2), p4.unsqueeze(1)
            invariants = [longitudinal_dot(p4_i, p4_j), transverse_dot(p4_i, p4_j)]
        else:
            invariants = [pairwise_dot(p4)]
        # [B, N, N, n_invariants] GeV², finite everywhere: p4 is exactly 0 for padded constituents
        t = self.inputs(torch.stack(invariants, dim=-1))
        t = self.embed(t, mask, pair_weights)
        for block in self.blocks:
            t = block(t, mask, pair_weights)
        return self.decoder(equivariant_2to0(t, mask, pair_weights))
