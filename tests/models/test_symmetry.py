"""Symmetries of every registered tagger, checked with the shipped :mod:`coffea_lorentz.symmetry` helpers.

The checker's own transforms are tested first (a wrong Λ would make every tagger test meaningless),
then every name in ``models.available()`` runs the same checks.
"""

from __future__ import annotations

import math

import pytest
import torch

from coffea_lorentz import models, symmetry
from coffea_lorentz.errors import InvalidInputError

N_JETS = 12
N_CONSTITUENTS = 20
#: The README's symmetry table: ``random_jets(64, 32, seed=0)`` through ``symmetry.invariance_curve``,
#: boosts of exactly these rapidities (the largest is the requirement's maximum).
README_JETS = {"n_jets": 64, "n_constituents": 32, "seed": 0}
LORENTZ_RAPIDITIES = [0.0, 1.0, 2.0, 3.0, 4.0]
BEAM_RAPIDITIES = [0.0, 1.0, 2.0]
#: The shipped tolerances, one set per dtype (no literals in the checks below).
TOL32, TOL64 = symmetry.TOLERANCE[torch.float32], symmetry.TOLERANCE[torch.float64]


def build_tagger(name: str, dtype: torch.dtype = torch.float32, **config) -> torch.nn.Module:
    """``models.build(name, **config)`` seeded, in eval mode and ``dtype``."""
    torch.manual_seed(0)
    return models.build(name, **config).to(dtype).eval()


# ----------------------------------------------------------------------------- the transforms


def test_random_lorentz_transforms_are_proper_orthochronous():
    transforms = symmetry.random_lorentz(500, max_rapidity=4.0, seed=3)
    g = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))
    residual = transforms.transpose(-1, -2) @ g @ transforms - g
    scale = transforms.abs().amax(dim=(-1, -2)) ** 2
    assert (residual.abs().amax(dim=(-1, -2)) / scale).max() < 1e-13
    assert torch.allclose(torch.linalg.det(transforms), torch.ones(500, dtype=torch.float64), atol=1e-8)
    assert (transforms[:, 0, 0] >= 1.0).all()
    assert symmetry.lorentz_violation(transforms) < 1e-13


def test_random_lorentz_reaches_requested_rapidity():
    transforms = symmetry.random_lorentz(2000, max_rapidity=4.0, seed=4)
    rapidity = torch.acosh(transforms[:, 0, 0])
    assert rapidity.max() <= 4.0 + 1e-9
    assert rapidity.max() > 3.9


@pytest.mark.parametrize(
    "transform",
    [
        symmetry.z_boost(torch.linspace(-2, 2, 9)),
        symmetry.z_rotation(torch.linspace(-math.pi, math.pi, 9)),
        symmetry.random_z_transform(50, max_rapidity=2.0, seed=5),
        symmetry.random_rotation(50, seed=6),
    ],
    ids=["z_boost", "z_rotation", "random_z", "rotation"],
)
def test_subgroup_transforms(transform):
    assert symmetry.lorentz_violation(transform) < 1e-13
    assert (transform[:, 0, 0] >= 1.0).all()


def test_beam_subgroup_keeps_the_longitudinal_metric():
    transform = symmetry.random_z_transform(50, max_rapidity=2.0, seed=7)
    longitudinal = torch.diag(torch.tensor([1.0, 0.0, 0.0, -1.0], dtype=torch.float64))
    transverse = torch.diag(torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    for metric_part in (longitudinal, transverse):
        moved = transform.transpose(-1, -2) @ metric_part @ transform
        assert torch.allclose(moved, metric_part.expand_as(moved), atol=1e-12)


def test_lorentz_violation_flags_improper_and_non_lorentz_matrices():
    parity = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))
    time_reversal = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    assert symmetry.lorentz_violation(parity) == math.inf
    assert symmetry.lorentz_violation(time_reversal) == math.inf
    assert symmetry.lorentz_violation(2.0 * torch.eye(4, dtype=torch.float64)) > 0.1


def test_random_jets_are_realistic():
    p4, mask = symmetry.random_jets(200, 64, min_constituents=10, seed=8)
    mass2 = p4[..., 0] ** 2 - (p4[..., 1:] ** 2).sum(-1)
    assert (mask.sum(1) >= 10).all()
    assert (mass2[mask] > -1e-8).all() and (mass2[mask] < 0.1**2 * 2).all()
    jet = torch.where(mask.unsqueeze(-1), p4, torch.zeros_like(p4)).sum(1)
    jet_pt = jet[:, 1:3].norm(dim=-1)
    assert ((jet_pt > 390) & (jet_pt < 610)).all()
    jet_mass = (jet[:, 0] ** 2 - (jet[:, 1:] ** 2).sum(-1)).clamp(min=0).sqrt()
    assert 20 < jet_mass.median() < 250
    assert (p4[~mask] == 0).all()


