"""Jets from generated particles with FastJet: anti-kT clustering, constituents, substructure, truth matching.

- :func:`cluster_jets` clusters every event of a batch at once (FastJet's awkward interface) and
  returns pT-ordered jets with the indices of their constituents in the event's particle list.
- :func:`jet_observables` computes, per jet, pT/η/φ/mass from the constituents, the soft-drop
  mass (C/A reclustering, β = 0, z_cut = 0.1 by default; FastJet contrib's ``SoftDrop``) and the
  N-subjettiness ratios (normalised measure, β = 1, R0 = jet radius, one-pass kT axes).
- :func:`top_matched` flags jets that contain a top and its three decay quarks within ΔR < R.
- :func:`quiet_fastjet_banner` keeps FastJet's start-up banner out of worker processes: a run
  shows it once, from the process that starts the workers (:func:`show_fastjet_banner`).
"""

from __future__ import annotations

from dataclasses import dataclass

import awkward as ak
import numpy as np

from ..errors import InvalidInputError
from ._deps import require

__all__ = ["JetConfig", "Jets", "cluster_jets", "gather_constituents", "jet_kinematics", "jet_observables",
           "top_matched", "delta_r", "show_fastjet_banner", "quiet_fastjet_banner"]

#: Radius of the C/A reclustering used for substructure: large enough that every constituent merges.
_RECLUSTER_RADIUS = 999.0


@dataclass(frozen=True, kw_only=True)
class JetConfig:
    """Jet definition and substructure parameters.

    Attributes:
        radius: anti-kT distance parameter R.
        min_pt_gev: jets below this pT (GeV) are dropped.
        softdrop_zcut: soft-drop symmetry cut z_cut.
        softdrop_beta: soft-drop angular exponent β (0 = modified mass-drop tagger).
        nsubjettiness_beta: angular exponent β of N-subjettiness.
    """

    radius: float = 0.8
    min_pt_gev: float = 200.0
    softdrop_zcut: float = 0.1
    softdrop_beta: float = 0.0
    nsubjettiness_beta: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.radius < 10:
            raise InvalidInputError(f"JetConfig.radius: expected 0 < R < 10, got {self.radius}")
        if self.min_pt_gev < 0:
            raise InvalidInputError(f"JetConfig.min_pt_gev: expected >= 0 GeV, got {self.min_pt_gev}")
        if not 0 <= self.softdrop_zcut < 0.5:
            raise InvalidInputError(f"JetConfig.softdrop_zcut: expected 0 <= z_cut < 0.5, got {self.softdrop_zcut}")


@dataclass(frozen=True)
class Jets:
    """The jets of a batch of events.

    Attributes:
        p4: awkward [n_events][n_jets] records ``{px, py, pz, E}`` (float64, GeV), pT-descending.
        constituent_index: awkward [n_events][n_jets][n_constituents] int64: indices into the
            event's particle list, ascending (so pT-descending when the particles are pT-ordered).
    """

    p4: ak.Array
    constituent_index: ak.Array


# The banner belongs to FastJet's C++ ClusterSequence, reached through its SWIG binding
# (``fastjet._swig``; the package's top-level ``ClusterSequence`` is the awkward interface). The
# "printed already" flag and the banner stream live in the C++ library, one per process.


def show_fastjet_banner() -> None:
    """Print FastJet's banner (authors, version, citation) now, unless this process printed it already.

    FastJet prints it once per process, on the first clustering; calling this before starting
    workers puts it at the top of the output. Does nothing when FastJet is not installed.
    """
    try:
        fastjet = require("fastjet")
    except ImportError:
        return
    fastjet._swig.ClusterSequence.print_banner()


def quiet_fastjet_banner() -> None:
    """Send FastJet's banner nowhere in this process (worker processes: the parent showed it)."""
    try:
        fastjet = require("fastjet")
    except ImportError:
        return
    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)


def _p4_record(particles: ak.Array) -> ak.Array:
    return ak.zip({"px": particles.px, "py": particles.py, "pz": particles.pz, "E": particles.E})


def cluster_jets(particles: ak.Array, config: JetConfig) -> Jets:
    """Anti-kT jets of ``particles`` (awkward [n_events][n_particles] with ``px, py, pz, E`` in GeV)."""
    fastjet = require("fastjet")
    definition = fastjet.JetDefinition(fastjet.antikt_algorithm, config.radius)
    sequence = fastjet.ClusterSequence(_p4_record(particles), definition)
    jets = sequence.inclusive_jets(config.min_pt_gev)
    index = ak.values_astype(sequence.constituent_index(config.min_pt_gev), np.int64)
    order = ak.argsort(np.hypot(jets.px, jets.py), axis=1, ascending=False)
    p4 = ak.zip({name: ak.values_astype(jets[name], np.float64) for name in ("px", "py", "pz", "E")})[order]
    return Jets(p4=p4, constituent_index=ak.sort(index[order], axis=2))


