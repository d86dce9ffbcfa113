"""Fixtures shared by the whole suite: the real CMS samples, small PFNano files made on the spot, a Dask cluster."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from coffea_lorentz.testing import write_small_pfnano

#: The real CMS samples live beside the repository, never inside it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # coffea warns about cross-references that the CMS samples and the small synthetic files lack; the
    # generated PFNano files carry every one (tests/generate/test_pfnano_inputs.py reads them with
    # warnings as errors).
    warnings.filterwarnings("ignore", message="Missing cross-reference index", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message="Branch .* already exists", category=RuntimeWarning)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``, or skip when the CMS samples are not beside the checkout."""
    if not (SHARED_DATA / "pfnano.root").is_file():
        pytest.skip(f"CMS samples not found at {SHARED_DATA} (../shared/data beside the checkout)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pfnano_file(shared_data: Path) -> Path:
    """The real CMS PFNano sample: 10 events, 24 FatJets, older layout indexed by FatJetPFCands_jetIdx."""
    return shared_data / "pfnano.root"


@pytest.fixture(params=["new", "old"])
def small_pfnano(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PFNano file in each layout (see :func:`write_small_pfnano`)."""
    path = tmp_path_factory.mktemp("pfnano") / f"small_{request.param}.root"
    return write_small_pfnano(path, layout=request.param)


@pytest.fixture(scope="session")
def dask_cluster():
    """A real Dask LocalCluster (2 worker processes) for the session; confirmed closed afterwards."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()
        assert cluster.status.name == "closed"
