"""Pythia settings, seeds, PF categories, and that the alternative configuration changes the showers."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.generate.pythia import (
    ALTERNATIVE_SETTINGS,
    GeneratorConfig,
    concatenate_batches,
    generate_events,
    pf_pdg_id,
    pythia_settings,
    task_seeds,
)

from coffea_lorentz.generate import available

requires_generator = pytest.mark.skipif(
    not available(), reason="pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"process": "wjets"},
        {"process": "qcd"},  # QCD needs a pT-hat threshold
        {"process": "ttbar", "pthat_min_gev": -1.0},
        {"process": "ttbar", "max_abs_eta": 0.0},
        {"process": "ttbar", "min_particle_pt_gev": -0.5},
    ],
)
def test_invalid_config_raises(kwargs):
    with pytest.raises(InvalidInputError):
        GeneratorConfig(**kwargs)


@pytest.mark.parametrize(
    ("process", "expected"),
    [("ttbar", ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on", "24:onIfAny = 1 2 3 4 5")), ("qcd", ("HardQCD:all = on",))],
)
def test_settings_name_process_seed_and_pthat(process, expected):
    settings = pythia_settings(GeneratorConfig(process=process, pthat_min_gev=450.0), 1234)
    for line in (*expected, "Random:setSeed = on", "Random:seed = 1234", "PhaseSpace:pTHatMin = 450", "Beams:eCM = 13000"):
        assert line in settings
    assert not set(ALTERNATIVE_SETTINGS) & set(settings)


def test_alternative_adds_its_settings_last_but_before_extra():
    config = GeneratorConfig(process="qcd", pthat_min_gev=100.0, alternative=True, extra_settings=("Tune:pp = 14",))
    settings = pythia_settings(config, 1)
    assert settings[-1 - len(ALTERNATIVE_SETTINGS) : -1] == ALTERNATIVE_SETTINGS
    assert settings[-1] == "Tune:pp = 14"
    assert config.variation == "alternative"


@pytest.mark.parametrize("seed", [0, 900_000_001])
def test_out_of_range_pythia_seed_raises(seed):
    with pytest.raises(InvalidInputError):
        pythia_settings(GeneratorConfig(process="ttbar"), seed)


def test_task_seeds_are_reproducible_distinct_and_in_range():
    seeds = task_seeds(42, 50)
    assert seeds == task_seeds(42, 50)
    assert task_seeds(42, 10) == seeds[:10]
    assert len(set(seeds)) == 50
    assert all(1 <= s <= 900_000_000 for s in seeds)
    assert task_seeds(43, 10) != seeds[:10]
    assert task_seeds(42, 10, stream=(1, 0)) != seeds[:10]


@pytest.mark.parametrize(
    ("pdg_id", "charge", "expected"),
    [(211, 1, 211), (-321, -1, -211), (2212, 1, 211), (-11, 1, -11), (13, -1, 13), (22, 0, 22), (2112, 0, 130), (130, 0, 130)],
)
def test_pf_pdg_id_categories(pdg_id, charge, expected):
    assert pf_pdg_id(np.array([pdg_id]), np.array([charge]))[0] == expected


def _qcd_events(alternative: bool):
    config = GeneratorConfig(process="qcd", pthat_min_gev=500.0, alternative=alternative)
    return concatenate_batches(list(generate_events(config, n_events=60, seed=7, batch_size=30)))


@requires_generator
def test_same_seed_gives_identical_events():
    config = GeneratorConfig(process="ttbar", pthat_min_gev=300.0)
    first, second = (concatenate_batches(list(generate_events(config, n_events=10, seed=99))) for _ in range(2))
    assert ak.to_list(first.particles) == ak.to_list(second.particles)
    assert ak.to_list(first.genparts) == ak.to_list(second.genparts)
    np.testing.assert_array_equal(first.event, np.arange(1, 11))


@requires_generator
def test_alternative_configuration_changes_the_shower_not_the_hard_process():
    nominal, alternative = _qcd_events(False), _qcd_events(True)
    # Same seed: the first hard scattering is drawn before any shower and agrees; afterwards the random
    # streams part. The softer final-state shower gives fewer particles.
    first_hard = lambda batch: ak.to_list(batch.genparts[0][batch.genparts[0].status == 23])  # noqa: E731
    assert first_hard(nominal) == first_hard(alternative)
    n_nominal = ak.num(nominal.particles).to_numpy()
    n_alternative = ak.num(alternative.particles).to_numpy()
    assert not np.array_equal(n_nominal, n_alternative)
    assert n_alternative.mean() < 0.95 * n_nominal.mean()


@requires_generator
def test_ttbar_events_have_two_hadronic_top_decays_in_the_truth():
    config = GeneratorConfig(process="ttbar")
    batch = concatenate_batches(list(generate_events(config, n_events=20, seed=5)))
    n_tops = ak.num(batch.top_partons).to_numpy()
    assert (n_tops == 2).mean() > 0.9
    flat = ak.flatten(batch.top_partons)
    top = flat[:, 0]
    mass = np.sqrt(np.maximum(top.E**2 - top.px**2 - top.py**2 - top.pz**2, 0))
    assert np.all(np.abs(mass - 172.5) < 20)
    assert ak.all(abs(batch.particles.pdg_id) != 12)
