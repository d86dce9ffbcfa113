"""Lorentz irreps and Clebsch–Gordan maps of :mod:`coffea_lorentz.models.lorentz_cg`, checked numerically."""

from __future__ import annotations

import itertools

import pytest
import torch

from coffea_lorentz import symmetry
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.models.lorentz_cg import (
    SCALAR,
    TENSOR,
    VECTOR,
    Irrep,
    clebsch_gordan,
    representation,
    vector_generators,
)

IRREPS = (SCALAR, VECTOR, TENSOR)
METRIC = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=torch.float64))

#: (a, b) → the irreps c of the truncation with a nonzero map a ⊗ b → c, from SL(2, C) theory:
#: (k, k) ⊗ (l, l) contains (m, m) iff |k − l| ≤ m ≤ k + l with k + l + m even, once.
EXPECTED_MULTIPLICITY = {
    (a, b, c): int(abs(a.k - b.k) <= c.k <= a.k + b.k and (a.k + b.k + c.k) % 2 == 0)
    for a, b, c in itertools.product(IRREPS, repeat=3)
}


def random_transforms(n: int, seed: int) -> torch.Tensor:
    """Proper orthochronous Λ [n, 4, 4] with boosts up to rapidity 2, from the shipped checker."""
    return symmetry.random_lorentz(n, max_rapidity=2.0, seed=seed)


def test_vector_generators_close_the_lorentz_algebra():
    j, k = vector_generators()[:3], vector_generators()[3:]

    def commutator(a, b):
        return a @ b - b @ a

    for a, b, c in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        assert torch.allclose(commutator(j[a], j[b]), j[c])
        assert torch.allclose(commutator(j[a], k[b]), k[c])
        assert torch.allclose(commutator(k[a], k[b]), -j[c])
    # exponentiated generators are Lorentz transformations
    angles = torch.tensor([0.3, -1.1, 0.7, 1.5, -0.4, 2.0], dtype=torch.float64)
    transform = torch.linalg.matrix_exp((angles[:, None, None] * vector_generators()).sum(0))
    assert torch.allclose(transform.T @ METRIC @ transform, METRIC, atol=1e-12)


@pytest.mark.parametrize("irrep", IRREPS, ids=str)
def test_irrep_generators_match_the_group_representation(irrep):
    angles = torch.tensor([0.5, 0.2, -0.9, 1.2, -0.7, 0.4], dtype=torch.float64)
    transform = torch.linalg.matrix_exp((angles[:, None, None] * vector_generators()).sum(0))
    from_algebra = torch.linalg.matrix_exp((angles[:, None, None] * irrep.generators).sum(0))
    assert irrep.dim == (irrep.k + 1) * (irrep.n + 1)
    assert torch.allclose(from_algebra, representation(irrep, transform), atol=1e-10)


def test_tensor_irrep_is_symmetric_traceless_and_orthonormal():
    basis = TENSOR.basis.reshape(9, 4, 4)
    assert torch.allclose(basis, basis.transpose(-1, -2))
    assert torch.allclose(torch.einsum("cij,ij->c", basis, METRIC), torch.zeros(9, dtype=torch.float64))
    assert torch.allclose(TENSOR.basis @ TENSOR.basis.T, torch.eye(9, dtype=torch.float64), atol=1e-14)


@pytest.mark.parametrize("a,b,c", list(itertools.product(IRREPS, repeat=3)), ids=lambda irrep: str(irrep))
def test_clebsch_gordan_maps_intertwine(a, b, c):
    """C (D_a(Λ) ⊗ D_b(Λ)) = D_c(Λ) C for random Λ, with the multiplicity SL(2, C) predicts."""
    cg = clebsch_gordan(a, b, c)
    assert cg.shape == (EXPECTED_MULTIPLICITY[(a, b, c)], c.dim, a.dim, b.dim)
    if cg.shape[0] == 0:
        return
    assert torch.allclose(cg.flatten(1).norm(dim=1), torch.ones(cg.shape[0], dtype=torch.float64))
    transforms = random_transforms(8, seed=1)
    d_a, d_b, d_c = (representation(irrep, transforms) for irrep in (a, b, c))
    before = torch.einsum("mgab,nai,nbj->nmgij", cg, d_a, d_b)
    after = torch.einsum("ngh,mhij->nmgij", d_c, cg)
    scale = d_a.abs().amax((-1, -2)) * d_b.abs().amax((-1, -2)) * d_c.abs().amax((-1, -2))
    error = (before - after).abs().amax(dim=(1, 2, 3, 4)) / scale
    assert error.max() < 1e-12


