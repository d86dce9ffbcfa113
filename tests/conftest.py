"""Fixtures shared by the whole suite: the real CMS samples, small PFNano files made on the spot."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

#: The real CMS samples live beside the repository, never inside it.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # coffea warns about cross-references that NanoAOD test files lack; not ours to fix.
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


def write_small_pfnano(path: Path, *, seed: int = 7, layout: str = "new") -> Path:
    """Write a small PFNano-layout file with the awkward cases batching must survive.

    Five events: one with no FatJet, one jet with no constituents, one jet with 150 constituents
    (more than the default 128 kept), and jets of mixed lengths. ``layout="new"`` writes
    ``FatJet_nConstituents`` and stores constituents jet after jet; ``layout="old"`` writes only
    ``FatJetPFCands_jetIdx`` with the constituents of different jets interleaved.
    """
    import awkward as ak
    import numpy as np
    import uproot

    rng = np.random.default_rng(seed)
    constituents_per_jet = [[12, 40], [], [0, 5], [150], [3, 70, 1]]
    run, lumi, event = [], [], []
    fatjet, pfcands, links = [], [], []
    for i, jets in enumerate(constituents_per_jet):
        n_pf = sum(jets) + 10
        pf = {
            "pt": rng.exponential(20.0, n_pf).astype(np.float32) + 0.5,
            "eta": rng.normal(0.0, 1.0, n_pf).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, n_pf).astype(np.float32),
            "mass": np.where(rng.random(n_pf) < 0.6, 0.1396, 0.0).astype(np.float32),
            "pdgId": np.where(rng.random(n_pf) < 0.6, 211, 22).astype(np.int32),
            "charge": np.where(rng.random(n_pf) < 0.6, 1, 0).astype(np.int32),
        }
        pf_index = rng.permutation(n_pf)[: sum(jets)].astype(np.int32)
        jet_index = np.repeat(np.arange(len(jets), dtype=np.int32), jets)
        if layout == "old":
            order = np.random.default_rng(seed + 1000 + i).permutation(len(jet_index))
            pf_index, jet_index = pf_index[order], jet_index[order]
        fatjet.append({
            "pt": (np.sort(rng.uniform(200, 900, len(jets)))[::-1]).astype(np.float32),
            "eta": rng.normal(0, 1, len(jets)).astype(np.float32),
            "phi": rng.uniform(-np.pi, np.pi, len(jets)).astype(np.float32),
            "mass": rng.uniform(10, 200, len(jets)).astype(np.float32),
            "nConstituents": np.asarray(jets, dtype=np.uint8 if max(jets, default=0) < 256 else np.int32),
        })
        pfcands.append(pf)
        links.append({"jetIdx": jet_index, "pFCandsIdx": pf_index})
        run.append(1)
        lumi.append(100 + i)
        event.append(5000 + 17 * i)

    def jagged(records: list[dict], field: str):
        return ak.Array([r[field] for r in records])

    fatjet_fields = ["pt", "eta", "phi", "mass"] + (["nConstituents"] if layout == "new" else [])
    link_fields = ["pFCandsIdx"] + (["jetIdx"] if layout == "old" else [])
    tree = {
        "run": np.asarray(run, dtype=np.uint32),
        "luminosityBlock": np.asarray(lumi, dtype=np.uint32),
        "event": np.asarray(event, dtype=np.uint64),
        "FatJet": ak.zip({f: jagged(fatjet, f) for f in fatjet_fields}),
        "PFCands": ak.zip({f: jagged(pfcands, f) for f in pfcands[0]}),
        "FatJetPFCands": ak.zip({f: jagged(links, f) for f in link_fields}),
    }
    with uproot.recreate(path) as file:
        events = file.mktree(
            "Events",
            {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in tree.items()},
            field_name=lambda outer, inner: inner if outer == "" else f"{outer}_{inner}",
            counter_name=lambda counted: f"n{counted}",
        )
        events.extend(tree)
    return path


@pytest.fixture(params=["new", "old"])
def small_pfnano(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small PFNano file in each layout (see :func:`write_small_pfnano`)."""
    path = tmp_path_factory.mktemp("pfnano") / f"small_{request.param}.root"
    return write_small_pfnano(path, layout=request.param)


def require_triton() -> bool:
    """True where a missing Triton server must fail the tests instead of skipping them (``make test``)."""
    import os

    return os.environ.get("COFFEA_LORENTZ_REQUIRE_TRITON") == "1"


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
