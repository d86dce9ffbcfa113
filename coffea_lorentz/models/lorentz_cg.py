"""Finite-dimensional Lorentz-group irreps in a real basis, and their Clebsch–Gordan maps.

The irreps (k, n) of SL(2, C) have dimension (k + 1)(n + 1); for k = n they are real and are the
symmetric, traceless rank-k tensors of the Lorentz group:

- (0, 0): scalars, dimension 1;
- (1, 1): four-vectors (E, px, py, pz), dimension 4 (the defining representation);
- (2, 2): symmetric tensors T^{μν} with g_{μν} T^{μν} = 0, dimension 9.

Each :class:`Irrep` carries an explicit orthonormal ``basis`` [dim, 4^k] embedding its coordinates
into rank-k tensors (flattened, contravariant indices) and the six Lie-algebra ``generators``
[6, dim, dim] (rotations J_x, J_y, J_z, then boosts K_x, K_y, K_z) that act on them.

:func:`clebsch_gordan` finds every map C: V_a ⊗ V_b → V_c with C (X_a ⊗ 1 + 1 ⊗ X_b) = X_c C for all
six generators, as the null space of that linear system (float64); such a C then intertwines
the group, C (D_a(Λ) ⊗ D_b(Λ)) = D_c(Λ) C. Maps are returned with unit Frobenius norm and a fixed
sign, so they are reproducible.

>>> cg = clebsch_gordan(VECTOR, VECTOR, SCALAR)  # the Minkowski product, up to normalisation
>>> tuple(cg.shape)
(1, 1, 4, 4)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch

from ..errors import InvalidInputError

__all__ = [
    "Irrep",
    "SCALAR",
    "VECTOR",
    "TENSOR",
    "vector_generators",
    "irrep_generators",
    "clebsch_gordan",
    "representation",
]


def vector_generators(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Generators of the four-vector representation [6, 4, 4]: J_x, J_y, J_z, K_x, K_y, K_z.

    exp(θ J_a) rotates by θ about axis a, exp(y K_a) boosts with rapidity y along a, acting on
    (E, px, py, pz).
    """
    generators = torch.zeros(6, 4, 4, dtype=dtype)
    for axis in range(3):
        i, j = (axis + 1) % 3 + 1, (axis + 2) % 3 + 1
        generators[axis, i, j] = -1.0  # rotation in the (i, j) plane
        generators[axis, j, i] = 1.0
        generators[3 + axis, 0, axis + 1] = 1.0
        generators[3 + axis, axis + 1, 0] = 1.0
    return generators


def _symmetric_traceless_basis() -> torch.Tensor:
    """Orthonormal basis [9, 16] of symmetric T^{μν} with g_{μν} T^{μν} = 0 (explicit, reproducible)."""
    rows = []
    for mu in range(4):
        for nu in range(mu + 1, 4):
            element = torch.zeros(4, 4, dtype=torch.float64)
            element[mu, nu] = element[nu, mu] = 1.0 / math.sqrt(2.0)
            rows.append(element.flatten())
    # diagonals orthogonal to g = (1, −1, −1, −1): fixed Gram–Schmidt results
    diagonals = (
        torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64) / math.sqrt(2.0),
        torch.tensor([1.0, -1.0, 2.0, 0.0], dtype=torch.float64) / math.sqrt(6.0),
        torch.tensor([1.0, -1.0, -1.0, 3.0], dtype=torch.float64) / math.sqrt(12.0),
    )
    for diagonal in diagonals:
        rows.append(torch.diag(diagonal).flatten())
    return torch.stack(rows)


def _tensor_power_generators(rank: int) -> torch.Tensor:
    """Generators [6, 4^rank, 4^rank] on rank-``rank`` tensors: Σ_slots 1 ⊗ … ⊗ X ⊗ … ⊗ 1."""
    vector = vector_generators()
    out = torch.zeros(6, 4**rank, 4**rank, dtype=torch.float64)
    for slot in range(rank):
        left = torch.eye(4**slot, dtype=torch.float64)
        right = torch.eye(4 ** (rank - slot - 1), dtype=torch.float64)
        for index in range(6):
            out[index] += torch.kron(torch.kron(left, vector[index]), right)
    return out


