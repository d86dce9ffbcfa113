"""Local frames of :mod:`coffea_lorentz.models.lloca`: Lorentz matrices, covariant, deterministic.

The frame primitives themselves are tested alone in ``test_frames.py``.
"""

from __future__ import annotations

import pytest
import torch

from coffea_lorentz import symmetry
from coffea_lorentz.models.lloca import LLoCaTransformer

METRIC = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))


def build(beam_reference: bool = False, dtype: torch.dtype = torch.float64, **options) -> LLoCaTransformer:
    torch.manual_seed(0)
    return LLoCaTransformer(beam_reference=beam_reference, **options).to(dtype).eval()


def lorentz_residual(frames: torch.Tensor) -> torch.Tensor:
    """max |Λᵀ g Λ − g| / max |Λ|² per frame [...]."""
    metric = METRIC.to(frames.dtype)
    residual = (frames.transpose(-1, -2) @ metric @ frames - metric).abs().amax(dim=(-1, -2))
    return residual / frames.abs().amax(dim=(-1, -2)) ** 2


def small_jets() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Jets of 1–3 constituents, massive and massless, generic and collinear (GeV)."""
    cases = {
        name: (p4.double(), mask)
        for name, (p4, mask) in symmetry.boundary_inputs(torch.float64).items()
        if name != "n128"
    }
    for n in (1, 2, 3):
        cases[f"random_{n}"] = symmetry.random_jets(4, n, min_constituents=n, seed=30 + n)
    cases["collinear_massive_3"] = (
        torch.tensor([[[50.0, 0.0, 0.0, 49.9], [100.0, 0.0, 0.0, 99.8], [20.0, 0.0, 0.0, 19.96]]], dtype=torch.float64),
        torch.ones(1, 3, dtype=torch.bool),
    )
    return cases


@pytest.mark.parametrize("beam_reference", [False, True], ids=["no_beam", "beam"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_frames_are_proper_orthochronous_lorentz_matrices(beam_reference, dtype):
    model = build(beam_reference, dtype)
    inputs = dict(small_jets())
    inputs["jets"] = symmetry.random_jets(8, 24, seed=40)
    for case, (p4, mask) in inputs.items():
        with torch.no_grad():
            frames = model.frames(p4.to(dtype), mask)
        assert torch.isfinite(frames).all(), case
        assert lorentz_residual(frames).max() < 1e-12, case
        assert torch.allclose(torch.linalg.det(frames), torch.ones_like(frames[..., 0, 0]), atol=1e-6), case
        assert (frames[..., 0, 0] >= 1.0 - 1e-12).all(), case


@pytest.mark.parametrize(
    "beam_reference,make_transform",
    [
        (False, lambda n, seed: symmetry.random_lorentz(n, max_rapidity=4.0, seed=seed)),
        (True, lambda n, seed: symmetry.random_z_transform(n, max_rapidity=4.0, seed=seed)),
    ],
    ids=["lorentz", "beam_z_transforms"],
)
def test_frames_transform_covariantly(beam_reference, make_transform):
    """frames(Λp) = frames(p) Λ⁻¹ for every real constituent of jets with ≥ 3 constituents."""
    model = build(beam_reference)
    p4, mask = symmetry.random_jets(16, 24, min_constituents=3, seed=41)
    for seed in range(2):
        transform = make_transform(16, seed)
        with torch.no_grad():
            frames = model.frames(p4, mask)
            moved = model.frames(symmetry.apply_transform(p4, transform), mask)
        expected = frames @ torch.linalg.inv(transform).unsqueeze(1)
        error = (moved - expected).abs().amax(dim=(-1, -2)) / expected.abs().amax(dim=(-1, -2))
        # boosts of rapidity 4 amplify float64 rounding in a boost matrix by up to ~e⁸
        assert error[mask].max() < 1e-7


@pytest.mark.parametrize("beam_reference", [False, True], ids=["no_beam", "beam"])
def test_small_and_collinear_jets_are_deterministic(beam_reference):
    model = build(beam_reference)
    for case, (p4, mask) in small_jets().items():
        with torch.no_grad():
            first, second = model.frames(p4, mask), model.frames(p4.clone(), mask.clone())
            logits = model(p4, mask)
        assert torch.equal(first, second), case
        assert torch.isfinite(logits).all(), case


@pytest.mark.parametrize("n_constituents", [1, 2, 3])
def test_degenerate_frames_keep_the_tagger_invariant(n_constituents):
    """With one or two constituents part of each frame is completed from lab axes; the completion
    is the same lab vector for every constituent, so the logits stay Lorentz invariant."""
    model = build()
    p4, mask = symmetry.random_jets(6, n_constituents, min_constituents=n_constituents, seed=50 + n_constituents)
    # pions only: a single massless constituent has no rest frame at all
    p4 = torch.cat([torch.sqrt((p4[..., 1:] ** 2).sum(-1, keepdim=True) + 0.13957**2), p4[..., 1:]], dim=-1)
    transform = symmetry.random_lorentz(6, max_rapidity=2.0, seed=51)
    tolerance = symmetry.TOLERANCE[torch.float64].invariance
    assert symmetry.assert_invariant(model, p4, mask, transform, tolerance) <= tolerance
