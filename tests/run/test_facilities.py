"""Clusters from analysis facilities: a real dask-gateway server, batch job scripts, and the check
that every worker can run the job before any chunk does. Runs on a real Slurm cluster are in
test_slurm.py."""

from __future__ import annotations

import awkward as ak
import dask
import numpy as np
import psutil
import pytest

from coffea_lorentz.errors import ConfigurationError
from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.run.executors import ClusterSpec, DaskExecutor, job_script
from coffea_lorentz.serve import free_port
from coffea_lorentz.testing import dask_gateway_server_fixture, require_triton, server_unavailable_reason

from .conftest import EVENTS_PER_FILE, make_fileset, read_rows

dask_gateway_server = dask_gateway_server_fixture(scope="module")
TAGGER = "lorentznet"


@pytest.mark.parametrize("kind", ["htcondor", "slurm"])
def test_job_scripts_activate_the_environment_and_state_resources(kind):
    spec = ClusterSpec.parse(kind, cores=2, memory="4GB", walltime="02:00:00",
                             environment=("source /cvmfs/sw/coffea-lorentz/bin/activate",))
    script = job_script(spec)
    assert "source /cvmfs/sw/coffea-lorentz/bin/activate" in script
    assert "distributed.cli.dask_worker tcp://" in script and "--nthreads 2" in script
    if kind == "slurm":
        assert "#SBATCH --cpus-per-task=2" in script and "#SBATCH --mem=4G" in script and "#SBATCH -t 02:00:00" in script
    else:
        assert "MY.DaskWorkerCores = 2" in script and "MY.DaskWorkerMemory = 4000000000" in script
        assert "RequestDisk" in script and "+MaxRuntime = 7200" in script
    # the script activates the environment before it starts the worker
    assert script.index("activate") < script.index("distributed.cli.dask_worker")


def test_default_job_environment_is_the_clients_own():
    import sys

    script = job_script(ClusterSpec.parse("slurm", cores=1, memory="2GB", walltime="00:10:00"))
    assert f"source {sys.prefix}/bin/activate" in script


@pytest.mark.parametrize("text, kind, address", [
    ("local", "local", None), ("tcp://10.0.0.1:8786", "address", "tcp://10.0.0.1:8786"),
    ("gateway", "gateway", None), ("gateway:https://hub.example.org/services/dask-gateway", "gateway",
                                   "https://hub.example.org/services/dask-gateway"),
    ("htcondor", "htcondor", None), ("slurm", "slurm", None), ("in-process", "in-process", None)])
def test_cluster_specs(text, kind, address):
    spec = ClusterSpec.parse(text)
    assert (spec.kind, spec.address, spec.owned) == (kind, address, kind != "address")


def test_unknown_cluster_is_refused_before_anything_runs():
    with pytest.raises(ConfigurationError, match="expected local, tcp://HOST:PORT, gateway"):
        RunConfig(cluster="kubernetes")


@pytest.mark.slow
def test_a_worker_that_cannot_reach_the_server_is_named(dask_cluster):
    from distributed import Client

    port = free_port()
    with Client(dask_cluster.scheduler_address) as client:
        with pytest.raises(ConfigurationError) as error:
            DaskExecutor(client).check_workers(f"127.0.0.1:{port}")
        workers = list(client.scheduler_info()["workers"])
    lines = str(error.value).splitlines()[1:]
    assert len(lines) == len(workers) == 2
    for line, worker in zip(lines, sorted(workers)):
        assert line.strip().startswith(f"worker {worker}") and f"cannot reach the Triton server at 127.0.0.1:{port}" in line


@pytest.mark.slow
@pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                    reason=f"no local Triton server: {server_unavailable_reason()}")
def test_run_on_a_dask_gateway_cluster(dask_gateway_server, dask_cluster, pfnano_file, tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 2)
    fileset["cms"] = {"files": {str(pfnano_file): "Events"}}
    common = dict(taggers=(TAGGER,), chunksize=4, progress=False)
    local = run_tagging(fileset, tmp_path / "local", RunConfig(scheduler=dask_cluster.scheduler_address, **common))
    with dask.config.set(dask_gateway_server.client_config()):
        summary = run_tagging(fileset, tmp_path / "gateway",
                              RunConfig(cluster=f"gateway:{dask_gateway_server.url}", n_workers=2, **common))
    assert summary.complete and summary.events == 2 * EVENTS_PER_FILE + 10
    rows, local_rows = read_rows(summary), read_rows(local)
    assert ak.to_list(rows["event"]) == ak.to_list(local_rows["event"])
    # Triton's dynamic batcher may merge concurrent requests differently in the two runs; a float32
    # tagger's scores then move by ~1e-7 relative (the batch composition, not the cluster).
    np.testing.assert_allclose(ak.to_numpy(ak.flatten(rows[f"FatJet_{TAGGER}_score"])),
                               ak.to_numpy(ak.flatten(local_rows[f"FatJet_{TAGGER}_score"])), rtol=0, atol=1e-6)
    # the gateway cluster was shut down at the end of the run: no worker it started is left
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
                 and "dask-gateway" in " ".join(p.info["cmdline"]) and "worker" in " ".join(p.info["cmdline"])]
    for process in leftovers:
        try:
            process.wait(timeout=30)
        except psutil.TimeoutExpired:
            pytest.fail(f"gateway worker left running: {' '.join(process.info['cmdline'])}")
