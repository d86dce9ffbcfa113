"""``run --cluster slurm`` on a real one-node Slurm cluster (munged, slurmctld, slurmd on loopback):
worker jobs submitted through dask-jobqueue, scores equal to a LocalCluster run, no job left behind,
and a worker job cancelled or over its wall time in the middle of a run."""

from __future__ import annotations

import json
import signal
import threading
import time

import awkward as ak
import numpy as np
import psutil
import pytest
import uproot

from coffea_lorentz.cli import main
from coffea_lorentz.testing.slurm import slurm_cluster_fixture

from .conftest import EVENTS_PER_FILE, make_fileset

slurm_cluster = slurm_cluster_fixture(scope="module")
TAGGER = "lorentznet"
SCORE = f"FatJet_{TAGGER}_score"
N_FILES = 4
#: One batch job per worker: one core, memory for torch and coffea.
JOB_OPTIONS = ["--worker-cores", "1", "--worker-memory", "3GB"]


def _base(tmp_path, out_name: str, *extra: str) -> list[str]:
    fileset_path = tmp_path / "fileset.json"
    if not fileset_path.exists():
        fileset_path.write_text(json.dumps(make_fileset(tmp_path / "inputs", N_FILES)))
    return ["run", str(fileset_path), "--output", str(tmp_path / out_name), "--backend", "torch",
            "--tagger", TAGGER, "--chunksize", "1", "--no-progress", *extra]


def _rows(out) -> ak.Array:
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["events"] == N_FILES * EVENTS_PER_FILE
    files = sorted(out.glob("sample/*.root"))
    return ak.concatenate([uproot.open(path)["Events"].arrays(library="ak") for path in files])


def _assert_same_output(out, reference) -> None:
    rows, expected = _rows(out), _rows(reference)
    assert ak.to_list(rows["event"]) == ak.to_list(expected["event"])
    # scoring in-process with torch on the workers: the same jets give the same scores, bit for bit
    assert ak.to_list(ak.num(rows[SCORE])) == ak.to_list(ak.num(expected[SCORE]))
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(rows[SCORE])), ak.to_numpy(ak.flatten(expected[SCORE])))


@pytest.fixture(scope="module")
def local_reference(tmp_path_factory):
    """The same fileset tagged on a LocalCluster of two workers."""
    folder = tmp_path_factory.mktemp("slurm-reference")
    assert main(_base(folder, "out", "--workers", "2")) == 0
    return folder


@pytest.fixture
def inputs(local_reference, tmp_path, monkeypatch):
    """The reference's fileset in ``tmp_path`` (the jobs' slurm-N.out files land in the working directory)."""
    (tmp_path / "fileset.json").write_text((local_reference / "fileset.json").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _job_logs(folder) -> list[str]:
    return [path.read_text(errors="replace") for path in sorted(folder.glob("slurm-*.out"))]


@pytest.mark.slow
def test_run_on_a_slurm_cluster_equals_a_local_run(slurm_cluster, local_reference, inputs):
    assert main(_base(inputs, "out", "--cluster", "slurm", "--workers", "2", *JOB_OPTIONS,
                      "--walltime", "00:20:00")) == 0
    _assert_same_output(inputs / "out", local_reference / "out")
    logs = _job_logs(inputs)
    assert len(logs) == 2, "one batch job per worker"
    for log in logs:  # each job started a dask worker from this environment, which joined the scheduler
        assert "Registered to:" in log and "Start worker at:" in log
    assert slurm_cluster.wait_until_empty(timeout_s=30) == [], "the run cancels its worker jobs at the end"


def _cancel_a_worker_job_once_chunks_are_written(slurm_cluster, out, stop: threading.Event, cancelled: list) -> None:
    while not stop.is_set():
        running = [job for job in slurm_cluster.jobs() if job["state"] == "RUNNING"]
        written = len(list(out.glob("sample/*.root")))
        if len(running) == 2 and written:
            slurm_cluster.command("scancel", running[0]["id"])
            cancelled.append((running[0]["id"], written))
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_a_worker_job_cancelled_mid_run(slurm_cluster, local_reference, inputs):
    out = inputs / "out"
    stop, cancelled = threading.Event(), []
    watcher = threading.Thread(target=_cancel_a_worker_job_once_chunks_are_written,
                               args=(slurm_cluster, out, stop, cancelled), daemon=True)
    watcher.start()
    try:
        status = main(_base(inputs, "out", "--cluster", "slurm", "--workers", "2", *JOB_OPTIONS,
                            "--walltime", "00:20:00"))
    finally:
        stop.set()
        watcher.join()
    assert cancelled, "no worker job was running while chunks were written"
    assert cancelled[0][1] < N_FILES * EVENTS_PER_FILE, "the job was cancelled with chunks still to do"
    if status != 0:  # the chunk the cancelled worker held failed alone; the rerun does only what is missing
        assert main(_base(inputs, "out", "--cluster", "slurm", "--workers", "1", *JOB_OPTIONS)) == 0
    _assert_same_output(out, local_reference / "out")
    assert slurm_cluster.wait_until_empty(timeout_s=30) == []


def _job_processes(job_id: str) -> list[psutil.Process]:
    """The processes a running Slurm job started (its batch shell, the nanny and the worker)."""
    found = []
    for process in psutil.process_iter(["pid"]):
        try:
            if process.environ().get("SLURM_JOB_ID") == job_id:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _pause_the_workers_once_chunks_are_written(slurm_cluster, out, stop: threading.Event, paused: list) -> None:
    """SIGSTOP both worker jobs' processes after the first chunk files: the run is then still in
    flight, with chunks held by the paused workers, when Slurm's time limit ends the jobs."""
    while not stop.is_set():
        running = [job for job in slurm_cluster.jobs() if job["state"] == "RUNNING"]
        written = len(list(out.glob("sample/*.root")))
        if len(running) == 2 and written:
            for job in running:
                for process in _job_processes(job["id"]):
                    process.send_signal(signal.SIGSTOP)
                paused.append(job["id"])
            return
        time.sleep(0.2)


@pytest.mark.slow
def test_worker_jobs_ended_by_their_wall_time_mid_run(slurm_cluster, local_reference, inputs):
    out = inputs / "out"
    stop, paused = threading.Event(), []
    watcher = threading.Thread(target=_pause_the_workers_once_chunks_are_written,
                               args=(slurm_cluster, out, stop, paused), daemon=True)
    watcher.start()
    try:
        # one minute is Slurm's shortest time limit
        status = main(_base(inputs, "out", "--cluster", "slurm", "--workers", "2", *JOB_OPTIONS,
                            "--walltime", "00:01:00"))
    finally:
        stop.set()
        watcher.join()
    assert len(paused) == 2, "the worker jobs were not both running while chunks were written"
    logs = _job_logs(inputs)
    for job_id in paused:  # Slurm ended both first jobs at their time limit; new jobs finished the run
        assert f"JOB {job_id} ON {slurm_cluster.node_name} CANCELLED AT" in "".join(logs)
        assert any(f"JOB {job_id} " in log and "DUE TO TIME LIMIT" in log for log in logs)
    assert len(logs) >= 3, "a job that ended was replaced"
    if status != 0:  # chunks held by the ended workers failed alone; the rerun does only what is missing
        assert main(_base(inputs, "out", "--cluster", "slurm", "--workers", "1", *JOB_OPTIONS)) == 0
    _assert_same_output(out, local_reference / "out")
    assert slurm_cluster.wait_until_empty(timeout_s=30) == []
