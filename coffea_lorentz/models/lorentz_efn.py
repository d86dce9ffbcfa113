"""``lorentz_efn``: a Lorentz-invariant energy flow network, after the Energy Flow Networks of
Komiske, Metodiev & Thaler (arXiv:1810.05165), with every input an invariant of the jet.

In the jet rest frame (J = Σ_i p_i, m_J² = ⟨J, J⟩) each constituent has the energy fraction and
each pair the opening-angle measure

    x_i  = ⟨p_i, J⟩ / ⟨J, J⟩                              (Σ_i x_i = 1)
    d_ij = ⟨p_i, p_j⟩ ⟨J, J⟩ / (⟨p_i, J⟩ ⟨p_j, J⟩)        (= 1 − cos θ*_ij for massless i, j)

both Lorentz invariant. Two sums read the jet:

    pair flow      F = Σ_{i≠j} x_i x_j Φ(log d_ij, ψ(⟨p_i, p_j⟩/s²))   (infrared and collinear safe)
    particle sum   S = Σ_i φ(log x_i, ψ(m_i²/s²), ψ(⟨p_i, J⟩/s²)) / n₀

and an MLP maps (F, S) to logits. With ``local_flow=True`` a third sum reads each constituent's
neighbourhood before summing, one message-passing step on the same kernel:

    local flow     L = Σ_i x_i χ(Σ_{j≠i} x_j Φ(log d_ij, ψ(⟨p_i, p_j⟩/s²)), log x_i, …)

with the pair kernel Φ of F (so F = Σ_i x_i Σ_{j≠i} x_j Φ is its linear part): a non-linear function
of the energy flow around each constituent, which sees three-point structure (prongs, the energy
sharing that soft drop and N-subjettiness measure) that the two-point F cannot. The pair flow is an energy-weighted two-point correlator with a
learnt angular kernel (jet mass, width, prong structure); the particle sum is deliberately not
IRC safe: unnormalised by the constituent count, it carries the multiplicity and the spectrum of
soft constituents, which is what a shower variation changes most. It is a small, fast network,
O(N²) with a one-input kernel, meant as the reweighting classifier and as a light tagger.

With ``jet_kinematics=True`` the readout also gets the jet's log(pT/s) and |η|, which breaks the
symmetry down to rotations about the beam axis (``invariance`` ``"z_rotation"``). That is for
reweighting, not tagging: detector acceptance makes the constituents a jet keeps depend on where it
points (fewer at large |η|), so the density ratio of two samples at fixed invariants still depends on
pT and η, and a classifier blind to them moves the η and pT distributions it should leave alone.

With ``beam_reference=True`` the particle features are split into longitudinal and transverse
parts (:class:`.layers.InvariantEmbedding`): invariant under z-boosts and z-rotations only.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..errors import InvalidInputError
from .layers import MLP, InvariantEmbedding, PairTagger, jet_p4, masked_sum, pair_mask
from .minkowski import masked_p4, minkowski_dot, minkowski_norm2, psi

__all__ = ["LorentzEFN", "LorentzEFNConfig", "PRESETS"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class LorentzEFNConfig:
    """Energy-flow network hyper-parameters.

    ``hidden``: width of the pair kernel Φ, the particle map φ and their sums. ``n_hidden_layers``:
    hidden layers of Φ and φ. ``scale_gev``: unit s of the dimensioned particle invariants.
    ``count_scale``: n₀, the particle sum's divisor (about a typical multiplicity, so S stays of
    order one while still growing with the count). ``min_invariant``: floor of x_i and d_ij
    before the logarithm (keeps padded, single-constituent and exactly collinear cases finite).
    ``pairs_per_chunk``: on a CPU, run the batch in chunks of about this many pairs; 0 = whole.
    ``local_flow``: add the local-flow sum L (module doc); it reuses the pair kernel, so it costs little.
    ``jet_kinematics``: give the readout the jet's log(pT/s) and |η| (module doc; invariance ``"z_rotation"``).
    """

    hidden: int = 32
    n_hidden_layers: int = 2
    scale_gev: float = 100.0
    count_scale: float = 32.0
    min_invariant: float = 1e-9
    pairs_per_chunk: int = 65536
    local_flow: bool = False
    jet_kinematics: bool = False


#: ``size`` presets: compact 8,738 parameters, large 42,178.
PRESETS: dict[str, dict[str, int]] = {
    "compact": {"hidden": 32, "n_hidden_layers": 2},
    "large": {"hidden": 64, "n_hidden_layers": 3},
}


def rest_frame_invariants(
    p4: torch.Tensor, mask: torch.Tensor, min_invariant: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Energy fractions x_i [B, N], pair angles d_ij [B, N, N] in the jet rest frame (see module doc)
    and the pair products ⟨p_i, p_j⟩ [B, N, N] in ``p4``'s unit squared.

    ``p4`` [B, N, 4] (x and d are dimensionless), ``mask`` [B, N]. ⟨p_i, p_j⟩ is
    taken as (m_i² + m_j² − ⟨p_i − p_j⟩²) / 2 with the difference formed first, which keeps more
    digits for the nearly collinear pairs that dominate a jet. x and d are floored at ``min_invariant``;
    padded entries hold the floor (0 for the pair products).
    """
    p4 = masked_p4(p4, mask)
    jet = jet_p4(p4, mask)  # [B, 4]
    jet_mass2 = minkowski_norm2(jet).clamp(min=min_invariant).unsqueeze(-1)  # [B, 1]
    with_jet = minkowski_dot(p4, jet.unsqueeze(1)).clamp(min=min_invariant)  # ⟨p_i, J⟩ [B, N]
    fraction = (with_jet / jet_mass2).clamp(min=min_invariant)
    mass2 = minkowski_norm2(p4)
    difference2 = minkowski_norm2(p4.unsqueeze(2) - p4.unsqueeze(1))  # [B, N, N]
    pair_dot = 0.5 * (mass2.unsqueeze(2) + mass2.unsqueeze(1) - difference2)
    angle = pair_dot * jet_mass2.unsqueeze(-1) / (with_jet.unsqueeze(2) * with_jet.unsqueeze(1))
    floor = torch.full_like(fraction, min_invariant)
    fraction = torch.where(mask, fraction, floor)
    pairs = pair_mask(mask)
    angle = torch.where(pairs, angle.clamp(min=min_invariant), torch.full_like(angle, min_invariant))
    return fraction, angle, torch.where(pairs, pair_dot, torch.zeros_like(pair_dot))


