"""``lloca``: Lorentz Local Canonicalization around an ordinary transformer.

Following Spinner et al. (2025), "Lorentz Local Canonicalization: How to Make Any Network
Lorentz-Equivariant":

1. :class:`FramePredictor` builds, per constituent i, three four-vectors from convex combinations
   of the constituents with weights from invariant pair features (plus the jet momentum for v0,
   the constituent's own momentum for v1): v0_i timelike, v1_i and v2_i giving directions. They
   transform like the momenta.
2. :func:`.frames.local_frames` turns them into a proper orthochronous Lorentz matrix Λ_i: the boost to the
   rest frame of v0_i, then Gram–Schmidt of the spatial parts of v1_i, v2_i there, and the cross
   product for the third axis. Then Λ_i(Λp) = Λ_i(p) Λ⁻¹, so anything expressed in a local frame,
   Λ_i x_j, is invariant.
3. A standard transformer runs on local features. Attention carries tensorial messages: every
   head has scalar channels and one four-vector channel, keys and values of j are moved into the
   frame of i with Λ_i Λ_j⁻¹ (done as Λ_j⁻¹ to the lab, a Minkowski product / weighted sum there,
   Λ_i back), so the logits are invariant.

Degenerate frames (one or two constituents, collinear or massless ones) are completed
deterministically, never with noise: a v0 that is not timelike by ``min_frame_mass_gev`` is
replaced by (|v⃗0| + μ, v⃗0), and a direction that vanishes after orthogonalisation by the lab axis
with the largest orthogonal remainder. That remainder is the same lab vector for every
constituent, so for one or two constituents the tagger stays invariant. Frame-dependent inputs and
four-vector messages of constituent i are scaled by a gate (m0²/(m0² + μ²))², m0² = v0_i², that
fades out nearly massless frames (a lone photon, collinear massless constituents), whose boosts
are undefined or amplify rounding. Frames, local coordinates and four-vector channels are
computed in float64 (``invariants_float64``) whatever the model dtype.

Numerics: everything runs in canonical coordinates x = B p, B the boost of the jet momentum to rest
(:func:`.frames.canonical_boost`; a z-boost to zero jet rapidity with ``beam_reference``). The tagger is
invariant under B, so this changes no result in exact arithmetic, but in the lab frame a jet of
Lorentz factor γ has momenta, frames Λ_i and lab-frame four-vector channels of size γ, and
Λ_i Λ_j⁻¹ cancels terms of size γ²: a float64 jet boosted to γ ~ 10³ lost ~10⁻⁹ of its logits. The
gate mass (8 GeV) is large against the float32 rounding of a lone constituent's mass, m² ± ~E²·1e-7
(a few GeV² at Δy = 2 from a 500 GeV jet), so single-constituent jets do not switch their frames
on and off when boosted.

With ``beam_reference=True`` the frame vectors may also use the spurion-built images of the jet
momentum X: X∥ = ⟨X, t⟩t − ⟨X, z⟩z, K X = ⟨X, t⟩z − ⟨X, z⟩t (the z-boost generator applied to X)
and R X = (0, −Py, Px, 0) (the z-rotation generator), which transform like X under z-boosts and
z-rotations, and each constituent also sees the projector onto the (t, z) plane in
its local frame. The logits are then invariant under z-boosts × z-rotations only.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InvalidInputError
from .frames import canonical_boost, inverse_lorentz, local_frames, rest_frame_boost
from .layers import MLP, PairTagger
from .minkowski import masked_p4, metric_signs, minkowski_dot, psi

__all__ = [
    "LLoCaConfig",
    "LLoCaTransformer",
    "FramePredictor",
    "PRESETS",
    # the frame primitives live in .frames; these names stay importable from here for one release
    "local_frames",
    "canonical_boost",
    "rest_frame_boost",
    "inverse_lorentz",
]

#: Added to attention logits of padded keys; exp of it underflows to exactly 0 in float32/64.
_MASKED_LOGIT = -1.0e30


@dataclass(frozen=True, kw_only=True)
class LLoCaConfig:
    """Hyper-parameters of :class:`LLoCaTransformer`.

    ``scale_gev`` divides every four-vector before invariants and local coordinates are formed.
    ``min_frame_mass_gev``: a v0 lighter than this is completed to a timelike vector.
    ``frame_eps``: a frame direction shorter than this fraction of its vector is replaced; the
    default suits float64 geometry (raise it to ~1e-3 with ``invariants_float64=False``): it must
    sit above rounding, so exact degeneracies are caught, and far below genuine small angles.
    ``frame_gate_mass_gev``: frame-dependent inputs of constituent i are scaled by the invariant
    gate (m0²/(m0² + μ²))², m0² = v0_i², so nearly massless frames (one photon, collinear massless
    constituents), whose boosts are ill-conditioned or undefined, fade out smoothly; μ also
    regulates the frame predictor's angle feature. Keep it above the rounding of small masses.
    ``canonical_max_gamma``: cap on the Lorentz factor of the canonical boost (≥ 1; it only affects
    rounding, never the exact result).
    ``invariants_float64``: frames, local coordinates and four-vector channels are computed in
    float64 whatever the model dtype (boosts to the rest frame amplify float32 rounding).
    Each attention head has ``head_scalars`` scalar channels and one four-vector channel.
    ``pairs_per_chunk``: on a CPU, run the batch in chunks of about this many constituent pairs
    (results are the same; large batches run faster); 0 runs every batch whole, as on a GPU.
    """

    hidden: int = 32
    n_heads: int = 4
    head_scalars: int = 4
    n_blocks: int = 3
    frame_hidden: int = 24
    ffn_factor: int = 2
    scale_gev: float = 100.0
    min_frame_mass_gev: float = 0.01
    frame_gate_mass_gev: float = 8.0
    frame_eps: float = 1.0e-7
    canonical_max_gamma: float = 1.0e3
    invariants_float64: bool = True
    pairs_per_chunk: int = 65536


PRESETS = types.MappingProxyType(
    {
        "compact": types.MappingProxyType({}),
        "large": types.MappingProxyType(
            {"hidden": 128, "n_heads": 8, "head_scalars": 12, "n_blocks": 6, "frame_hidden": 64, "ffn_factor": 4}
        ),
    }
)


# ----------------------------------------------------------------------------- frame vectors


def _spurion_images(x: torch.Tensor) -> torch.Tensor:
    """x∥, K x and R x for x [..., 4] → [..., 3, 4] (see the module docstring)."""
    energy, px, py, pz = x.unbind(-1)
    zeros = torch.zeros_like(energy)
    parallel = torch.stack([energy, zeros, zeros, pz], dim=-1)
    z_boost = torch.stack([pz, zeros, zeros, energy], dim=-1)
    z_rotation = torch.stack([zeros, -py, px, zeros], dim=-1)
    return torch.stack([parallel, z_boost, z_rotation], dim=-2)


class FramePredictor(nn.Module):
    """Per-constituent frame vectors, equivariant, from invariant pair features.

    ``forward(x [B, N, 4] dimensionless, mask [B, N])`` → (v0, v1, v2), each [B, N, 4]:

    - v0_i = X + Σ_c w⁰_ic c over timelike candidates (X = jet momentum, so v0 is at least as heavy
      as the jet and the rest frame is well conditioned),
    - v1_i = x_i + Σ_c w¹_ic c,
    - v2_i = Σ_{c ≠ x_i} w²_ic c with a learned pull κ (initially 4) toward constituents close to
      x_i in angle in the jet rest frame, so v2 leaves the plane of v0 and v1 from the start,

    with w = softmax over real candidates of an MLP of invariants of x = p4 / ``scale_gev``. The
    angle is regulated by μ⁴, μ² = ``regulator_mass2`` (dimensionless), for nearly massless jets.
    Candidates c are the constituents, plus the spurion images X∥, K X, R X of the jet momentum
    with ``beam_reference``.
    """

    def __init__(self, n_hidden: int, beam_reference: bool, regulator_mass2: float):
        super().__init__()
        self.beam_reference = beam_reference
        self.n_kinds = 4 if beam_reference else 1
        self.masked_logit = _MASKED_LOGIT
        self.regulator_mass2 = regulator_mass2
        # pair features: ψ⟨x_i, c⟩, ψ⟨x_i, X⟩, ψ⟨c, X⟩, ψ(c²), ψ(angle); kind one-hot (beam)
        n_in = 5 + (self.n_kinds if beam_reference else 0)
        self.mlp = MLP(n_in, n_hidden, 3)
        self.neighbour_pull = nn.Parameter(torch.tensor(4.0))

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, network_dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vectors in ``x``'s dtype; the MLP runs in ``network_dtype`` (its weights' dtype)."""
        n_batch, n_particles, _ = x.shape
        jet = x.sum(dim=1, keepdim=True)  # [B, 1, 4]; padded x are zero
        candidate_mask = mask
        kind = torch.zeros(n_particles, dtype=torch.long, device=x.device)
        if self.beam_reference:
            images = _spurion_images(jet).reshape(n_batch, 3, 4)  # X∥, K X, R X
            candidates = torch.cat([x, images], dim=1)
            candidate_mask = torch.cat([mask, torch.ones(n_batch, 3, dtype=torch.bool, device=mask.device)], dim=1)
            kind = torch.cat([kind, torch.arange(1, 4, device=x.device)])
        else:
            candidates = x
        n_candidates = candidates.shape[1]
        jet_mass2 = minkowski_dot(jet, jet).clamp(min=0.0)  # [B, 1]
        dots = torch.einsum("bid,bjd->bij", x * metric_signs(x), candidates)  # [B, N, C]
        x_jet = minkowski_dot(x, jet)  # [B, N]
        c_jet = minkowski_dot(candidates, jet)  # [B, C]
        # ≈ 1 − cos θ* between constituents x_i and c in the jet rest frame (massless limit),
        # regulated by μ⁴; 0 for spurion images, whose ⟨c, X⟩ may vanish
        denominator = (x_jet.unsqueeze(-1) * c_jet.unsqueeze(-2)).abs() + self.regulator_mass2**2
        angle = dots * jet_mass2.unsqueeze(-1) / denominator
        angle = torch.where(kind == 0, angle, torch.zeros_like(angle))
        features = [
            psi(dots),
            psi(x_jet).unsqueeze(-1).expand(n_batch, n_particles, n_candidates),
            psi(c_jet).unsqueeze(-2).expand(n_batch, n_particles, n_candidates),
            psi(minkowski_dot(candidates, candidates)).unsqueeze(-2).expand(n_batch, n_particles, n_candidates),
            psi(angle),
        ]
        if self.beam_reference:
            one_hot = (kind.unsqueeze(-1) == torch.arange(self.n_kinds, device=x.device)).to(x.dtype)
            for k in range(self.n_kinds):
                features.append(one_hot[:, k].expand(n_batch, n_particles, n_candidates))
        logits = self.mlp(torch.stack(features, dim=-1).to(network_dtype)).to(x.dtype)  # [B, N, C, 3]
        pull = self.neighbour_pull.to(x.dtype) * psi(angle)
        logits = torch.cat([logits[..., :2], (logits[..., 2] - pull).unsqueeze(-1)], dim=-1)

        candidate_mask = candidate_mask.unsqueeze(1)  # [B, 1, C]
        timelike_kind = (kind <= 1).unsqueeze(0).unsqueeze(0)  # constituents and x∥
        own = torch.arange(n_particles, device=x.device).unsqueeze(-1) == torch.arange(
            n_candidates, device=x.device
        )  # [N, C]: candidate c is x_i itself
        allowed = torch.stack(
            [
                (candidate_mask & timelike_kind).expand(n_batch, n_particles, n_candidates),
                candidate_mask.expand(n_batch, n_particles, n_candidates),
                candidate_mask & ~own,
            ],
            dim=-1,
        )  # [B, N, C, 3]
        logits = torch.where(allowed, logits, torch.full_like(logits, self.masked_logit))
        weights = torch.softmax(logits, dim=2)
        vectors = torch.einsum("bick,bcd->bikd", weights, candidates)  # [B, N, 3, 4]
        return jet + vectors[:, :, 0], x + vectors[:, :, 1], vectors[:, :, 2]


