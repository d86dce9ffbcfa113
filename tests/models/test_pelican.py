"""PELICAN's equivariant layers: permutation equivariance and indifference to padded entries."""

from __future__ import annotations

import pytest
import torch

from coffea_lorentz.models.layers import pair_mask
from coffea_lorentz.models.pelican import Equivariant2to2, diagonal_entries, equivariant_2to0


def test_diagonal_entries():
    t = torch.randn(2, 5, 5, 3)
    assert torch.equal(diagonal_entries(t), torch.diagonal(t, dim1=1, dim2=2).transpose(1, 2))


@pytest.mark.parametrize("n_in, n_out", [(1, 4), (3, 3)])
def test_2to2_is_permutation_equivariant(n_in, n_out):
    torch.manual_seed(0)
    layer = Equivariant2to2(n_in, n_out).double()
    t = torch.randn(2, 6, 6, n_in, dtype=torch.float64)
    mask = torch.ones(2, 6, dtype=torch.bool)
    weights = pair_mask(mask, True).double()
    order = torch.randperm(6)
    out = layer(t, mask, weights)
    permuted = layer(t[:, order][:, :, order], mask, weights)
    assert torch.allclose(permuted, out[:, order][:, :, order], atol=1e-12)


def test_2to2_uses_every_basis_map():
    """Distinct inputs that only some of the 15 maps tell apart give distinct outputs."""
    torch.manual_seed(1)
    layer = Equivariant2to2(1, 8).double()
    mask = torch.ones(1, 4, dtype=torch.bool)
    weights = pair_mask(mask, True).double()
    t = torch.randn(1, 4, 4, 1, dtype=torch.float64)
    transposed = t.transpose(1, 2)
    assert not torch.allclose(layer(t, mask, weights), layer(transposed, mask, weights).transpose(1, 2))


def test_2to2_and_2to0_ignore_padded_entries():
    torch.manual_seed(2)
    layer = Equivariant2to2(2, 4).double()
    mask = torch.tensor([[True, True, True, False, False]])
    weights = pair_mask(mask, True).double()
    t = torch.randn(1, 5, 5, 2, dtype=torch.float64)
    other = t.clone()
    other[:, 3:, :, :] = 1e3 * torch.randn_like(other[:, 3:, :, :])
    other[:, :, 3:, :] = -1e3
    out, out_other = layer(t, mask, weights), layer(other, mask, weights)
    assert torch.allclose(out[:, :3, :3], out_other[:, :3, :3], atol=1e-12)
    assert torch.allclose(equivariant_2to0(out, mask, weights), equivariant_2to0(out_other, mask, weights), atol=1e-12)
    trimmed = layer(t[:, :3, :3], mask[:, :3], weights[:, :3, :3])
    assert torch.allclose(out[:, :3, :3], trimmed, atol=1e-12)
