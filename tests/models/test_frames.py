"""Lorentz-group primitives of :mod:`coffea_lorentz.models.frames` and the metric of
:mod:`coffea_lorentz.models.minkowski`, each checked alone in float64."""

from __future__ import annotations

import pytest
import torch

from coffea_lorentz import symmetry
from coffea_lorentz.models.frames import (
    boost_to_rest,
    canonical_boost,
    inverse_lorentz,
    local_frames,
    longitudinal_rest_boost,
    rest_frame_boost,
    timelike_completion,
)
from coffea_lorentz.models.minkowski import METRIC_SIGNS, metric, metric_signs, minkowski_dot

F64 = torch.float64


def lorentz_residual(frames: torch.Tensor) -> torch.Tensor:
    """max |Λᵀ g Λ − g| / max |Λ|² per matrix [...]."""
    g = metric(frames.dtype)
    residual = (frames.transpose(-1, -2) @ g @ frames - g).abs().amax(dim=(-1, -2))
    return residual / frames.abs().amax(dim=(-1, -2)) ** 2


def timelike(n: int, seed: int, *, spread: float = 3.0) -> torch.Tensor:
    """``n`` future timelike four-vectors [n, 4] of mass between 1 and 2."""
    generator = torch.Generator().manual_seed(seed)
    spatial = spread * torch.randn(n, 3, generator=generator, dtype=F64)
    mass = 1.0 + torch.rand(n, generator=generator, dtype=F64)
    return torch.cat([torch.sqrt(mass**2 + (spatial**2).sum(-1)).unsqueeze(-1), spatial], dim=-1)


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_the_metric_is_written_once():
    like = torch.zeros(2, dtype=torch.float32)
    signs = metric_signs(like)
    assert signs.dtype == torch.float32 and signs.tolist() == [1.0, -1.0, -1.0, -1.0]
    assert METRIC_SIGNS == (1.0, -1.0, -1.0, -1.0)
    assert torch.equal(metric(F64), torch.diag(torch.tensor(METRIC_SIGNS, dtype=F64)))
    p = torch.tensor([5.0, 1.0, 2.0, 3.0], dtype=F64)
    assert minkowski_dot(p, p).item() == 25.0 - 14.0
    assert torch.jit.script(metric_signs)(like).tolist() == signs.tolist()  # usable inside scripted taggers


def test_inverse_lorentz_inverts_without_a_matrix_inverse():
    transforms = symmetry.random_lorentz(20, max_rapidity=3.0, seed=1)
    eye = torch.eye(4, dtype=F64).expand(20, 4, 4)
    assert torch.allclose(inverse_lorentz(transforms) @ transforms, eye, atol=1e-9)
    assert torch.allclose(inverse_lorentz(transforms), torch.linalg.inv(transforms), rtol=1e-9, atol=1e-9)


def test_rest_frame_boost_and_inverse():
    generator = torch.Generator().manual_seed(61)
    spatial = 3.0 * torch.randn(7, 3, generator=generator, dtype=torch.float64)
    velocity = torch.cat([torch.sqrt(1.0 + (spatial**2).sum(-1, keepdim=True)), spatial], dim=-1)
    boost = rest_frame_boost(velocity)
    at_rest = torch.einsum("bij,bj->bi", boost, velocity)
    assert torch.allclose(at_rest, torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64).expand(7, 4), atol=1e-12)
    assert lorentz_residual(boost).max() < 1e-14
    eye = torch.eye(4, dtype=torch.float64).expand(7, 4, 4)
    assert torch.allclose(inverse_lorentz(boost) @ boost, eye, atol=1e-12)


def test_timelike_completion_keeps_timelike_and_completes_the_rest():
    good = timelike(5, 2)
    assert torch.equal(timelike_completion(good, 0.5), good)
    bad = torch.tensor(
        [[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 3.0, 0.0], [-5.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]], dtype=F64
    )  # lightlike, spacelike, past timelike, zero
    completed = timelike_completion(bad, 0.25)
    assert torch.equal(completed[:, 1:], bad[:, 1:])  # the direction is kept
    assert torch.allclose(completed[:, 0], bad[:, 1:].norm(dim=-1) + 0.5)
    assert (minkowski_dot(completed, completed) >= 0.25 - 1e-12).all() and (completed[:, 0] > 0).all()


def test_boost_to_rest_brings_a_vector_to_rest():
    v = timelike(9, 3)
    boost = boost_to_rest(v, 1e-6)
    rest = torch.einsum("bij,bj->bi", boost, v)
    mass = torch.sqrt(minkowski_dot(v, v))
    assert torch.allclose(rest, torch.stack([mass, *[torch.zeros_like(mass)] * 3], dim=-1), atol=1e-10)
    assert lorentz_residual(boost).max() < 1e-13