# ----------------------------------------------------------------------------- backbone


class TensorialAttentionBlock(nn.Module):
    """Pre-norm transformer block whose heads carry ``head_scalars`` scalars and one four-vector.

    ``h`` [B, N, hidden] local features, ``frames`` Λ [B, N, 4, 4], ``inverse`` Λ⁻¹ [B, N, 4, 4],
    ``gate`` [B, N] frame trust in [0, 1], ``mask`` [B, N] → ``h`` [B, N, hidden]. Four-vector
    channels of key j and value j are moved into frame i with Λ_i Λ_j⁻¹; the query–key product uses
    the Minkowski metric for them. Four-vector channels leaving frame j are scaled by gate_j and
    those arriving in frame i by gate_i. Geometry runs in the frames' dtype.
    """

    def __init__(self, hidden: int, n_heads: int, head_scalars: int, ffn_factor: int):
        super().__init__()
        self.n_heads = n_heads
        self.head_scalars = head_scalars
        self.head_dim = head_scalars + 4
        self.masked_logit = _MASKED_LOGIT
        width = n_heads * self.head_dim
        self.norm_attention = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * width)
        self.out = nn.Linear(width, hidden)
        self.norm_ffn = nn.LayerNorm(hidden)
        self.ffn = MLP(hidden, ffn_factor * hidden, hidden)

    def _to_lab(self, t: torch.Tensor, inverse: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """[B, N, heads, head_dim] local → gated four-vector channel in the lab, in ``inverse``'s dtype."""
        local = t[..., self.head_scalars :].to(inverse.dtype) * gate.unsqueeze(-1).unsqueeze(-1)
        return torch.einsum("bnij,bnhj->bnhi", inverse, local)

    def forward(
        self, h: torch.Tensor, frames: torch.Tensor, inverse: torch.Tensor, gate: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        n_batch, n_particles, hidden = h.shape
        q, k, v = self.qkv(self.norm_attention(h)).chunk(3, dim=-1)
        q = q.reshape(n_batch, n_particles, self.n_heads, self.head_dim)
        k = k.reshape(n_batch, n_particles, self.n_heads, self.head_dim)
        v = v.reshape(n_batch, n_particles, self.n_heads, self.head_dim)
        q_lab = self._to_lab(q, inverse, gate) * metric_signs(frames)
        k_lab = self._to_lab(k, inverse, gate)
        v_lab = self._to_lab(v, inverse, gate)

        s = self.head_scalars
        vector_logits = torch.einsum("bihd,bjhd->bhij", q_lab, k_lab).to(h.dtype)
        logits = torch.einsum("bihd,bjhd->bhij", q[..., :s], k[..., :s]) + vector_logits
        logits = logits / (self.head_dim**0.5)
        key_mask = mask.unsqueeze(1).unsqueeze(1)  # [B, 1, 1, N]
        logits = torch.where(key_mask, logits, torch.full_like(logits, self.masked_logit))
        weights = torch.softmax(logits, dim=-1)
        scalars = torch.einsum("bhij,bjhd->bihd", weights, v[..., :s])
        vectors_lab = torch.einsum("bhij,bjhd->bihd", weights.to(v_lab.dtype), v_lab)
        vectors = torch.einsum("bnij,bnhj->bnhi", frames, vectors_lab)
        vectors = (vectors * gate.unsqueeze(-1).unsqueeze(-1)).to(h.dtype)
        update = torch.cat([scalars, vectors], dim=-1).reshape(n_batch, n_particles, -1)
        h = h + self.out(update)
        h = h + self.ffn(self.norm_ffn(h))
        return torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h))


