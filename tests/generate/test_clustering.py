"""Jet clustering, soft drop, N-subjettiness and top matching on hand-made particles."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.generate import available
from coffea_lorentz.generate.clustering import (
    JetConfig,
    cluster_jets,
    delta_r,
    gather_constituents,
    jet_observables,
    top_matched,
)

requires_generator = pytest.mark.skipif(
    not available(), reason="pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"
)


def _massless(pt, eta, phi) -> dict[str, np.ndarray]:
    pt, eta, phi = (np.asarray(x, dtype=np.float64) for x in (pt, eta, phi))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return {"px": px, "py": py, "pz": pz, "E": np.sqrt(px**2 + py**2 + pz**2)}


def _events(*events: dict[str, np.ndarray]) -> ak.Array:
    return ak.Array([ak.to_list(ak.zip(e)) for e in events])


@pytest.mark.parametrize("kwargs", [{"radius": 0.0}, {"min_pt_gev": -1.0}, {"softdrop_zcut": 0.5}])
def test_invalid_jet_config_raises(kwargs):
    with pytest.raises(InvalidInputError):
        JetConfig(**kwargs)


def test_delta_r_wraps_phi():
    assert delta_r(0.0, np.pi - 0.1, 0.0, -np.pi + 0.1) == pytest.approx(0.2)
    assert delta_r(1.0, 0.0, -1.0, 0.0) == pytest.approx(2.0)


@requires_generator
def test_two_back_to_back_prongs_give_two_pt_ordered_jets():
    # Event 0: a 300 GeV and a 500 GeV cluster back to back, plus a soft stray particle; event 1: nothing above threshold.
    event0 = _massless([200, 100, 480, 20, 5], [0.1, 0.2, -0.5, -0.4, 2.0], [0.0, 0.1, np.pi, np.pi - 0.1, 1.5])
    event1 = _massless([50, 40], [0.0, 1.0], [0.0, 2.0])
    particles = _events(event0, event1)
    jets = cluster_jets(particles, JetConfig(min_pt_gev=200.0))
    assert ak.num(jets.p4).to_list() == [2, 0]
    pt = np.hypot(jets.p4.px, jets.p4.py)[0].to_list()
    assert pt[0] > pt[1]
    assert jets.constituent_index[0].to_list() == [[2, 3], [0, 1]]
    constituents = gather_constituents(particles, jets.constituent_index)
    observables = jet_observables(constituents, JetConfig())
    np.testing.assert_allclose(observables["pt"], pt, rtol=1e-6)
    assert observables["n_constituents"].tolist() == [2, 2]


@requires_generator
def test_soft_drop_removes_a_soft_wide_angle_emission_and_keeps_hard_prongs():
    # Two hard prongs (z = 0.4) and a 1 % wide-angle emission inside R = 0.8.
    jet = _massless([300, 200, 5], [0.0, 0.3, -0.6], [0.0, 0.1, -0.3])
    constituents = ak.Array([ak.to_list(ak.zip(jet))])
    observables = jet_observables(constituents, JetConfig())
    two_prongs = _massless([300, 200], [0.0, 0.3], [0.0, 0.1])
    e, px, py, pz = (two_prongs[k].sum() for k in ("E", "px", "py", "pz"))
    assert observables["msoftdrop"][0] == pytest.approx(np.sqrt(e**2 - px**2 - py**2 - pz**2), rel=1e-4)
    assert observables["mass"][0] > observables["msoftdrop"][0]
    # Two prongs: tau2 is much smaller than tau1.
    assert observables["tau21"][0] < 0.2


@requires_generator
def test_top_matched_needs_all_four_partons_inside_the_jet():
    jets = ak.Array([ak.to_list(ak.zip(_massless([500.0, 400.0], [0.0, 1.0], [0.0, 3.0])))])
    inside = _massless([450, 150, 150, 150], [0.1, -0.3, 0.2, 0.4], [0.1, 0.2, -0.3, 0.3])
    one_outside = _massless([350, 100, 100, 100], [1.0, 1.2, 0.9, 2.5], [3.0, 3.1, 2.9, 3.0])
    tops = ak.Array([[ak.to_list(ak.zip(inside)), ak.to_list(ak.zip(one_outside))]])
    assert top_matched(jets, tops, 0.8).to_list() == [[True, False]]


@requires_generator
def test_empty_events_and_single_particle_jets_are_handled():
    lone = _massless([300.0], [0.0], [0.0])
    particles = ak.Array([ak.to_list(ak.zip(lone)), [], ak.to_list(ak.zip(_massless([1.0], [0.0], [0.0])))])
    jets = cluster_jets(particles, JetConfig())
    assert ak.num(jets.p4).to_list() == [1, 0, 0]
    observables = jet_observables(gather_constituents(particles, jets.constituent_index), JetConfig())
    assert observables["n_constituents"].tolist() == [1]
    assert observables["msoftdrop"][0] == pytest.approx(0.0, abs=1e-3)
    assert observables["tau21"][0] == 0.0 and observables["tau32"][0] == 0.0
    empty = jet_observables(gather_constituents(particles[1:2], jets.constituent_index[1:2]), JetConfig())
    assert all(len(v) == 0 for v in empty.values())