def test_vector_products_match_the_minkowski_product_and_traceless_part():
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    dot = torch.einsum("gab,a,b->g", clebsch_gordan(VECTOR, VECTOR, SCALAR)[0], x, y)
    assert torch.allclose(dot, 0.5 * (x @ METRIC @ y).reshape(1))  # unit norm: g / 2
    tensor = torch.einsum("gab,a,b->g", clebsch_gordan(VECTOR, VECTOR, TENSOR)[0], x, y) @ TENSOR.basis
    outer = torch.outer(x, y)
    symmetric = 0.5 * (outer + outer.T)
    traceless = symmetric - (symmetric * METRIC).sum() / 4.0 * METRIC
    ratio = tensor.reshape(4, 4)[traceless.abs() > 1e-3] / traceless[traceless.abs() > 1e-3]
    assert torch.allclose(ratio, ratio[0].expand_as(ratio))  # the traceless symmetric part, up to a constant


def test_vector_square_decomposition_is_complete_up_to_the_antisymmetric_part():
    """4 ⊗ 4 = (0,0) ⊕ (2,2) ⊕ antisymmetric (2,0)⊕(0,2): the kept maps are mutually orthogonal,
    have rank 1 + 9, and their common kernel is exactly the antisymmetric tensors."""
    to_scalar = clebsch_gordan(VECTOR, VECTOR, SCALAR)[0].reshape(1, 16)
    to_tensor = clebsch_gordan(VECTOR, VECTOR, TENSOR)[0].reshape(9, 16)
    stacked = torch.cat([to_scalar, to_tensor])
    assert torch.allclose(to_scalar @ to_tensor.T, torch.zeros(1, 9, dtype=torch.float64), atol=1e-14)
    assert torch.linalg.matrix_rank(stacked) == 10
    antisymmetric = torch.stack(
        [
            (torch.outer(torch.eye(4)[i], torch.eye(4)[j]) - torch.outer(torch.eye(4)[j], torch.eye(4)[i])).flatten()
            for i in range(4)
            for j in range(i + 1, 4)
        ]
    ).double()
    assert torch.allclose(stacked @ antisymmetric.T, torch.zeros(10, 6, dtype=torch.float64), atol=1e-14)
    assert torch.linalg.matrix_rank(torch.cat([stacked, antisymmetric])) == 16


def test_invariant_forms_are_symmetric_and_nondegenerate():
    """(1,1) ⊗ (1,1) → (0,0) is ∝ g; (2,2) ⊗ (2,2) → (0,0) is a symmetric, invertible form."""
    for irrep in (VECTOR, TENSOR):
        form = clebsch_gordan(irrep, irrep, SCALAR)[0, 0]
        assert torch.allclose(form, form.T, atol=1e-14)
        assert torch.linalg.matrix_rank(form) == irrep.dim


def test_clebsch_gordan_is_reproducible():
    first = clebsch_gordan(TENSOR, TENSOR, TENSOR)
    second = clebsch_gordan(TENSOR, TENSOR, TENSOR)
    assert torch.equal(first, second)
    first.zero_()  # callers get copies: the cached maps are untouched
    assert clebsch_gordan(TENSOR, TENSOR, TENSOR).abs().max() > 0


@pytest.mark.parametrize("label", [(1, 0), (3, 3), (0, 2)])
def test_unsupported_irreps_are_rejected(label):
    with pytest.raises(InvalidInputError, match="irreps"):
        Irrep(k=label[0], n=label[1])
