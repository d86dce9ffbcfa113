"""``lorentz_efn`` with its local-flow sum (``local_flow=True``, the option the shipped ``fsr`` reweighter uses).

The same shipped symmetry checks and tolerances as every registered tagger (``test_symmetry.py`` runs
the default configuration), plus TorchScript parity, which is how Triton serves a reweighter.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from coffea_lorentz import models, symmetry
from coffea_lorentz.export import export_torchscript, load_torchscript

N_JETS, N_CONSTITUENTS = 12, 20


def local_flow_efn(dtype: torch.dtype = torch.float32, **config) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.build("lorentz_efn", local_flow=True, **config).to(dtype).eval()


def test_local_flow_adds_parameters_and_keeps_the_output_shape():
    torch.manual_seed(0)
    plain = models.build("lorentz_efn").eval()
    local = local_flow_efn()
    assert sum(p.numel() for p in local.parameters()) > sum(p.numel() for p in plain.parameters())
    assert local.config.local_flow and not plain.config.local_flow
    p4, mask = symmetry.random_jets(4, N_CONSTITUENTS, dtype=torch.float32, seed=3)
    with torch.no_grad():
        assert local(p4, mask).shape == plain(p4, mask).shape == (4, 2)


def test_local_flow_is_lorentz_invariant_float64():
    model = local_flow_efn(torch.float64)
    assert symmetry.declared_invariance(model, beam_reference=False) == "lorentz"
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, seed=10)
    for seed in range(3):
        transform = symmetry.random_lorentz(N_JETS, max_rapidity=4.0, seed=seed)
        symmetry.assert_invariant(model, p4, mask, transform, symmetry.TOLERANCE[torch.float64].invariance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("options", [{}, {"jet_kinematics": True}], ids=["local_flow", "local_flow+jet_kinematics"])
def test_permutation_padding_batch_and_boundaries(options, dtype):
    model = local_flow_efn(dtype, **options)
    tolerance = symmetry.TOLERANCE[dtype]
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, dtype=dtype, seed=14)
    symmetry.assert_permutation_invariant(model, p4, mask, tolerance.permutation, seed=15)
    for pad_value in (math.nan, 0.0, 1e4):
        symmetry.assert_padding_invariant(model, p4, mask, tolerance.padding, extra=9, pad_value=pad_value)
    symmetry.assert_batch_independent(model, p4[:6], mask[:6], tolerance.batch)
    for case, (edge_p4, edge_mask) in symmetry.boundary_inputs(dtype).items():
        with torch.no_grad():
            assert torch.isfinite(model(edge_p4, edge_mask)).all(), case


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")  # TorchScript is what Triton's libtorch backend serves
def test_local_flow_torchscript_matches_eager(tmp_path: Path):
    model = local_flow_efn()
    export_torchscript(model, tmp_path / "model.pt")
    loaded = torch.jit.script(model)
    reloaded = load_torchscript(tmp_path / "model.pt")
    p4, mask = symmetry.random_jets(5, 23, dtype=torch.float32, pad_value=math.nan, seed=5)
    with torch.no_grad():
        expected = model(p4, mask)
        assert (loaded(p4, mask) - expected).abs().max() <= 1e-5
        assert torch.isfinite(reloaded(p4, mask)).all()


# ----------------------------------------------------------------------------- jet_kinematics


def test_jet_kinematics_declares_and_keeps_rotations_about_the_beam_only():
    model = models.build("lorentz_efn", jet_kinematics=True).to(torch.float64).eval()
    assert model.invariance == symmetry.declared_invariance(model, beam_reference=False) == "z_rotation"
    p4, mask = symmetry.random_jets(N_JETS, N_CONSTITUENTS, seed=20)
    tolerance = symmetry.TOLERANCE[torch.float64].invariance
    angles = torch.linspace(-math.pi, math.pi, N_JETS, dtype=torch.float64)
    symmetry.assert_invariant(model, p4, mask, symmetry.z_rotation(angles), tolerance)
    with torch.no_grad():  # a boost along the beam changes |η|, hence the logits; the invariant sums alone do not see it
        boosted = symmetry.apply_transform(p4, symmetry.z_boost(torch.full((N_JETS,), 1.0, dtype=torch.float64)))
        assert (model(boosted, mask) - model(p4, mask)).abs().max() > 1e-3
        torch.manual_seed(0)
        plain = models.build("lorentz_efn").to(torch.float64).eval()
        assert (plain(boosted, mask) - plain(p4, mask)).abs().max() < 1e-6


def test_jet_kinematics_are_the_jets_log_pt_and_abs_eta():
    from coffea_lorentz.models.lorentz_efn import jet_kinematics

    p4, mask = symmetry.random_jets(5, 7, seed=21)
    jet = (p4 * mask.unsqueeze(-1)).sum(1)
    pt = torch.hypot(jet[:, 1], jet[:, 2])
    eta = torch.asinh(jet[:, 3] / pt)
    features = jet_kinematics(p4, mask, 100.0)
    torch.testing.assert_close(features[:, 0], torch.log(pt / 100.0))
    torch.testing.assert_close(features[:, 1], eta.abs())


@pytest.mark.filterwarnings("ignore:`torch.jit.:DeprecationWarning")
def test_jet_kinematics_torchscript_matches_eager():
    model = local_flow_efn(jet_kinematics=True)
    scripted = torch.jit.script(model)
    p4, mask = symmetry.random_jets(5, 23, dtype=torch.float32, pad_value=math.nan, seed=24)
    with torch.no_grad():
        assert (scripted(p4, mask) - model(p4, mask)).abs().max() <= 1e-5
