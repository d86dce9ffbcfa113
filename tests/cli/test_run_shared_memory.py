"""``coffea-lorentz run --shared-memory``: inputs through Triton system shared memory also to a
``--server`` on this host, with the scores of plain gRPC."""

from __future__ import annotations

import os

import awkward as ak
import numpy as np
import uproot

from coffea_lorentz.cli import main
from coffea_lorentz.infer.shared_memory import REGION_PREFIX, SHM_FOLDER
from coffea_lorentz.testing import require_triton, triton_server_fixture, write_pfnano_fileset

triton_server = triton_server_fixture(taggers=("lorentznet",), scope="module", skip_if_unavailable=not require_triton())


def _own_regions() -> list[str]:
    return sorted(path.name for path in SHM_FOLDER.glob(f"{REGION_PREFIX}{os.getpid()}-*"))


def _scores(folder) -> np.ndarray:
    files = sorted(folder.rglob("*.root"))
    return np.concatenate([ak.to_numpy(ak.flatten(uproot.open(f)["Events"]["FatJet_lorentznet_score"].array()))
                           for f in files])


def test_shared_memory_to_a_given_server_on_this_host_scores_like_grpc(tmp_path, triton_server):
    fileset = write_pfnano_fileset(tmp_path / "inputs", 2)
    inputs = [str(path) for path in fileset["sample"]["files"]]
    common = ["--tagger", "lorentznet", "--server", f"grpc://{triton_server.grpc_url}", "--workers", "0",
              "--chunksize", "3", "--no-progress"]
    before = _own_regions()
    assert main(["run", *inputs, "--output", str(tmp_path / "off"), "--shared-memory", "off", *common]) == 0
    assert _own_regions() == before  # plain gRPC: no region made
    assert main(["run", *inputs, "--output", str(tmp_path / "on"), "--shared-memory", "on", *common]) == 0
    assert len(_own_regions()) > len(before)  # this process's client wrote its inputs there
    np.testing.assert_allclose(_scores(tmp_path / "on"), _scores(tmp_path / "off"), rtol=0, atol=1e-6)
