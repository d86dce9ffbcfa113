"""Dask workers that share no disk with the client: each sees an empty tmpfs over the hidden
directories, and reaches the client's files only through the XRootD server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.testing import IsolatedDaskCluster, isolation_unavailable_reason, require_storage

pytestmark = pytest.mark.slow


@pytest.fixture
def client(isolated_cluster):
    import distributed

    with distributed.Client(isolated_cluster.scheduler_address, timeout="30s") as client:
        yield client


def test_workers_do_not_see_the_clients_files(client, tmp_path):
    mine = tmp_path / "input.root"
    mine.write_text("client data")
    mine = str(mine)
    seen = client.run(os.path.exists, mine)
    assert len(seen) == 2
    assert not any(seen.values()), seen
    assert not any(client.run(os.path.exists, str(tmp_path)).values())
    # Not everything is gone: the environment outside the hidden directory is shared.
    assert all(client.run(os.path.exists, sys.executable).values())


def test_a_workers_file_stays_on_that_worker(client, tmp_path):
    # Functions sent to the workers are defined inside the tests: the scheduler and the workers
    # cannot import a test module, and Dask pickles only local functions by value.
    def _write_text(path: str, text: str) -> str:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        return path

    path = str(tmp_path / "worker-only" / "chunk.root")
    worker = sorted(client.scheduler_info()["workers"])[0]
    client.run(_write_text, path, "worker data", workers=[worker])

    assert not os.path.exists(path)
    seen = client.run(os.path.exists, path)
    assert seen[worker] is True
    assert [address for address, exists in seen.items() if exists] == [worker]


def test_a_worker_writes_through_xrootd_and_the_client_reads_it(client, xrootd_server, tmp_path):
    def _write_root_through_xrootd(local_dir: str, url: str) -> int:
        """On a worker: write a ROOT file in the worker's own (hidden) directory, upload it under a
        temporary name through fsspec and rename it into place; returns the bytes written."""
        import fsspec

        local = Path(local_dir) / "chunk.root"
        local.parent.mkdir(parents=True, exist_ok=True)
        with uproot.recreate(local) as file:
            file["Events"] = {"event": np.arange(100, 110, dtype=np.uint64)}
        fs, path = fsspec.core.url_to_fs(url)
        fs.mkdir(os.path.dirname(path))
        with fs.open(path + ".tmp", "wb") as target:
            target.write(local.read_bytes())
        fs.mv(path + ".tmp", path)
        return local.stat().st_size

    url = xrootd_server.url_for("/out/dataset/chunk_100-109.root")
    size = client.submit(_write_root_through_xrootd, str(tmp_path / "scratch"), url, pure=False).result()

    assert not (tmp_path / "scratch").exists()
    fs = xrootd_server.filesystem()
    assert fs.ls("/out/dataset", detail=False) == ["chunk_100-109.root"]
    assert xrootd_server.local_path("/out/dataset/chunk_100-109.root").stat().st_size == size
    with uproot.open(url) as file:
        np.testing.assert_array_equal(file["Events"]["event"].array(library="np"), np.arange(100, 110))


def test_stop_kills_every_process(tmp_path):
    reason = isolation_unavailable_reason()
    if reason is not None:
        (pytest.fail if require_storage() else pytest.skip)(f"no isolated Dask workers: {reason}")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    cluster = IsolatedDaskCluster(1, hidden=[hidden], log_dir=tmp_path / "logs")
    with cluster:
        pids = cluster.pids
        assert len(pids) == 2 and cluster.is_running()
    cluster.stop()
    assert cluster.pids == [] and not cluster.is_running()
    for pid in pids:  # reaped, not merely killed
        assert not Path(f"/proc/{pid}").exists()
    assert "isolated-0" in (tmp_path / "logs" / "worker-0.log").read_text()


def test_hiding_the_python_environment_is_refused():
    with pytest.raises(InvalidInputError, match="Python environment"):
        IsolatedDaskCluster(1, hidden=[sys.prefix])
