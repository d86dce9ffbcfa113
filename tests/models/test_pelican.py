"""PELICAN: equivariant layers (permutation equivariance, indifference to padded entries) and learning on real jets."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.generate import load_dataset
from coffea_lorentz.models.layers import pair_mask
from coffea_lorentz.models.minkowski import masked_p4, pairwise_dot
from coffea_lorentz.models.pelican import PELICAN, Equivariant2to2, diagonal_entries, equivariant_2to0


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


# ----------------------------------------------------------------------------- learning on real jets

SMALL_DATASET = Path(__file__).resolve().parents[1] / "data" / "top_qcd_small.h5"


def _small_jets(n_jets: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_jets`` top and QCD jets of the committed dataset: p4 [n, 32, 4] GeV float32, mask, label [n]."""
    p4, mask, label, _ = load_dataset(SMALL_DATASET, "test")
    return (
        torch.as_tensor(p4[:n_jets], dtype=torch.float32),
        torch.as_tensor(mask[:n_jets]),
        torch.as_tensor(label[:n_jets], dtype=torch.int64),
    )


def test_input_channels_vary_across_real_jets():
    """Per-jet means of the input channels must differ between jets (a too-large scale maps them all to ≈ 0)."""
    p4, mask, _ = _small_jets(64)
    model = PELICAN()
    with torch.no_grad():
        channels = model.inputs(pairwise_dot(masked_p4(p4, mask)).unsqueeze(-1))  # [B, N, N, K]
    weights = pair_mask(mask, True).to(channels.dtype).unsqueeze(-1)
    per_jet_mean = (channels * weights).sum((1, 2)) / weights.sum((1, 2))  # [B, K]
    assert per_jet_mean.std(0).max().item() > 1e-2


def test_a_few_steps_reduce_the_loss_on_real_jets():
    """20 full-batch Adam steps on 64 jets bring the loss clearly below ln 2 (it stayed there with d/(100 GeV)²)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    p4, mask, label = _small_jets(64)
    model = PELICAN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(p4, mask), label)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.8 * math.log(2), f"losses {losses[0]:.4f} → {losses[-1]:.4f}"


def test_scales_must_be_positive():
    with pytest.raises(InvalidInputError, match="scales_gev"):
        PELICAN(scales_gev=(16.0, 0.0))
