"""``lgn``: Lorentz Group Network (Bogatskiy et al. 2020, "Lorentz Group Equivariant Neural Network
for Particle Physics"), with activations stored as Lorentz irreps.

Every constituent carries channels of three real irreps (see :mod:`.lorentz_cg`):
scalars (0,0) ``s`` [B, N, C0], four-vectors (1,1) ``v`` [B, N, C1, 4] and symmetric traceless
tensors (2,2) ``t`` [B, N, C2, 9]. A layer maps F_i to

    W · (F_i ⊕ CG(F_i ⊗ F_i) ⊕ Σ_j f(p_ij²) CG(p_ij ⊗ F_j)),     p_ij = x_i − x_j,

where CG are the Clebsch–Gordan maps computed in :mod:`.lorentz_cg` (products of all irrep pairs,
decomposed back into the three irreps kept; the products act channel by channel on
``product_channels`` learned mixes of each irrep, and F_j is mixed down to as many channels
before the sum over j), W mixes channels within each irrep only (no bias off scalars, Schur's
lemma), and f is a small MLP of ψ(p_ij²) and ψ(⟨x_i, x_j⟩). Only scalars pass through
nonlinearities; vectors and tensors are gated by sigmoids of scalars. The logits come from the
(0,0) channels averaged over constituents.

Numerics. Products of rank-k tensors lose ~γ^(2k) of relative precision when the jet is boosted
by γ, so the network runs on the momenta boosted to the jet rest frame (``jet_rest_frame``; with
``beam_reference``, the frame where the jet has pz = 0); the boost is done in float64. That
boost is itself a Lorentz transformation, so the exactly equivariant layers and the invariant
output do not depend on it (for a massless jet its completion is arbitrary but still harmless);
it only keeps tensor components O(1). After every layer each irrep is divided by
√(1 + mean_c ‖F_c‖²) with ‖·‖ the Euclidean norm in the jet rest frame, an invariant built from the
metric h = 2 X̂X̂ − g (X̂ the jet direction in time), so magnitudes stay bounded as the polynomial
degree grows.

With ``beam_reference=True`` the spurions enter as equivariant inputs: the vectors x_i∥ and X∥
(projections onto the plane of t = (1, 0, 0, 0), z = (0, 0, 0, 1)) and the traceless part of the
tensor t⊗t − z⊗z; these are kept by z-boosts and z-rotations only.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import torch
from torch import nn

from .frames import boost_to_rest, longitudinal_rest_boost
from .layers import MLP, PairTagger
from .lorentz_cg import SCALAR, TENSOR, VECTOR, clebsch_gordan
from .minkowski import masked_p4, metric_signs, minkowski_dot, pairwise_dot, psi

__all__ = ["LGNConfig", "LGN", "LGNLayer", "PRESETS"]


@dataclass(frozen=True, kw_only=True)
class LGNConfig:
    """Hyper-parameters of :class:`LGN`.

    Channels per irrep: ``scalar_channels`` (0,0), ``vector_channels`` (1,1), ``tensor_channels``
    (2,2); ``product_channels`` channels of each irrep enter the CG self-products and the pair
    messages.
    ``scale_gev`` divides every four-vector. ``norm_mass_gev`` regulates the jet direction X̂ =
    X / √(M² + μ²) of the normalisation for nearly massless jets; ``min_frame_mass_gev``: a jet
    lighter than this is boosted with a completed (non-covariant, harmless) rest frame.
    ``pairs_per_chunk``: on a CPU, run the batch in chunks of about this many constituent pairs
    (results are the same; large batches run faster); 0 runs every batch whole, as on a GPU.
    """

    scalar_channels: int = 48
    vector_channels: int = 12
    tensor_channels: int = 6
    product_channels: int = 6
    n_layers: int = 3
    pair_hidden: int = 16
    scale_gev: float = 100.0
    norm_mass_gev: float = 1.0
    min_frame_mass_gev: float = 0.01
    jet_rest_frame: bool = True
    pairs_per_chunk: int = 65536


PRESETS = types.MappingProxyType(
    {
        "compact": types.MappingProxyType({}),
        "large": types.MappingProxyType(
            {
                "scalar_channels": 128,
                "vector_channels": 32,
                "tensor_channels": 16,
                "product_channels": 16,
                "n_layers": 5,
                "pair_hidden": 64,
            }
        ),
    }
)


def _cg(a, b, c) -> torch.Tensor:
    """The single CG map [dim_c, dim_a, dim_b] (all products kept here have multiplicity 1)."""
    return clebsch_gordan(a, b, c)[0]


def _product(cg: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Channel-wise CG product: ``left`` [..., C, da] ⊗ ``right`` [..., C, db] → [..., C, dc]."""
    outer = (left.unsqueeze(-1) * right.unsqueeze(-2)).flatten(-2)  # [..., C, da·db]
    # a fixed contraction order (a 3-operand einsum may reorder with the batch size)
    return torch.matmul(outer, cg.to(left.dtype).flatten(1).T)