def gather_constituents(particles: ak.Array, constituent_index: ak.Array) -> ak.Array:
    """Constituent records of every jet: awkward [n_jets_total][n_constituents] (events flattened, jets in order).

    ``particles`` is [n_events][n_particles]; ``constituent_index`` is [n_events][n_jets][n_constituents].
    """
    n_particles = np.asarray(ak.num(particles, axis=1), dtype=np.int64)
    starts = np.zeros(len(n_particles), dtype=np.int64)
    np.cumsum(n_particles[:-1], out=starts[1:])
    n_constituents = np.asarray(ak.flatten(ak.num(constituent_index, axis=2)), dtype=np.int64)
    global_index = ak.flatten(constituent_index + starts[:, np.newaxis, np.newaxis], axis=None)
    flat = ak.flatten(particles, axis=1)[np.asarray(global_index, dtype=np.int64)]
    return ak.unflatten(flat, n_constituents)


def jet_kinematics(px, py, pz, energy) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pT, η, φ, mass (float64, GeV) of four-momenta given as arrays of ``px, py, pz, E`` (GeV).

    η is 0 for pT = 0; the mass is 0 where E² < p² by rounding.
    """
    px, py, pz, energy = (np.asarray(v, dtype=np.float64) for v in (px, py, pz, energy))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(np.where(pt > 0, pz / np.where(pt > 0, pt, 1.0), 0.0))
    phi = np.arctan2(py, px)
    mass = np.sqrt(np.maximum(energy**2 - pt**2 - pz**2, 0.0))
    return pt, eta, phi, mass


def jet_observables(constituents: ak.Array, config: JetConfig) -> dict[str, np.ndarray]:
    """Per-jet observables from constituents (awkward [n_jets][n_constituents] with ``px, py, pz, E`` in GeV).

    Returns float32 [n_jets] arrays ``pt, eta, phi, mass, msoftdrop`` (GeV for pT and masses),
    ``tau1, tau2, tau3, tau21, tau32`` (ratios 0 where the denominator is 0) and int32
    ``n_constituents``.
    """
    n_jets = len(constituents)
    n_constituents = np.asarray(ak.num(constituents, axis=1), dtype=np.int32)
    sums = {name: np.asarray(ak.sum(constituents[name], axis=1), dtype=np.float64) for name in ("px", "py", "pz", "E")}
    pt, eta, phi, mass = jet_kinematics(sums["px"], sums["py"], sums["pz"], sums["E"])
    out = {
        "pt": pt,
        "eta": eta,
        "phi": phi,
        "mass": mass,
        "msoftdrop": np.zeros(n_jets),
        "tau1": np.zeros(n_jets),
        "tau2": np.zeros(n_jets),
        "tau3": np.zeros(n_jets),
    }
    if n_jets:
        fastjet = require("fastjet")
        definition = fastjet.JetDefinition(fastjet.cambridge_algorithm, _RECLUSTER_RADIUS)
        sequence = fastjet.ClusterSequence(_p4_record(constituents), definition)
        groomed = sequence.exclusive_jets_softdrop_grooming(
            njets=1, beta=config.softdrop_beta, symmetry_cut=config.softdrop_zcut, R0=config.radius
        )
        out["msoftdrop"] = np.asarray(groomed.msoftdrop, dtype=np.float64)
        taus = np.asarray(
            sequence.njettiness(njets=[1, 2, 3], beta=config.nsubjettiness_beta, R0=config.radius), dtype=np.float64
        ).reshape(n_jets, 3)
        out["tau1"], out["tau2"], out["tau3"] = taus[:, 0], taus[:, 1], taus[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["tau21"] = np.where(out["tau1"] > 0, out["tau2"] / out["tau1"], 0.0)
        out["tau32"] = np.where(out["tau2"] > 0, out["tau3"] / out["tau2"], 0.0)
    result = {name: value.astype(np.float32) for name, value in out.items()}
    result["n_constituents"] = n_constituents
    return result


def delta_r(eta1, phi1, eta2, phi2):
    """ΔR = sqrt(Δη² + Δφ²) with Δφ wrapped into [-π, π); works on numpy and awkward arrays."""
    dphi = (phi1 - phi2 + np.pi) % (2 * np.pi) - np.pi
    return np.sqrt((eta1 - eta2) ** 2 + dphi**2)


def _eta_phi(px, py, pz):
    pt = np.hypot(px, py)
    return np.arcsinh(pz / pt), np.arctan2(py, px)


def top_matched(jets_p4: ak.Array, top_partons: ak.Array, radius: float) -> ak.Array:
    """bool awkward [n_events][n_jets]: some top of the event and its 3 decay quarks lie within ΔR < ``radius``.

    ``jets_p4`` is [n_events][n_jets] and ``top_partons`` [n_events][n_tops][4] (top, b, q, q̄'),
    both records with ``px, py, pz, E`` in GeV.
    """
    jet_eta, jet_phi = _eta_phi(jets_p4.px, jets_p4.py, jets_p4.pz)
    parton_eta, parton_phi = _eta_phi(top_partons.px, top_partons.py, top_partons.pz)
    distance = delta_r(
        jet_eta[:, :, np.newaxis, np.newaxis],
        jet_phi[:, :, np.newaxis, np.newaxis],
        parton_eta[:, np.newaxis, :, :],
        parton_phi[:, np.newaxis, :, :],
    )
    all_inside = ak.all(distance < radius, axis=3)
    return ak.fill_none(ak.any(all_inside, axis=2), False)
