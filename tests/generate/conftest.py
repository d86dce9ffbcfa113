"""Small generated samples shared by the generator tests (each made once per session, in seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffea_lorentz.generate import available

#: Skip reason for every test that runs Pythia or FastJet.
NEEDS_GENERATOR = "pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"

#: Events of the shared samples: enough for a few dozen jets, small enough for seconds.
N_PFNANO_EVENTS = 80
N_DATASET_EVENTS = 100


@pytest.fixture(scope="session")
def pfnano_ttbar(tmp_path_factory) -> Path:
    """A PFNano file of 80 tt̄ events (pT-hat > 300 GeV, FatJets above 200 GeV), two tasks of 40 events."""
    if not available():
        pytest.skip(NEEDS_GENERATOR)
    from coffea_lorentz.generate import GeneratorConfig, generate_pfnano

    path = tmp_path_factory.mktemp("pfnano") / "ttbar.root"
    generate_pfnano(
        path,
        generator=GeneratorConfig(process="ttbar", pthat_min_gev=300.0),
        n_events=N_PFNANO_EVENTS,
        seed=3,
        events_per_task=40,
    )
    return path


@pytest.fixture(scope="session")
def dataset_file(tmp_path_factory) -> Path:
    """A top-tagging dataset from 100 tt̄ + 100 QCD events (pT-hat > 500 GeV), classes balanced."""
    if not available():
        pytest.skip(NEEDS_GENERATOR)
    from coffea_lorentz.generate import GeneratorConfig, generate_dataset

    path = tmp_path_factory.mktemp("dataset") / "jets.h5"
    generators = [GeneratorConfig(process=p, pthat_min_gev=500.0) for p in ("ttbar", "qcd")]
    generate_dataset(path, generators=generators, n_events=N_DATASET_EVENTS, seed=5, events_per_task=50)
    return path
