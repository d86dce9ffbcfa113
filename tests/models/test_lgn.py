"""LGN internals: the layers are Lorentz-equivariant under boosts, not only under rotations.

In its default mode the network runs in the jet rest frame, where a transformed input differs only
by a rotation; these tests also exercise the boost part of the Clebsch–Gordan machinery.
"""

from __future__ import annotations

import pytest
import torch

from coffea_lorentz import symmetry
from coffea_lorentz.models.lgn import LGN, LGNLayer
from coffea_lorentz.models.lorentz_cg import TENSOR, VECTOR, representation


def build(**options) -> LGN:
    torch.manual_seed(0)
    return LGN(**options).double().eval()


@pytest.mark.parametrize("beam_reference", [False, True], ids=["no_beam", "beam"])
def test_working_frame_does_not_change_the_logits(beam_reference):
    """Rest-frame and lab-frame evaluation agree: the boost to the working frame is a Lorentz
    transformation of every input, so only an exactly equivariant network gives the same logits."""
    p4, mask = symmetry.random_jets(8, 16, max_abs_eta=1.0, seed=70)
    rest, lab = build(beam_reference=beam_reference), build(beam_reference=beam_reference, jet_rest_frame=False)
    lab.load_state_dict(rest.state_dict())
    with torch.no_grad():
        assert symmetry.relative_change(rest(p4, mask), lab(p4, mask)) < symmetry.TOLERANCE[torch.float64].invariance


def test_lab_frame_network_is_invariant_under_boosts():
    model = build(jet_rest_frame=False)
    p4, mask = symmetry.random_jets(8, 16, max_abs_eta=1.0, seed=71)
    transform = symmetry.random_lorentz(8, max_rapidity=1.0, seed=72)
    symmetry.assert_invariant(model, p4, mask, transform, symmetry.TOLERANCE[torch.float64].invariance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_layer_is_equivariant(dtype):
    """LGNLayer(D(Λ)F, Λx) = D(Λ) LGNLayer(F, x) for vectors and tensors; scalars unchanged."""
    torch.manual_seed(1)
    c0, c1, c2, n_batch, n = 6, 3, 2, 2, 5
    layer = LGNLayer(c0, c1, c2, tau=2, pair_hidden=8).to(dtype)
    generator = torch.Generator().manual_seed(2)
    s = torch.randn(n_batch, n, c0, generator=generator, dtype=torch.float64)
    v = torch.randn(n_batch, n, c1, 4, generator=generator, dtype=torch.float64)
    t = torch.randn(n_batch, n, c2, 9, generator=generator, dtype=torch.float64)
    x = torch.randn(n_batch, n, 4, generator=generator, dtype=torch.float64)
    mask = torch.ones(n_batch, n, dtype=torch.bool)
    mask[1, 3:] = False
    transform = symmetry.random_lorentz(1, max_rapidity=0.5, seed=3)[0]

    def run(s, v, t, x):
        diff = x.unsqueeze(2) - x.unsqueeze(1)
        signs = torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64)
        features = torch.stack([(diff * diff * signs).sum(-1), torch.einsum("bid,bjd->bij", x * signs, x)], dim=1)
        jet = x.sum(1)
        lowered = jet * signs / torch.sqrt((jet * jet * signs).sum(-1, keepdim=True).abs() + 1.0)
        metric_h = 2.0 * lowered.unsqueeze(-1) * lowered.unsqueeze(-2) - torch.diag(signs)
        inputs = (s, v, t, x, features.tanh(), metric_h)
        with torch.no_grad():
            return layer(*(tensor.to(dtype) for tensor in inputs), mask)

    d_vector, d_tensor = representation(VECTOR, transform), representation(TENSOR, transform)
    s1, v1, t1 = run(s, v, t, x)
    s2, v2, t2 = run(s, v @ d_vector.T, t @ d_tensor.T, x @ d_vector.T)
    tolerance = 1e-4 if dtype == torch.float32 else 1e-11
    assert (s2 - s1).abs().max() < tolerance
    assert (v2.double() - v1.double() @ d_vector.T).abs().max() < tolerance * v1.abs().max()
    assert (t2.double() - t1.double() @ d_tensor.T).abs().max() < tolerance * t1.abs().max()
