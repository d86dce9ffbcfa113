"""Shared layers: masked reductions ignore padding bit for bit, invariants are invariant, configs reject typos."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from coffea_lorentz import symmetry
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.models import layers
from coffea_lorentz.models.minkowski import minkowski_norm2


def padded(values: torch.Tensor, mask: torch.Tensor, fill: float) -> torch.Tensor:
    return torch.where(mask.unsqueeze(-1), values, torch.full_like(values, fill))


@pytest.mark.parametrize("fill", [math.nan, math.inf, 1e30], ids=["nan", "inf", "huge"])
def test_masked_reductions_ignore_padding(fill):
    values = torch.randn(3, 5, 2, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    noisy = padded(values, mask, fill)
    clean = padded(values, mask, 0.0)
    assert torch.equal(layers.masked_sum(noisy, mask, 1), clean.sum(1))
    expected_mean = clean.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    assert torch.allclose(layers.masked_mean(noisy, mask, 1), expected_mean)
    assert torch.equal(layers.masked_mean(noisy, mask, 1)[2], torch.zeros(2, dtype=torch.float64))


def test_masked_mlp_output_is_zero_where_masked():
    mlp = layers.MaskedMLP(3, 8, 2)
    mask = torch.tensor([[True, False, True]])
    out = mlp(padded(torch.randn(1, 3, 3), mask, math.nan), mask)
    assert torch.equal(out[0, 1], torch.zeros(2))
    assert torch.isfinite(out).all()


def test_pair_mask_with_and_without_self():
    mask = torch.tensor([[True, True, False]])
    assert layers.pair_mask(mask, True).sum() == 4
    assert layers.pair_mask(mask, False).sum() == 2
    assert torch.equal(layers.diagonal_mask(3, torch.device("cpu")), torch.eye(3, dtype=torch.bool))


def test_pair_invariants_are_lorentz_invariant():
    p4, mask = symmetry.random_jets(4, 10, min_constituents=10, seed=1)
    transform = symmetry.random_lorentz(4, max_rapidity=3.0, seed=2)
    before = layers.pair_invariants(p4 / 100.0)
    after = layers.pair_invariants(symmetry.apply_transform(p4, transform) / 100.0)
    assert (before - after).abs().max() < 1e-10


def test_longitudinal_dot_is_invariant_under_the_beam_subgroup_only():
    p4, _ = symmetry.random_jets(4, 10, min_constituents=10, seed=3)
    moved = symmetry.apply_transform(p4, symmetry.random_z_transform(4, max_rapidity=2.0, seed=4))
    before = layers.longitudinal_dot(p4.unsqueeze(2), p4.unsqueeze(1))
    after = layers.longitudinal_dot(moved.unsqueeze(2), moved.unsqueeze(1))
    assert ((before - after).abs() / before.abs().clamp(min=1.0)).max() < 1e-10
    assert torch.allclose(layers.longitudinal_dot(p4, p4), p4[..., 1] ** 2 + p4[..., 2] ** 2 + minkowski_norm2(p4))
    tilted = symmetry.apply_transform(p4, symmetry.boost(0.5, torch.tensor([[1.0, 0.0, 0.0]])))
    assert not torch.allclose(layers.longitudinal_dot(tilted, tilted), layers.longitudinal_dot(p4, p4))


@pytest.mark.parametrize("beam_reference", [False, True])
def test_invariant_embedding(beam_reference):
    embedding = layers.InvariantEmbedding(scale_gev=100.0, beam_reference=beam_reference)
    p4, mask = symmetry.random_jets(4, 12, seed=5)
    features = embedding(padded(p4, mask, math.nan), mask)
    assert features.shape == (4, 12, embedding.n_features)
    assert torch.equal(features[~mask], torch.zeros_like(features[~mask]))
    transform = symmetry.random_z_transform(4, max_rapidity=2.0, seed=6)
    moved = embedding(symmetry.apply_transform(p4, transform), mask)
    assert (moved - features).abs().max() < 1e-9
    with pytest.raises(InvalidInputError, match="scale_gev"):
        layers.InvariantEmbedding(scale_gev=0.0)


def test_jets_per_chunk():
    assert layers.jets_per_chunk(256, 64, 0) == 256
    assert layers.jets_per_chunk(256, 64, 65536) == 16
    assert layers.jets_per_chunk(256, 1024, 65536) == 1
    assert layers.jets_per_chunk(3, 8, 65536) == 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Config:
    width: int = 1
    depth: int = 1


def test_resolve_config_presets_overrides_and_errors():
    presets = {"compact": {"width": 2}, "large": {"width": 8, "depth": 3}}
    assert layers.resolve_config(_Config, presets, size="large", where="t", depth=5) == _Config(width=8, depth=5)
    with pytest.raises(InvalidInputError, match="unknown size 'huge'"):
        layers.resolve_config(_Config, presets, size="huge", where="t")
    with pytest.raises(InvalidInputError, match="unknown option"):
        layers.resolve_config(_Config, presets, size="compact", where="t", widht=3)


@pytest.mark.parametrize(
    "p4, mask, match",
    [
        (torch.zeros(2, 3, 3), torch.ones(2, 3, dtype=torch.bool), "p4: expected shape"),
        (torch.zeros(2, 3, 4, dtype=torch.int64), torch.ones(2, 3, dtype=torch.bool), "floating"),
        (torch.zeros(2, 3, 4), torch.ones(2, 3), "torch.bool"),
        (torch.zeros(2, 3, 4), torch.ones(2, 4, dtype=torch.bool), "mask: expected shape"),
    ],
)
def test_check_inputs_rejects_bad_tensors(p4, mask, match):
    with pytest.raises(InvalidInputError, match=match):
        layers.check_inputs(p4, mask)