def test_longitudinal_rest_boost_zeroes_pz_and_stays_in_the_beam_subgroup():
    jets = timelike(8, 4, spread=50.0)
    boost = longitudinal_rest_boost(jets, 1e-6)
    moved = torch.einsum("bij,bj->bi", boost, jets)
    assert moved[:, 3].abs().max() < 1e-9 * jets[:, 0].max()
    assert torch.allclose(moved[:, 1:3], jets[:, 1:3])  # px, py untouched: a pure z-boost
    assert torch.allclose(moved[:, 0] ** 2, jets[:, 0] ** 2 - jets[:, 3] ** 2)  # E → m_T
    assert lorentz_residual(boost).max() < 1e-12
    along_beam = torch.tensor([[2.0, 0.0, 0.0, 2.0]], dtype=F64)  # m_T = 0: no boost defined
    assert torch.equal(longitudinal_rest_boost(along_beam, 1e-6), torch.eye(4, dtype=F64).unsqueeze(0))


def test_local_frames_put_the_vectors_in_canonical_position():
    generator = torch.Generator().manual_seed(60)
    spatial = torch.randn(5, 3, 3, generator=generator, dtype=torch.float64)
    energy = (spatial**2).sum(-1).sqrt() + 1.0 + torch.rand(5, 3, generator=generator, dtype=torch.float64)
    v0, v1, v2 = torch.cat([energy.unsqueeze(-1), spatial], dim=-1).unbind(1)
    frames = local_frames(v0, v1, v2, min_mass2=1e-8, eps=1e-6)
    rest0 = torch.einsum("bij,bj->bi", frames, v0)
    rest1 = torch.einsum("bij,bj->bi", frames, v1)
    rest2 = torch.einsum("bij,bj->bi", frames, v2)
    assert rest0[:, 1:].abs().max() < 1e-12 and (rest0[:, 0] > 0).all()
    assert rest1[:, 2:].abs().max() < 1e-12 and (rest1[:, 1] > 0).all()
    assert rest2[:, 3].abs().max() < 1e-12 and (rest2[:, 2] > 0).all()


def test_local_frames_are_covariant():
    """frames(Λv0, Λv1, Λv2) = frames(v0, v1, v2) Λ⁻¹, and every frame is proper orthochronous."""
    v0, v1, v2 = timelike(6, 5), timelike(6, 6), timelike(6, 7)
    transform = symmetry.random_lorentz(6, max_rapidity=2.0, seed=8)
    frames = local_frames(v0, v1, v2, min_mass2=1e-8, eps=1e-9)
    moved = local_frames(*(torch.einsum("bij,bj->bi", transform, v) for v in (v0, v1, v2)), min_mass2=1e-8, eps=1e-9)
    assert torch.allclose(moved, frames @ inverse_lorentz(transform), rtol=1e-8, atol=1e-8)
    assert lorentz_residual(frames).max() < 1e-12
    assert (frames[:, 0, 0] >= 1.0).all() and torch.allclose(torch.linalg.det(frames), torch.ones(6, dtype=F64))


@pytest.mark.parametrize("beam_reference", [False, True], ids=["rest_frame", "z_boost"])
def test_canonical_boost_brings_the_jet_near_rest(beam_reference):
    jets = timelike(10, 9, spread=4.0)
    boost = canonical_boost(jets, beam_reference=beam_reference, max_gamma=1e3)
    moved = torch.einsum("bij,bj->bi", boost, jets)
    assert lorentz_residual(boost).max() < 1e-12
    if beam_reference:
        assert moved[:, 3].abs().max() < 1e-9 and torch.allclose(moved[:, 1:3], jets[:, 1:3])
    else:
        assert moved[:, 1:].abs().max() < 1e-9


def test_canonical_boost_caps_the_lorentz_factor():
    fast = torch.tensor([[1e4, 0.0, 0.0, 1e4 - 1e-3]], dtype=F64)  # γ ≈ 7e4
    for beam_reference in (False, True):
        boost = canonical_boost(fast, beam_reference=beam_reference, max_gamma=10.0)
        assert boost[0, 0, 0].item() == pytest.approx(10.0)
    at_rest = torch.tensor([[3.0, 0.0, 0.0, 0.0]], dtype=F64)
    assert torch.allclose(canonical_boost(at_rest, beam_reference=False, max_gamma=10.0), torch.eye(4, dtype=F64))