class LLoCaTransformer(PairTagger, name="lloca", config=LLoCaConfig, presets=PRESETS):
    """Transformer made Lorentz-invariant by local canonicalisation.

    ``forward(p4, mask)``: ``p4`` [B, N, 4] (E, px, py, pz) GeV, ``mask`` [B, N] bool
    (True = real constituent) → logits [B, n_classes]. Options are the fields of
    :class:`LLoCaConfig`.
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        self.scale_gev = float(config.scale_gev)
        self.min_mass2 = float((config.min_frame_mass_gev / config.scale_gev) ** 2)
        self.gate_mass2 = float((config.frame_gate_mass_gev / config.scale_gev) ** 2)
        self.invariants_float64 = bool(config.invariants_float64)
        self.frame_eps = float(config.frame_eps)
        if not config.canonical_max_gamma >= 1.0:
            raise InvalidInputError(
                f"LLoCaTransformer: canonical_max_gamma must be ≥ 1, got {config.canonical_max_gamma!r}"
            )
        self.canonical_max_gamma = float(config.canonical_max_gamma)
        self.frame_predictor = FramePredictor(config.frame_hidden, self.beam_reference, self.gate_mass2)
        # gate × ψ of Λ_i x_i (4), Λ_i X (4) [, projector entries (16)]; gate, ψ(x_i²), ψ(⟨x_i, X⟩)
        n_features = 11 + (16 if self.beam_reference else 0)
        self.embed = MLP(n_features, config.hidden, config.hidden)
        self.blocks = nn.ModuleList(
            [
                TensorialAttentionBlock(config.hidden, config.n_heads, config.head_scalars, config.ffn_factor)
                for _ in range(config.n_blocks)
            ]
        )
        self.norm_out = nn.LayerNorm(config.hidden)
        self.head = MLP(config.hidden + 1, config.hidden, self.n_classes)

    def frames(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Local frames Λ [B, N, 4, 4] of ``p4`` [B, N, 4] GeV (identity for padded entries).

        In float64 when ``invariants_float64``, else in ``p4``'s dtype.
        """
        x, boost = self._canonical_p4(p4, mask)
        frames, _ = self._frames(x, mask, p4.dtype)
        lab_frames = frames @ boost.unsqueeze(1)  # Λ_i B: from the lab to frame i
        eye = torch.eye(4, dtype=x.dtype, device=x.device).expand_as(lab_frames)
        return torch.where(mask.unsqueeze(-1).unsqueeze(-1), lab_frames, eye)

    def _canonical_p4(self, p4: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x = B p4 / ``scale_gev`` [B, N, 4] (padded entries 0) and the :func:`canonical_boost` B [B, 4, 4]."""
        x = masked_p4(p4, mask).to(self._geometry_dtype(p4)) / self.scale_gev
        boost = canonical_boost(x.sum(dim=1), beam_reference=self.beam_reference, max_gamma=self.canonical_max_gamma)
        return torch.einsum("bij,bnj->bni", boost, x), boost

    def _geometry_dtype(self, p4: torch.Tensor) -> torch.dtype:
        return torch.float64 if self.invariants_float64 else p4.dtype

    def _frames(
        self, x: torch.Tensor, mask: torch.Tensor, network_dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames Λ [B, N, 4, 4] and their trust gate [B, N] = (m0² / (m0² + μ²))², m0² = v0² ≥ 0."""
        v0, v1, v2 = self.frame_predictor(x, mask, network_dtype)
        frames = local_frames(v0, v1, v2, min_mass2=self.min_mass2, eps=self.frame_eps)
        eye = torch.eye(4, dtype=x.dtype, device=x.device).expand_as(frames)
        frames = torch.where(mask.unsqueeze(-1).unsqueeze(-1), frames, eye)
        mass2 = minkowski_dot(v0, v0).clamp(min=0.0)
        gate = (mass2 / (mass2 + self.gate_mass2)) ** 2
        return frames, torch.where(mask, gate, torch.zeros_like(gate))

    def logits(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass on one chunk: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] bool → [B, n_classes]."""
        dtype = p4.dtype
        x, _ = self._canonical_p4(p4, mask)
        frames, gate = self._frames(x, mask, dtype)
        inverse = inverse_lorentz(frames)
        jet = x.sum(dim=1, keepdim=True)
        local_self = torch.einsum("bnij,bnj->bni", frames, x)
        local_jet = torch.einsum("bnij,bj->bni", frames, jet.squeeze(1))
        local = [psi(local_self), psi(local_jet)]
        if self.beam_reference:
            # projector onto the (t, z) plane, P = diag(1, 0, 0, 1) with indices (up, down), in frame i
            plane = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=x.dtype, device=x.device)
            projector = torch.einsum("bnij,j,bnjk->bnik", frames, plane, inverse)
            local.append(psi(projector.flatten(-2)))
        features = [
            gate.unsqueeze(-1) * torch.cat(local, dim=-1),
            gate.unsqueeze(-1),
            psi(minkowski_dot(x, x)).unsqueeze(-1),
            psi(minkowski_dot(x, jet)).unsqueeze(-1),
        ]
        h = self.embed(torch.cat(features, dim=-1).to(dtype))
        h = torch.where(mask.unsqueeze(-1), h, torch.zeros_like(h))
        for block in self.blocks:
            h = block(h, frames, inverse, gate, mask)
        weight = mask.to(h.dtype).unsqueeze(-1)
        pooled = (self.norm_out(h) * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
        jet_mass2 = psi(minkowski_dot(jet, jet)).to(dtype)  # [B, 1]
        return self.head(torch.cat([pooled, jet_mass2], dim=-1))