class ChannelMix(nn.Module):
    """Bias-free channel mixing of one irrep, [..., C_in, d] → [..., C_out, d]: commutes with D(Λ)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.einsum("oc,...cd->...od", self.linear.weight, features)


class CGTables(nn.Module):
    """The Clebsch–Gordan maps the network uses, as float64 buffers.

    ``vv_s`` [1, 4, 4], ``vv_t`` [9, 4, 4], ``vt_v`` [4, 4, 9], ``tt_s`` [1, 9, 9], ``tt_t`` [9, 9, 9],
    and ``tensor_basis`` [9, 16] embedding (2,2) coordinates into T^{μν}. They are not persistent
    (rebuilt from :mod:`.lorentz_cg`, not stored in checkpoints) and stay float64 whatever the
    model dtype, so ``model.float().double()`` does not round them; users cast them per call.
    Each layer holds its own small copy so that TorchScript sees plain attributes.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("vv_s", _cg(VECTOR, VECTOR, SCALAR), persistent=False)
        self.register_buffer("vv_t", _cg(VECTOR, VECTOR, TENSOR), persistent=False)
        self.register_buffer("vt_v", _cg(VECTOR, TENSOR, VECTOR), persistent=False)
        self.register_buffer("tt_s", _cg(TENSOR, TENSOR, SCALAR), persistent=False)
        self.register_buffer("tt_t", _cg(TENSOR, TENSOR, TENSOR), persistent=False)
        self.register_buffer("tensor_basis", TENSOR.basis.clone(), persistent=False)

    def _apply(self, fn, recurse=True):
        # follow device moves, ignore dtype casts: keep the float64 coefficients exact
        for name, buffer in self._buffers.items():
            if buffer is not None:
                self._buffers[name] = buffer.to(fn(buffer).device)
        return self


