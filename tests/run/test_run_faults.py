"""Faults a long run must survive, with the real parts: a Triton server killed and restarted, a
server hung past the request timeout, and the run itself ended by SIGTERM (what a batch system
sends at wall-time) — each time the output must equal a clean run's, with no row lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import awkward as ak
import numpy as np
import psutil
import pytest

from coffea_lorentz.errors import OutputError
from coffea_lorentz.models import pretrained
from coffea_lorentz.repository import build_repository
from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.serve import ServerConfig, TritonServer, free_port
from coffea_lorentz.testing import require_triton, server_unavailable_reason
from coffea_lorentz.testing.processes import wait_for_chunk_files

from .conftest import EVENTS_PER_FILE, make_fileset, read_rows

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                       reason=f"no local Triton server: {server_unavailable_reason()}"),
]

TAGGER = "identity"
SCORE = f"FatJet_{TAGGER}_score"
N_FILES = 8


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return build_repository(tmp_path_factory.mktemp("faults") / "models", {TAGGER: pretrained(TAGGER)},
                            intra_op_threads=1)


def server_config(repository: Path, ports: tuple[int, int, int]) -> ServerConfig:
    http, grpc, metrics = ports
    return ServerConfig(repository=repository, http_port=http, grpc_port=grpc, metrics_port=metrics)


def run_config(server: TritonServer, dask_cluster, **changes) -> RunConfig:
    options = dict(taggers=(TAGGER,), backend="triton", server_url=f"grpc://{server.grpc_url}",
                   scheduler=dask_cluster.scheduler_address, chunksize=1, progress=False)
    options.update(changes)
    return RunConfig(**options)


def rows_of(summary) -> tuple[list, np.ndarray]:
    rows = read_rows(summary)
    ids = list(zip(ak.to_list(rows["luminosityBlock"]), ak.to_list(rows["event"])))
    return ids, ak.to_numpy(ak.flatten(rows[SCORE]))


def run_in_thread(fileset, output, config):
    box = {}

    def target():
        try:
            box["summary"] = run_tagging(fileset, output, config)
        except BaseException as err:  # noqa: BLE001 - handed to the test thread
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


@pytest.mark.parametrize("shared_memory", [False, True])
def test_server_killed_and_restarted_mid_run(repository, dask_cluster, tmp_path, shared_memory):
    fileset = make_fileset(tmp_path / "inputs", N_FILES)
    ports = (free_port(), free_port(), free_port())
    server = TritonServer(server_config(repository, ports)).start()
    options = (("shared_memory", shared_memory),)
    try:
        clean = run_tagging(fileset, tmp_path / "clean", run_config(server, dask_cluster))
        thread, box = run_in_thread(fileset, tmp_path / "out", run_config(server, dask_cluster, client_options=options))
        done_before = wait_for_chunk_files(tmp_path / "out", 3)
        os.killpg(server.pid, signal.SIGKILL)
        server.stop()
        time.sleep(5.0)
        assert thread.is_alive(), "the run ended while the server was down"
        server = TritonServer(server_config(repository, ports)).start()
        thread.join(timeout=300)
    finally:
        server.stop()
    assert not thread.is_alive() and "error" not in box, box.get("error")
    summary = box["summary"]
    assert done_before < N_FILES * EVENTS_PER_FILE
    assert summary.complete and summary.events == N_FILES * EVENTS_PER_FILE
    assert summary.retries > 0 and summary.retry_wait_s > 4.0, summary.retries_line  # down for 5 s and more
    assert f"retries: {summary.retries} retr" in open(summary.log).read()
    assert clean.retries == 0 and clean.retries_line == "none"
    ids, scores = rows_of(summary)
    clean_ids, clean_scores = rows_of(clean)
    assert ids == clean_ids
    np.testing.assert_array_equal(scores, clean_scores)


def test_server_hung_for_twice_the_timeout(repository, dask_cluster, tmp_path):
    fileset = make_fileset(tmp_path / "inputs", N_FILES)
    timeout_s = 2.0
    with TritonServer(ServerConfig(repository=repository)) as server:
        config = run_config(server, dask_cluster, client_options=(("timeout_s", timeout_s),))
        clean = run_tagging(fileset, tmp_path / "clean", config)
        thread, box = run_in_thread(fileset, tmp_path / "out", config)
        wait_for_chunk_files(tmp_path / "out", 3)
        os.killpg(server.pid, signal.SIGSTOP)
        try:
            time.sleep(2 * timeout_s)
        finally:
            os.killpg(server.pid, signal.SIGCONT)
        thread.join(timeout=300)
    assert not thread.is_alive() and "error" not in box, box.get("error")
    summary = box["summary"]
    assert summary.complete and summary.events == N_FILES * EVENTS_PER_FILE
    ids, scores = rows_of(summary)
    clean_ids, clean_scores = rows_of(clean)
    assert ids == clean_ids
    np.testing.assert_array_equal(scores, clean_scores)


def _run_command(fileset_path: Path, output: Path) -> list[str]:
    return [sys.executable, "-m", "coffea_lorentz.cli", "run", str(fileset_path), "--output", str(output),
            "--tagger", TAGGER, "--workers", "2", "--chunksize", "1", "--no-progress"]


def test_sigterm_stops_everything_and_the_rerun_resumes(tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 2 * N_FILES)
    fileset_path = tmp_path / "fileset.json"
    fileset_path.write_text(json.dumps(fileset))
    output = tmp_path / "out"
    repositories_before = set(Path(tempfile.gettempdir()).glob("coffea-lorentz-repo-*"))
    process = subprocess.Popen(_run_command(fileset_path, output), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        wait_for_chunk_files(output, 2, timeout_s=240)
        with pytest.raises(OutputError, match="in use by another run"):
            run_tagging(fileset, output, RunConfig(taggers=(TAGGER,), backend="torch", n_workers=0, progress=False))
        children = psutil.Process(process.pid).children(recursive=True)
        assert any("tritonserver" in " ".join(c.cmdline()) for c in children if c.is_running())
        assert process.poll() is None, "the run finished before it could be interrupted"
        process.send_signal(signal.SIGTERM)
        text, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, text
    assert "rerun to resume" in text and "Traceback" not in text
    _, alive = psutil.wait_procs(children, timeout=15)
    assert not alive, f"left running after SIGTERM: {[' '.join(p.cmdline()) for p in alive]}"
    assert set(Path(tempfile.gettempdir()).glob("coffea-lorentz-repo-*")) <= repositories_before
    assert not (output / ".coffea-lorentz.lock").exists() and not list(output.rglob("*.tmp"))
    partial = len(list(output.glob("*/*.root")))
    assert 0 < partial < 2 * N_FILES * EVENTS_PER_FILE

    rerun = subprocess.run(_run_command(fileset_path, output), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["events"] == 2 * N_FILES * EVENTS_PER_FILE
    assert len(manifest["chunks"]) == 2 * N_FILES * EVENTS_PER_FILE
    assert f"{2 * N_FILES * EVENTS_PER_FILE - partial} processed, {partial} skipped" in rerun.stdout


def test_own_local_server_takes_shared_memory_with_the_same_scores(tmp_path):
    """The run's own server on loopback with the chunks in this process: shared memory on by
    default, rows and scores equal to a run with it off; a given server or remote workers: off."""
    from coffea_lorentz.run.local_server import shared_memory_safe

    assert shared_memory_safe("127.0.0.1:8001", server_given=False, cluster_kind="local")
    assert shared_memory_safe("127.0.0.1:8001", server_given=False, cluster_kind="in-process")
    assert not shared_memory_safe("127.0.0.1:8001", server_given=True, cluster_kind="local")
    assert not shared_memory_safe("10.0.0.7:8001", server_given=False, cluster_kind="local")
    assert not shared_memory_safe("127.0.0.1:8001", server_given=False, cluster_kind="address")
    fileset = make_fileset(tmp_path / "inputs", 2)
    common = dict(taggers=(TAGGER,), backend="triton", n_workers=0, chunksize=2, progress=False)
    shared = run_tagging(fileset, tmp_path / "shared", RunConfig(**common))
    plain = run_tagging(fileset, tmp_path / "plain", RunConfig(**common, client_options=(("shared_memory", False),)))
    assert shared.complete and plain.complete
    ids, scores = rows_of(shared)
    plain_ids, plain_scores = rows_of(plain)
    assert ids == plain_ids
    np.testing.assert_array_equal(scores, plain_scores)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_default_mode_resumes_a_trained_tagger_after(signal_number, tmp_path):
    """The run starting its own server, with the shipped (trained) LLoCa: interrupted at about
    half, the same command builds a new repository in a new process, recognises the model
    (its identity does not depend on the bytes of ``model.pt``), skips every finished chunk and
    ends with every event exactly once."""
    fileset = make_fileset(tmp_path / "inputs", N_FILES)
    fileset_path = tmp_path / "fileset.json"
    fileset_path.write_text(json.dumps(fileset))
    output = tmp_path / "out"
    command = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(fileset_path), "--output", str(output),
               "--tagger", "lloca", "--workers", "2", "--chunksize", "1", "--no-progress"]
    total = N_FILES * EVENTS_PER_FILE
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        wait_for_chunk_files(output, total // 3, timeout_s=240)
        children = psutil.Process(process.pid).children(recursive=True)
        assert process.poll() is None, "the run finished before it could be interrupted"
        if signal_number == signal.SIGINT:  # Ctrl-C reaches the whole foreground process group
            os.killpg(process.pid, signal.SIGINT)
        else:
            process.send_signal(signal_number)
        text, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[signal_number], text
    if signal_number != signal.SIGKILL:  # one line, not the workers' tracebacks
        assert len([line for line in text.splitlines() if line.strip()]) == 1, text
        assert "rerun" in text and "chunks done" in text, text
    _, alive = psutil.wait_procs(children, timeout=30)
    for leftover in alive:
        leftover.kill()
    partial = len(list(output.glob("*/*.root")))
    assert 0 < partial < total

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{total - partial} processed, {partial} skipped" in rerun.stdout, rerun.stdout
    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["events"] == total and len(manifest["chunks"]) == total