def test_checker_catches_a_violation():
    model = build_tagger("identity")  # mean energy: changes under any boost
    p4, mask = symmetry.random_jets(4, 8, dtype=torch.float32)
    with pytest.raises(symmetry.SymmetryError, match="exceeds tolerance"):
        symmetry.assert_invariant(model, p4, mask, symmetry.z_boost(1.0), TOL32.violation)


# ----------------------------------------------------------------------------- every tagger

TAGGERS = models.available()


@pytest.mark.parametrize("name", TAGGERS)
def test_lorentz_invariance_float64(name):
    model = build_tagger(name, torch.float64, beam_reference=False)
    invariance = symmetry.declared_invariance(model, beam_reference=False)
    if invariance != "lorentz":
        pytest.skip(f"{name} declares invariance {invariance!r}, not the Lorentz group")
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, seed=10)
    for seed in range(3):
        transform = symmetry.random_lorentz(N_JETS, max_rapidity=4.0, seed=seed)
        symmetry.assert_invariant(model, p4, mask, transform, TOL64.invariance)


@pytest.mark.parametrize("name", TAGGERS)
def test_lorentz_invariance_float64_readme_jets(name):
    """Every jet of the README's table boosted by exactly y = 0 … 4 in a random direction."""
    model = build_tagger(name, torch.float64, beam_reference=False)
    invariance = symmetry.declared_invariance(model, beam_reference=False)
    if invariance != "lorentz":
        pytest.skip(f"{name} declares invariance {invariance!r}, not the Lorentz group")
    curve = symmetry.invariance_curve(model, LORENTZ_RAPIDITIES, dtype=torch.float64, **README_JETS)
    assert all(change <= TOL64.invariance for _, change in curve), f"{name}: relative logit change per rapidity {curve}"


@pytest.mark.parametrize("name", TAGGERS)
def test_beam_reference_subgroup_invariance_float32_readme_jets(name):
    """Every jet of the README's table z-rotated and z-boosted by exactly Δy = 0 … 2 (z-rotated only
    for taggers that claim no more), in float32."""
    model = build_tagger(name, torch.float32, beam_reference=True)
    invariance = symmetry.declared_invariance(model, beam_reference=True)
    if invariance == "none":
        pytest.skip(f"{name} declares no invariance")
    rapidities = [0.0] if invariance == "z_rotation" else BEAM_RAPIDITIES
    curve = symmetry.invariance_curve(model, rapidities, dtype=torch.float32, beam_subgroup=True, **README_JETS)
    assert all(change <= TOL32.invariance for _, change in curve), f"{name}: relative logit change per rapidity {curve}"


@pytest.mark.parametrize("name", TAGGERS)
def test_beam_reference_subgroup_invariance_float32(name):
    model = build_tagger(name, torch.float32, beam_reference=True)
    invariance = symmetry.declared_invariance(model, beam_reference=True)
    if invariance == "none":
        pytest.skip(f"{name} declares no invariance")
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, dtype=torch.float32, seed=11)
    max_rapidity = 0.0 if invariance == "z_rotation" else 2.0
    transform = symmetry.random_z_transform(N_JETS, max_rapidity=max_rapidity, seed=12)
    symmetry.assert_invariant(model, p4, mask, transform, TOL32.invariance)
    symmetry.assert_invariant(model, p4, mask, symmetry.z_boost(max_rapidity), TOL32.invariance)


@pytest.mark.parametrize("name", TAGGERS)
def test_beam_reference_breaks_general_boosts(name):
    model = build_tagger(name, torch.float64, beam_reference=True)
    invariance = symmetry.declared_invariance(model, beam_reference=True)
    if invariance != "z_boost_rotation":
        pytest.skip(f"{name} declares invariance {invariance!r} with beam_reference=True; beam reference does not break it")
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, seed=13)
    transform = symmetry.boost(1.0, torch.tensor([[1.0, 0.0, 0.0]]))
    with pytest.raises(symmetry.SymmetryError):
        symmetry.assert_invariant(model, p4, mask, transform, TOL64.violation)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("beam_reference", [False, True], ids=["no_beam", "beam"])