@dataclass(frozen=True, kw_only=True)
class Irrep:
    """The real irrep (k, k) of the Lorentz group: symmetric traceless rank-k tensors.

    ``Irrep(k=1, n=1)`` is the four-vector; ``basis`` [dim, 4^k] embeds irrep coordinates into
    flattened tensors; ``generators`` [6, dim, dim] (float64) act on irrep coordinates.
    """

    k: int
    n: int
    basis: torch.Tensor = field(init=False, repr=False, compare=False)
    generators: torch.Tensor = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.k != self.n or self.k not in (0, 1, 2):
            raise InvalidInputError(
                f"Irrep: only real irreps (0, 0), (1, 1), (2, 2) are built; got ({self.k}, {self.n})"
            )
        if self.k == 0:
            basis = torch.ones(1, 1, dtype=torch.float64)
        elif self.k == 1:
            basis = torch.eye(4, dtype=torch.float64)
        else:
            basis = _symmetric_traceless_basis()
        on_tensors = _tensor_power_generators(self.k)
        generators = torch.einsum("ai,gij,bj->gab", basis, on_tensors, basis)
        object.__setattr__(self, "basis", basis)
        object.__setattr__(self, "generators", generators)

    @property
    def dim(self) -> int:
        """(k + 1)(n + 1)."""
        return (self.k + 1) * (self.n + 1)

    @property
    def label(self) -> tuple[int, int]:
        return (self.k, self.n)

    def __str__(self) -> str:
        return f"({self.k},{self.n})"


SCALAR = Irrep(k=0, n=0)
VECTOR = Irrep(k=1, n=1)
TENSOR = Irrep(k=2, n=2)


def irrep_generators(irrep: Irrep) -> torch.Tensor:
    """The six generators of ``irrep`` [6, dim, dim], float64."""
    return irrep.generators.clone()


def representation(irrep: Irrep, transform: torch.Tensor) -> torch.Tensor:
    """D(Λ) [..., dim, dim] of Lorentz matrices ``transform`` [..., 4, 4] on ``irrep`` (float64)."""
    transform = transform.to(torch.float64)
    if irrep.k == 0:
        return torch.ones(transform.shape[:-2] + (1, 1), dtype=torch.float64)
    if irrep.k == 1:
        return transform
    on_tensors = torch.einsum("...ac,...bd->...abcd", transform, transform).reshape(transform.shape[:-2] + (16, 16))
    return irrep.basis @ on_tensors @ irrep.basis.T


@functools.lru_cache(maxsize=None)
def _clebsch_gordan(a: tuple[int, int], b: tuple[int, int], c: tuple[int, int]) -> torch.Tensor:
    irrep_a, irrep_b, irrep_c = (Irrep(k=k, n=n) for k, n in (a, b, c))
    da, db, dc = irrep_a.dim, irrep_b.dim, irrep_c.dim
    eye_a, eye_b = torch.eye(da, dtype=torch.float64), torch.eye(db, dtype=torch.float64)
    eye_c, eye_ab = torch.eye(dc, dtype=torch.float64), torch.eye(da * db, dtype=torch.float64)
    blocks = []
    for index in range(6):
        on_product = torch.kron(irrep_a.generators[index], eye_b) + torch.kron(eye_a, irrep_b.generators[index])
        # row-major vec: vec(C M) = (1 ⊗ Mᵀ) vec(C), vec(X C) = (X ⊗ 1) vec(C)
        blocks.append(torch.kron(eye_c, on_product.T.contiguous()) - torch.kron(irrep_c.generators[index], eye_ab))
    system = torch.cat(blocks)
    # null space of the system = eigenvectors of its Gram matrix with eigenvalue 0 (eigh is
    # several times faster than an SVD of the tall system and as accurate here: the gap is O(1))
    eigenvalues, eigenvectors = torch.linalg.eigh(system.T @ system)
    null_columns = eigenvalues < 1e-10 * max(1.0, float(eigenvalues[-1]))
    n_null = int(null_columns.sum())
    if n_null == 0:
        return torch.zeros(0, dc, da, db, dtype=torch.float64)
    null = eigenvectors[:, null_columns].T  # [m, dc·da·db], orthonormal rows
    maps = []
    for row in null:
        pivot = int(torch.nonzero(row.abs() > 1e-8)[0])
        row = row * torch.sign(row[pivot]) / row.norm()
        # snap rounding noise so the stored coefficients are reproducible
        row = torch.where(row.abs() < 1e-13, torch.zeros_like(row), row)
        maps.append(row.reshape(dc, da, db))
    return torch.stack(maps)


def clebsch_gordan(a: Irrep, b: Irrep, c: Irrep) -> torch.Tensor:
    """All intertwiners V_a ⊗ V_b → V_c: [multiplicity, dim_c, dim_a, dim_b], float64.

    ``out[m, γ, α, β]`` maps (x ⊗ y)_{αβ} to z_γ = Σ C_{γαβ} x_α y_β. Multiplicity 0 gives a
    [0, …] tensor (the product does not contain c).
    """
    return _clebsch_gordan(a.label, b.label, c.label).clone()
