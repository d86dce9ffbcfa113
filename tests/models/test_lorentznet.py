"""LorentzNet's block: scalars are invariant and four-vectors equivariant, padded nodes stay zero."""

from __future__ import annotations

import torch

from coffea_lorentz import symmetry
from coffea_lorentz.models.layers import pair_mask
from coffea_lorentz.models.lorentznet import LGEB, LorentzNet


def test_lgeb_scalars_invariant_vectors_equivariant():
    torch.manual_seed(0)
    block = LGEB(8, coordinate_weight=1e-2).double()
    p4, mask = symmetry.random_jets(3, 7, seed=1)
    x = torch.where(mask.unsqueeze(-1), p4 / 100.0, torch.zeros_like(p4))
    h = torch.where(mask.unsqueeze(-1), torch.randn(3, 7, 8, dtype=torch.float64), torch.zeros(3, 7, 8, dtype=torch.float64))
    transform = symmetry.random_lorentz(3, max_rapidity=2.0, seed=2)
    edges = pair_mask(mask, False)
    h_out, x_out = block(h, x, mask, edges)
    h_moved, x_moved = block(h, symmetry.apply_transform(x, transform), mask, edges)
    assert (h_moved - h_out).abs().max() < 1e-9
    assert (x_moved - symmetry.apply_transform(x_out, transform)).abs().max() < 1e-9
    assert not torch.allclose(x_out, x)  # the coordinates really are updated
    assert torch.equal(h_out[~mask], torch.zeros_like(h_out[~mask]))
    assert torch.equal(x_out[~mask], torch.zeros_like(x_out[~mask]))


def test_presets_and_parameter_budget():
    compact = LorentzNet()
    large = LorentzNet(size="large")
    assert sum(p.numel() for p in compact.parameters()) <= 50_000
    assert large.config.hidden == 72 and large.config.n_layers == 6
    assert LorentzNet(hidden=16).config.hidden == 16