@pytest.mark.parametrize("name", TAGGERS)
def test_permutation_invariance(name, beam_reference, dtype):
    model = build_tagger(name, dtype, beam_reference=beam_reference)
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, dtype=dtype, seed=14)
    symmetry.assert_permutation_invariant(model, p4, mask, symmetry.TOLERANCE[dtype].permutation, seed=15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("pad_value", [math.nan, 0.0, 1e4, -math.inf], ids=["nan", "zero", "large", "minus_inf"])
@pytest.mark.parametrize("name", TAGGERS)
def test_padding_invariance(name, pad_value, dtype):
    model = build_tagger(name, dtype)
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, dtype=dtype, seed=16)
    tolerance = symmetry.TOLERANCE[dtype].padding
    symmetry.assert_padding_invariant(model, p4, mask, tolerance, extra=9, pad_value=pad_value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", TAGGERS)
def test_batch_independence(name, dtype):
    model = build_tagger(name, dtype)
    p4, mask = symmetry.random_jets(6, N_CONSTITUENTS, dtype=dtype, seed=17)
    symmetry.assert_batch_independent(model, p4, mask, symmetry.TOLERANCE[dtype].batch)


@pytest.mark.parametrize("name", TAGGERS)
def test_eval_is_deterministic(name):
    model = build_tagger(name)
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, dtype=torch.float32, seed=18)
    with torch.no_grad():
        first, second = model(p4, mask), model(p4, mask)
    assert torch.equal(first, second)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("name", TAGGERS)
def test_boundary_inputs_are_finite(name, dtype):
    model = build_tagger(name, dtype)
    for case, (p4, mask) in symmetry.boundary_inputs(dtype).items():
        with torch.no_grad():
            logits = model(p4, mask)
        assert logits.dtype == dtype, case
        assert logits.shape == (p4.shape[0], 2), case
        assert torch.isfinite(logits).all(), f"{name}: non-finite logits for {case}"


@pytest.mark.parametrize("name", TAGGERS)
def test_float32_and_float64_agree(name):
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, seed=19)
    single = build_tagger(name, torch.float32)
    double = build_tagger(name, torch.float64)
    with torch.no_grad():
        logits32, logits64 = single(p4.float(), mask), double(p4, mask)
    assert logits32.dtype == torch.float32 and logits64.dtype == torch.float64
    assert symmetry.relative_change(logits64, logits32.double()) < TOL32.float64_agreement


@pytest.mark.parametrize("name", TAGGERS)
def test_contract_sizes_and_classes(name):
    compact = build_tagger(name, n_classes=3, size="compact")
    n_parameters = sum(parameter.numel() for parameter in compact.parameters())
    assert n_parameters <= 50_000
    p4, mask = symmetry.random_jets(2, 5, dtype=torch.float32, seed=20)
    with torch.no_grad():
        assert compact(p4, mask).shape == (2, 3)
    if n_parameters > 0:
        large = build_tagger(name, size="large")
        assert sum(parameter.numel() for parameter in large.parameters()) > n_parameters


@pytest.mark.parametrize("name", [name for name in TAGGERS if name != "identity"])
def test_contract_rejects_unknown_size_and_option(name):
    build_tagger(name)  # skips when the module is absent
    with pytest.raises(InvalidInputError, match="size"):
        models.build(name, size="gigantic")
    with pytest.raises((InvalidInputError, TypeError)):
        models.build(name, no_such_option=1)


@pytest.mark.parametrize("name", TAGGERS)
def test_chunked_batches_match_whole_batches(name):
    build_tagger(name)  # skips when the module is absent
    try:
        whole = build_tagger(name, pairs_per_chunk=0)
        chunked = build_tagger(name, pairs_per_chunk=2 * N_CONSTITUENTS**2)
    except (InvalidInputError, TypeError) as err:
        pytest.skip(f"{name} has no pairs_per_chunk option ({err})")
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, dtype=torch.float32, seed=21, pad_value=math.nan)
    with torch.no_grad():
        assert symmetry.relative_change(whole(p4, mask), chunked(p4, mask)) <= TOL32.padding


def test_tolerances_are_one_set_per_dtype_and_the_checks_default_to_them():
    assert set(symmetry.TOLERANCE) == {torch.float32, torch.float64}
    for field in ("invariance", "permutation", "padding", "batch"):
        assert getattr(TOL64, field) <= getattr(TOL32, field), field  # float64 is held tighter
    model = build_tagger("identity")
    p4, mask = symmetry.random_jets(4, 8, dtype=torch.float32)
    with pytest.raises(symmetry.SymmetryError, match=f"exceeds tolerance {TOL32.invariance:g}"):
        symmetry.assert_invariant(model, p4, mask, symmetry.z_boost(1.0))  # rtol from TOLERANCE[float32]
    assert symmetry.assert_permutation_invariant(model, p4, mask) <= TOL32.permutation
    with pytest.raises(InvalidInputError, match="no symmetry tolerance for torch.float16"):
        symmetry.tolerance(torch.float16)