def jet_kinematics(p4: torch.Tensor, mask: torch.Tensor, scale_gev: float) -> torch.Tensor:
    """[B, 2]: the jet's log(pT / ``scale_gev``) and |η| (J the sum of real constituents, ``p4`` [B, N, 4] GeV).

    Both floored so that a jet along the beam or without constituents stays finite.
    """
    jet = jet_p4(masked_p4(p4, mask), mask).double()
    pt = torch.hypot(jet[:, 1], jet[:, 2]).clamp(min=1e-6 * scale_gev)
    abs_eta = torch.asinh(jet[:, 3].abs() / pt).clamp(max=10.0)
    return torch.stack([torch.log(pt / scale_gev), abs_eta], dim=-1).to(p4.dtype)


class LorentzEFN(PairTagger, name="lorentz_efn", config=LorentzEFNConfig, presets=PRESETS):
    """Lorentz-invariant energy flow network: ``forward(p4 [B, N, 4] GeV, mask [B, N] bool) → logits [B, n_classes]``.

    >>> import torch
    >>> model = LorentzEFN()
    >>> model(torch.rand(2, 5, 4) + torch.tensor([3.0, 0, 0, 0]), torch.ones(2, 5, dtype=torch.bool)).shape
    torch.Size([2, 2])
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        if not config.count_scale > 0 or not config.min_invariant > 0:
            raise InvalidInputError(
                f"lorentz_efn: count_scale and min_invariant must be > 0, got {config.count_scale}, {config.min_invariant}"
            )
        self.count_scale = float(config.count_scale)
        self.scale_gev = float(config.scale_gev)
        self.min_invariant = float(config.min_invariant)
        self.embedding = InvariantEmbedding(scale_gev=config.scale_gev, beam_reference=self.beam_reference)
        hidden, depth = config.hidden, config.n_hidden_layers
        self.pair_kernel = MLP(2, hidden, hidden, n_hidden_layers=depth)
        self.particle_map = MLP(1 + self.embedding.n_features, hidden, hidden, n_hidden_layers=depth)
        self.local_flow = bool(config.local_flow)
        n_sums = 2
        # an identity without the option: TorchScript compiles both branches of forward, so χ always exists
        self.local_map: nn.Module = nn.Identity()
        if self.local_flow:
            self.local_map = MLP(hidden + 1 + self.embedding.n_features, hidden, hidden, n_hidden_layers=depth)
            n_sums = 3
        self.jet_kinematics = bool(config.jet_kinematics)
        self.readout = MLP(n_sums * hidden + (2 if self.jet_kinematics else 0), 2 * hidden, self.n_classes)

    @property
    def invariance(self) -> str:
        """``"z_rotation"`` with ``jet_kinematics`` (the readout sees pT and |η|), else as every tagger."""
        if self.config.jet_kinematics:
            return "z_rotation"
        return super().invariance

    def logits(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass on one chunk: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] → [B, n_classes]."""
        # the invariants are cheap next to the kernel: form them in float64, where collinear pairs keep their digits
        fraction, angle, pair_dot = rest_frame_invariants(p4.double() / self.scale_gev, mask, self.min_invariant)
        fraction, angle, pair_dot = fraction.to(p4.dtype), angle.to(p4.dtype), pair_dot.to(p4.dtype)
        weights = fraction.unsqueeze(2) * fraction.unsqueeze(1)  # x_i x_j [B, N, N]
        weights = torch.where(pair_mask(mask, include_self=False), weights, torch.zeros_like(weights))
        kernel_inputs = torch.stack([torch.log(angle), psi(pair_dot)], dim=-1)
        kernel = self.pair_kernel(kernel_inputs)  # Φ(log d_ij, ψ(⟨p_i, p_j⟩/s²)) [B, N, N, hidden]
        pair_flow = torch.einsum("bij,bijh->bh", weights, kernel)
        particles = torch.cat([torch.log(fraction).unsqueeze(-1), self.embedding(p4, mask)], dim=-1)
        particle_sum = masked_sum(self.particle_map(particles), mask, dim=1) / self.count_scale
        sums = [pair_flow, particle_sum]
        if self.local_flow:
            neighbours = torch.where(pair_mask(mask, include_self=False), fraction.unsqueeze(1),
                                     torch.zeros_like(weights))  # x_j for j ≠ i [B, N, N]
            around = torch.einsum("bij,bijh->bih", neighbours, kernel)  # [B, N, hidden]
            local = self.local_map(torch.cat([around, particles], dim=-1))  # χ [B, N, hidden]
            sums.append(masked_sum(fraction.unsqueeze(-1) * local, mask, dim=1))
        if self.jet_kinematics:
            sums.append(jet_kinematics(p4, mask, self.scale_gev))
        return self.readout(torch.cat(sums, dim=-1))