class PairMLP(nn.Module):
    """One-hidden-layer MLP over pair features in channel-first layout, [B, F, N, N] → [B, C, N, N].

    Channel-first matmuls avoid permuting the large [B, N, N, C] pair tensors.
    """

    def __init__(self, n_in: int, n_hidden: int, n_out: int):
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.out = nn.Linear(n_hidden, n_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        n_batch, n_in, n, _ = features.shape
        flat = features.reshape(n_batch, n_in, n * n)
        w_hidden = self.hidden.weight.unsqueeze(0).expand(n_batch, -1, -1)
        w_out = self.out.weight.unsqueeze(0).expand(n_batch, -1, -1)
        hidden = torch.bmm(w_hidden, flat).add_(self.hidden.bias.unsqueeze(-1))
        out = torch.bmm(w_out, torch.nn.functional.silu(hidden)).add_(self.out.bias.unsqueeze(-1))
        return out.reshape(n_batch, -1, n, n)


class LGNLayer(nn.Module):
    """One LGN layer on (s, v, t) with pair interactions.

    ``s`` [B, N, C0], ``v`` [B, N, C1, 4], ``t`` [B, N, C2, 9]; ``x`` [B, N, 4] dimensionless
    momenta; ``pair_features`` [B, 2, N, N] invariants; ``metric_h`` [B, 4, 4] the jet-frame
    Euclidean metric (lower indices); ``mask`` [B, N] → (s, v, t) of the same shapes, normalised.
    """

    def __init__(self, c0: int, c1: int, c2: int, tau: int, pair_hidden: int):
        super().__init__()
        self.c0, self.c1, self.c2 = c0, c1, c2
        self.left_s, self.right_s = nn.Linear(c0, tau), nn.Linear(c0, tau)
        self.left_v, self.right_v = ChannelMix(c1, tau), ChannelMix(c1, tau)
        self.left_t, self.right_t = ChannelMix(c2, tau), ChannelMix(c2, tau)
        self.tau = tau
        # pair messages carry tau channels of each irrep: F_j is mixed down before the sum over j
        self.message_s = nn.Linear(c0, tau)
        self.message_v, self.message_t = ChannelMix(c1, tau), ChannelMix(c2, tau)
        self.pair_mlp = PairMLP(2, pair_hidden, 3 * tau)
        self.scalar_mlp = MLP(c0 + 4 * tau, c0, c0)
        self.norm_s = nn.LayerNorm(c0)
        self.mix_v = ChannelMix(c1 + 4 * tau, c1)
        self.mix_t = ChannelMix(c2 + 4 * tau, c2)
        self.gate_v = nn.Linear(c0, c1)
        self.gate_t = nn.Linear(c0, c2)
        self.cg = CGTables()

    def forward(
        self,
        s: torch.Tensor,
        v: torch.Tensor,
        t: torch.Tensor,
        x: torch.Tensor,
        pair_features: torch.Tensor,
        metric_h: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cg = self.cg
        # --- CG self-products of channel mixes: F_i ⊗ F_i
        s_l, s_r = self.left_s(s), self.right_s(s)
        v_l, v_r = self.left_v(v), self.right_v(v)
        t_l, t_r = self.left_t(t), self.right_t(t)
        to_s = [s_l * s_r, _product(cg.vv_s, v_l, v_r).squeeze(-1), _product(cg.tt_s, t_l, t_r).squeeze(-1)]
        to_v = [s_l.unsqueeze(-1) * v_r, _product(cg.vt_v, v_l, t_r)]
        to_t = [s_l.unsqueeze(-1) * t_r, _product(cg.vv_t, v_l, v_r), _product(cg.tt_t, t_l, t_r)]

        # --- pair terms Σ_j f(p_ij) CG((x_i − x_j) ⊗ F_j) = CG(x_i ⊗ Σ_j f F_j) − Σ_j f CG(x_j ⊗ F_j)
        # padded j hold F_j = 0 and x_j = 0, so they add nothing whatever their (finite) weights
        weights = self.pair_mlp(pair_features)  # [B, 3 tau, N, N]
        f_s, f_v, f_t = weights.split([self.tau, self.tau, self.tau], dim=1)
        m_s, m_v, m_t = self.message_s(s), self.message_v(v), self.message_t(t)  # tau channels each
        m_s = torch.where(mask.unsqueeze(-1), m_s, torch.zeros_like(m_s))  # the bias would reach padding
        x_c = x.unsqueeze(-2)  # [B, N, 1, 4]
        from_s = torch.cat([m_s.unsqueeze(-1), m_s.unsqueeze(-1) * x_c], dim=-1)  # [B, N, tau, 1 + 4]
        x_m = x_c.expand_as(m_v)
        from_v = torch.cat([m_v, _product(cg.vv_s, x_m, m_v), _product(cg.vv_t, x_m, m_v)], dim=-1)  # 4 + 1 + 9
        from_t = torch.cat([m_t, _product(cg.vt_v, x_m, m_t)], dim=-1)  # [B, N, tau, 9 + 4]
        sum_s = torch.matmul(f_s, from_s.transpose(1, 2)).transpose(1, 2)  # [B, N, C0, 5]
        sum_v = torch.matmul(f_v, from_v.transpose(1, 2)).transpose(1, 2)
        sum_t = torch.matmul(f_t, from_t.transpose(1, 2)).transpose(1, 2)
        a_s, b_s = sum_s[..., 0], sum_s[..., 1:]
        a_v, b_v_s, b_v_t = sum_v[..., :4], sum_v[..., 4:5], sum_v[..., 5:]
        a_t, b_t_v = sum_t[..., :9], sum_t[..., 9:]
        pair_v_from_s = a_s.unsqueeze(-1) * x_c - b_s  # [B, N, tau, 4]
        pair_s_from_v = _product(cg.vv_s, x_m, a_v) - b_v_s  # [B, N, tau, 1]
        pair_t_from_v = _product(cg.vv_t, x_m, a_v) - b_v_t  # [B, N, tau, 9]
        pair_v_from_t = _product(cg.vt_v, x_m, a_t) - b_t_v  # [B, N, tau, 4]

        # --- mix within each irrep, scalars through an MLP, vectors/tensors gated by scalars
        s_new = s + self.scalar_mlp(torch.cat([s] + to_s + [pair_s_from_v.squeeze(-1)], dim=-1))
        s_new = self.norm_s(s_new)
        v_in = torch.cat([v] + to_v + [pair_v_from_s, pair_v_from_t], dim=-2)
        t_in = torch.cat([t] + to_t + [pair_t_from_v], dim=-2)
        v_new = v + self.mix_v(v_in) * torch.sigmoid(self.gate_v(s_new)).unsqueeze(-1)
        t_new = t + self.mix_t(t_in) * torch.sigmoid(self.gate_t(s_new)).unsqueeze(-1)

        v_new, t_new = _normalise(v_new, t_new, metric_h, cg.tensor_basis)
        keep = mask.unsqueeze(-1)
        s_new = torch.where(keep, s_new, torch.zeros_like(s_new))
        v_new = torch.where(keep.unsqueeze(-1), v_new, torch.zeros_like(v_new))
        t_new = torch.where(keep.unsqueeze(-1), t_new, torch.zeros_like(t_new))
        return s_new, v_new, t_new


def _vector_norm2(v: torch.Tensor, metric_h: torch.Tensor) -> torch.Tensor:
    """|h(v, v)| for v [B, N, C, 4], h [B, 4, 4] → [B, N, C] (Euclidean norm² in the jet rest frame)."""
    return torch.einsum("bnci,bij,bncj->bnc", v, metric_h, v).abs()


def _tensor_norm2(t: torch.Tensor, metric_h: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """|T^{μν} T^{ρσ} h_μρ h_νσ| for (2,2) coordinates t [B, N, C, 9] → [B, N, C]."""
    tensor = (t @ basis.to(t.dtype)).reshape(t.shape[0], t.shape[1], t.shape[2], 4, 4)
    lowered = torch.einsum("bij,bncjk,bkl->bncil", metric_h, tensor, metric_h)
    return (tensor * lowered).sum((-1, -2)).abs()


def _normalise(
    v: torch.Tensor, t: torch.Tensor, metric_h: torch.Tensor, basis: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Divide each irrep of each constituent by √(1 + mean over channels of its jet-frame norm²)."""
    v = v / torch.sqrt(1.0 + _vector_norm2(v, metric_h).mean(-1, keepdim=True)).unsqueeze(-1)
    t = t / torch.sqrt(1.0 + _tensor_norm2(t, metric_h, basis).mean(-1, keepdim=True)).unsqueeze(-1)
    return v, t


class LGN(PairTagger, name="lgn", config=LGNConfig, presets=PRESETS):
    """Lorentz Group Network tagger.

    ``forward(p4, mask)``: ``p4`` [B, N, 4] (E, px, py, pz) GeV, ``mask`` [B, N] bool
    (True = real constituent) → logits [B, n_classes]. Options are the fields of :class:`LGNConfig`.
    """

    def __init__(self, **options) -> None:
        super().__init__(**options)
        config = self.config
        self.scale_gev = float(config.scale_gev)
        self.norm_mass2 = float((config.norm_mass_gev / config.scale_gev) ** 2)
        self.min_mass2 = float((config.min_frame_mass_gev / config.scale_gev) ** 2)
        self.jet_rest_frame = bool(config.jet_rest_frame)
        c0, c1, c2 = config.scalar_channels, config.vector_channels, config.tensor_channels
        self.cg = CGTables()
        # inputs: scalars ψ(x²), ψ⟨x, X⟩ (+ ∥ partners); vectors x, X (+ x∥, X∥);
        # tensors CG(x ⊗ x), CG(x ⊗ X) (+ traceless t⊗t − z⊗z)
        n_s, n_v, n_t = (4, 4, 3) if self.beam_reference else (2, 2, 2)
        self.embed_s = MLP(n_s, c0, c0)
        self.embed_v = ChannelMix(n_v, c1)
        self.embed_t = ChannelMix(n_t, c2)
        self.layers = nn.ModuleList(
            [LGNLayer(c0, c1, c2, config.product_channels, config.pair_hidden) for _ in range(config.n_layers)]
        )
        self.head_hidden = nn.Linear(c0 + 1, c0)
        self.head_out = nn.Linear(c0, self.n_classes)

    def _to_working_frame(self, x: torch.Tensor, jet: torch.Tensor) -> torch.Tensor:
        """[B, 4, 4] Lorentz matrix to the frame the network runs in (the identity when not
        ``jet_rest_frame``): the jet rest frame, or with ``beam_reference`` the z-boost to the
        frame where the jet has pz = 0, which keeps the spurion tensor O(1) as well."""
        if not self.jet_rest_frame:
            return torch.eye(4, dtype=x.dtype, device=x.device).expand(x.shape[0], 4, 4)
        if self.beam_reference:
            return longitudinal_rest_boost(jet, self.min_mass2)
        return boost_to_rest(jet, self.min_mass2)

    def logits(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The forward pass on one chunk: ``p4`` [B, N, 4] GeV, ``mask`` [B, N] bool → [B, n_classes]."""
        dtype = p4.dtype
        x64 = masked_p4(p4, mask).to(torch.float64) / self.scale_gev  # [B, N, 4]
        jet64 = x64.sum(dim=1)  # [B, 4]
        boost = self._to_working_frame(x64, jet64)  # [B, 4, 4], float64
        x = torch.einsum("bij,bnj->bni", boost, x64)
        jet = torch.einsum("bij,bj->bi", boost, jet64)
        signs = metric_signs(x64)

        scalars = [psi(minkowski_dot(x, x)), psi(minkowski_dot(x, jet.unsqueeze(1)))]
        vectors = [x, jet.unsqueeze(1).expand_as(x)]
        if self.beam_reference:
            plane = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64, device=p4.device)
            # projector onto the (t, z) plane in the working frame: B diag(1, 0, 0, 1) B⁻¹
            projector = torch.einsum("bij,j,bkj,k->bik", boost, plane * signs, boost, signs)
            x_par = torch.einsum("bij,bnj->bni", projector, x)
            jet_par = torch.einsum("bij,bj->bi", projector, jet)
            scalars += [psi(minkowski_dot(x_par, x_par)), psi(minkowski_dot(x_par, jet_par.unsqueeze(1)))]
            vectors += [x_par, jet_par.unsqueeze(1).expand_as(x)]
        metric_h = self._jet_metric(jet, signs)  # [B, 4, 4]

        x = x.to(dtype)
        cg = self.cg
        tensors = [
            _product(cg.vv_t, x.unsqueeze(-2), x.unsqueeze(-2)),
            _product(cg.vv_t, x.unsqueeze(-2), jet.to(dtype).unsqueeze(1).unsqueeze(-2).expand_as(x.unsqueeze(-2))),
        ]
        if self.beam_reference:
            beam_tensor = self._beam_tensor(boost, signs).to(dtype)  # [B, 9]
            tensors.append(beam_tensor.unsqueeze(1).unsqueeze(1).expand(x.shape[0], x.shape[1], 1, 9))
        s = self.embed_s(torch.stack(scalars, dim=-1).to(dtype))
        v = self.embed_v(torch.stack(vectors, dim=-2).to(dtype))
        t = self.embed_t(torch.cat(tensors, dim=-2))
        metric_h = metric_h.to(dtype)
        v, t = _normalise(v, t, metric_h, cg.tensor_basis)
        keep = mask.unsqueeze(-1)
        s = torch.where(keep, s, torch.zeros_like(s))
        v = torch.where(keep.unsqueeze(-1), v, torch.zeros_like(v))
        t = torch.where(keep.unsqueeze(-1), t, torch.zeros_like(t))

        diff = x.unsqueeze(2) - x.unsqueeze(1)
        pair_features = torch.stack([psi(minkowski_dot(diff, diff)), psi(pairwise_dot(x))], dim=1)  # [B, 2, N, N]
        for layer in self.layers:
            s, v, t = layer(s, v, t, x, pair_features, metric_h, mask)

        weight = mask.to(dtype).unsqueeze(-1)
        pooled = (s * weight).sum(dim=1) / weight.sum(dim=1).clamp(min=1.0)
        jet_mass2 = psi(minkowski_dot(jet, jet)).to(dtype).unsqueeze(-1)
        return self._head(torch.cat([pooled, jet_mass2], dim=-1))

    def _head(self, features: torch.Tensor) -> torch.Tensor:
        """[B, C0 + 1] → logits [B, n_classes], in float64: a float32 GEMM may round differently
        for different batch sizes, and the tagger must not depend on how jets are batched."""
        f64 = torch.float64
        hidden_weight, hidden_bias = self.head_hidden.weight.to(f64), self.head_hidden.bias.to(f64)
        out_weight, out_bias = self.head_out.weight.to(f64), self.head_out.bias.to(f64)
        hidden = nn.functional.silu(nn.functional.linear(features.to(f64), hidden_weight, hidden_bias))
        return nn.functional.linear(hidden, out_weight, out_bias).to(features.dtype)

    def _jet_metric(self, jet: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        """h_μν = 2 X̂_μ X̂_ν − g_μν with X̂ = X / √(M² + μ²): [B, 4] → [B, 4, 4] (lower indices)."""
        mass2 = minkowski_dot(jet, jet).clamp(min=0.0) + self.norm_mass2
        lowered = jet * signs / torch.sqrt(mass2).unsqueeze(-1)
        return 2.0 * lowered.unsqueeze(-1) * lowered.unsqueeze(-2) - torch.diag(signs)

    def _beam_tensor(self, boost: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
        """Traceless part of t⊗t − z⊗z, boosted like the momenta, as (2,2) coordinates [B, 9]."""
        spurion = torch.diag(torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=boost.dtype, device=boost.device))
        trace = (spurion.diagonal() * signs).sum()
        traceless = spurion - trace / 4.0 * torch.diag(signs)  # g^{μν} = diag(signs)
        moved = torch.einsum("bij,jk,blk->bil", boost, traceless, boost)
        return moved.flatten(-2) @ self.cg.tensor_basis.to(boost.dtype).T
