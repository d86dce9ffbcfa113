"""A run whose Dask workers share no disk with the client, writing to real remote storage.

The workers are separate ``dask worker`` processes in private mount namespaces, with an empty tmpfs
over pytest's temporary folders (where the client's inputs and output parent live); inputs are read
from and outputs written to a real XRootD server through ``root://`` URLs. Every chunk file must
reach the server, ``manifest.json`` must be written there, rows must equal events, and nothing may
appear on the client's disk.
"""

from __future__ import annotations

import json
import shutil

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.testing import (
    isolated_dask_cluster_fixture,
    require_triton,
    server_unavailable_reason,
    xrootd_server_fixture,
)

from .conftest import EVENTS_PER_FILE, make_fileset

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                       reason=f"no local Triton server: {server_unavailable_reason()}"),
]

xrootd_server = xrootd_server_fixture(scope="module")
isolated_cluster = isolated_dask_cluster_fixture(2, scope="module")

TAGGER = "lorentznet"
N_FILES = 3


def test_workers_without_the_clients_disk_write_to_xrootd(xrootd_server, isolated_cluster, tmp_path):
    local = make_fileset(tmp_path / "inputs", N_FILES)
    remote_files = {}
    for path in local["sample"]["files"]:
        served = f"/inputs/{path.rsplit('/', 1)[1]}"
        target = xrootd_server.local_path(served)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        remote_files[xrootd_server.url_for(served)] = "Events"
    output = xrootd_server.url_for("/results/run1")
    client_side = tmp_path / "client-cwd"
    client_side.mkdir()

    config = RunConfig(taggers=(TAGGER,), backend="triton", scheduler=isolated_cluster.scheduler_address,
                       chunksize=3, progress=False)
    summary = run_tagging({"sample": {"files": remote_files}}, output, config)
    assert summary.complete, [r.reason for r in summary.failed] + [f.error for f in summary.bad_files]
    assert summary.events == N_FILES * EVENTS_PER_FILE and summary.processed == 2 * N_FILES

    on_server = xrootd_server.local_path("/results/run1")
    manifest = json.loads((on_server / "manifest.json").read_text())
    assert manifest["events"] == N_FILES * EVENTS_PER_FILE
    for chunk in manifest["chunks"]:
        with uproot.open(on_server / chunk["path"]) as file:
            assert file["Events"].num_entries == chunk["rows"] == chunk["entry_stop"] - chunk["entry_start"]
    assert not any(client_side.iterdir())
    rows = ak.concatenate([uproot.open(url)["Events"].arrays(library="ak") for url in summary.outputs])
    assert len(rows) == N_FILES * EVENTS_PER_FILE
    assert np.isfinite(ak.to_numpy(ak.flatten(rows[f"FatJet_{TAGGER}_score"]))).sum() > 0

    rerun = run_tagging({"sample": {"files": remote_files}}, output, config)
    assert rerun.complete and (rerun.processed, rerun.skipped) == (0, 2 * N_FILES)
