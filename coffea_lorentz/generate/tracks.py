"""Track parameters of generated PF candidates: impact parameters, their errors and track-quality flags.

The generator has no detector: these values are *generated*, not simulated. Charged particles get
the impact parameters of a straight line from their true production vertex (the hard interaction
sits at the origin; decay products of b/c hadrons, K⁰_S, Λ … start where their parent decayed),
smeared with a Gaussian resolution of the CMS tracker's size; the flags follow that vertex. Units
and sign conventions are those of CMS NanoAOD (``PFCands_d0``/``_dz`` in cm,
``d0 = (−x·p_y + y·p_x)/p_T``, ``dz = z − (x·p_x + y·p_y)/p_T · p_z/p_T``).

Resolution (cm, p_T in GeV; a ⊕ b = hypot(a, b)):

- σ(d0) = ``d0_floor_cm`` ⊕ ``d0_scattering_cm_gev`` · √cosh η / p_T  (20 µm ⊕ 100 µm·GeV / (p_T √sin θ));
- σ(dz) = ``dz_floor_cm`` ⊕ ``dz_scattering_cm_gev`` · cosh^{3/2} η / p_T.

What each :data:`FIELDS` branch holds:

======================  ====================================================  =========================
branch                  charged (has a track)                                  neutral (no track)
======================  ====================================================  =========================
``d0``, ``dz``          true impact parameter + N(0, σ), cm                    0
``d0Err``, ``dzErr``    σ(d0), σ(dz), cm                                       −1
``trkChi2``             χ²/ndof with χ² ~ χ²(``chi2_ndof``)                     −1
``lostInnerHits``       −1 (hit in the first pixel layer; 1 with probability   −1
                        ``lost_hit_probability``) if produced inside that
                        layer (``first_pixel_layer_cm``), else 0
``pvAssocQuality``      7 (UsedInFitTight) if produced within                  7
                        ``prompt_radius_cm`` of the beam line, else 4
                        (CompatibilityDz)
``trkQuality``          5 (loose + highPurity) inside the first pixel layer,  0
                        else 1 (loose)
``puppiWeight``         1 (no pileup: every track comes from the interaction)  p_T² / (p_T² + c²),
                                                                               c = ``neutral_puppi_pt_gev``
======================  ====================================================  =========================

The −1 / 7 / 0 values of neutral candidates are what CMS PFNano stores for a candidate without
track details — except ``d0`` and ``dz``: CMS PFNano stores −1 there, the generator stores 0, the
value that CMS's ParticleNet inputs and the JetClass samples give a neutral particle (so that
``tanh(d0)`` features of neutrals are 0, as the models were trained with).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InvalidInputError

__all__ = ["TrackModel", "FIELDS", "track_parameters"]

#: ``PFCands_<field>`` branches :func:`track_parameters` returns, with their dtypes (as in CMS PFNano).
FIELDS: Mapping[str, type] = MappingProxyType({
    "d0": np.float32,
    "d0Err": np.float32,
    "dz": np.float32,
    "dzErr": np.float32,
    "puppiWeight": np.float32,
    "trkChi2": np.float32,
    "lostInnerHits": np.int32,
    "pvAssocQuality": np.int32,
    "trkQuality": np.int32,
})

_MM_PER_CM = 10.0
_USED_IN_FIT_TIGHT = 7
_COMPATIBILITY_DZ = 4
_VALID_HIT_IN_FIRST_LAYER = -1
_NO_LOST_INNER_HITS = 0
_ONE_LOST_INNER_HIT = 1
_LOOSE_HIGH_PURITY = 5
_LOOSE = 1
_NO_TRACK = -1.0
_NEUTRAL_LOST_INNER_HITS = -1  # what CMS PFNano stores without a track


@dataclass(frozen=True, kw_only=True)
class TrackModel:
    """Resolution and thresholds of the generated track parameters (see the module docstring).

    Attributes:
        d0_floor_cm, d0_scattering_cm_gev: σ(d0) terms (cm, cm·GeV).
        dz_floor_cm, dz_scattering_cm_gev: σ(dz) terms (cm, cm·GeV).
        first_pixel_layer_cm: radius of the first pixel barrel layer (cm).
        prompt_radius_cm: production radius (cm) below which a track is used in the vertex fit.
        chi2_ndof: degrees of freedom of the track fit's χ².
        lost_hit_probability: chance that a prompt track misses its first-layer hit.
        neutral_puppi_pt_gev: p_T (GeV) at which a neutral's PUPPI weight is 1/2.
    """

    d0_floor_cm: float = 0.0020
    d0_scattering_cm_gev: float = 0.0100
    dz_floor_cm: float = 0.0030
    dz_scattering_cm_gev: float = 0.0100
    first_pixel_layer_cm: float = 2.9
    prompt_radius_cm: float = 0.1
    chi2_ndof: int = 15
    lost_hit_probability: float = 0.02
    neutral_puppi_pt_gev: float = 1.0

    def __post_init__(self) -> None:
        for name in ("d0_floor_cm", "d0_scattering_cm_gev", "dz_floor_cm", "dz_scattering_cm_gev",
                     "first_pixel_layer_cm", "prompt_radius_cm", "neutral_puppi_pt_gev"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"TrackModel.{name}: expected > 0, got {getattr(self, name)}")
        if self.chi2_ndof < 1:
            raise InvalidInputError(f"TrackModel.chi2_ndof: expected >= 1, got {self.chi2_ndof}")
        if not 0 <= self.lost_hit_probability <= 1:
            raise InvalidInputError(
                f"TrackModel.lost_hit_probability: expected 0 … 1, got {self.lost_hit_probability}")


def track_parameters(
    *,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    charge: np.ndarray,
    vertex_mm: tuple[np.ndarray, np.ndarray, np.ndarray],
    rng: np.random.Generator,
    model: TrackModel = TrackModel(),
) -> dict[str, np.ndarray]:
    """The :data:`FIELDS` of ``n`` PF candidates, each an array [n] of its dtype.

    ``pt`` (GeV), ``eta``, ``phi``, ``charge`` (e) and the production vertex ``vertex_mm`` = (x, y, z)
    in mm are float/int arrays [n]; ``rng`` draws the smearing (a fixed number of draws per
    candidate, so the output depends on the generator's seed and ``n`` only).
    """
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    n = len(pt)
    x, y, z = (np.asarray(v, dtype=np.float64) / _MM_PER_CM for v in vertex_mm)
    charged = np.asarray(charge) != 0
    safe_pt = np.where(pt > 0, pt, 1.0)
    ux, uy, tan_lambda = np.cos(phi), np.sin(phi), np.sinh(eta)
    d0_true = -x * uy + y * ux
    dz_true = z - (x * ux + y * uy) * tan_lambda
    cosh_eta = np.cosh(eta)
    sigma_d0 = np.hypot(model.d0_floor_cm, model.d0_scattering_cm_gev * np.sqrt(cosh_eta) / safe_pt)
    sigma_dz = np.hypot(model.dz_floor_cm, model.dz_scattering_cm_gev * cosh_eta**1.5 / safe_pt)
    smear_d0, smear_dz = rng.standard_normal(n), rng.standard_normal(n)
    chi2 = rng.chisquare(model.chi2_ndof, n) / model.chi2_ndof
    lost_hit = rng.random(n) < model.lost_hit_probability

    radius = np.hypot(x, y)
    inside_first_layer = radius < model.first_pixel_layer_cm
    lost_inner_hits = np.where(inside_first_layer,
                               np.where(lost_hit, _ONE_LOST_INNER_HIT, _VALID_HIT_IN_FIRST_LAYER),
                               _NO_LOST_INNER_HITS)
    out = {
        "d0": np.where(charged, d0_true + sigma_d0 * smear_d0, 0.0),
        "d0Err": np.where(charged, sigma_d0, _NO_TRACK),
        "dz": np.where(charged, dz_true + sigma_dz * smear_dz, 0.0),
        "dzErr": np.where(charged, sigma_dz, _NO_TRACK),
        "puppiWeight": np.where(charged, 1.0, pt**2 / (pt**2 + model.neutral_puppi_pt_gev**2)),
        "trkChi2": np.where(charged, chi2, _NO_TRACK),
        "lostInnerHits": np.where(charged, lost_inner_hits, _NEUTRAL_LOST_INNER_HITS),
        "pvAssocQuality": np.where(charged & (radius >= model.prompt_radius_cm), _COMPATIBILITY_DZ,
                                   _USED_IN_FIT_TIGHT),
        "trkQuality": np.where(charged, np.where(inside_first_layer, _LOOSE_HIGH_PURITY, _LOOSE), 0),
    }
    return {name: out[name].astype(dtype) for name, dtype in FIELDS.items()}
