"""What ``coffea-lorentz run`` says when something goes wrong: one line that names the fix, the
right exit status, and nothing else — with real processes, real ROOT files and in-process scoring."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coffea_lorentz.testing import write_pfnano_fileset

TAGGER = "lorentznet"


def command(inputs: Path, output: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "coffea_lorentz.cli", "run", str(inputs), "--output", str(output), "--backend",
            "torch", "--tagger", TAGGER, "--no-progress", *options]


def lines_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.fixture
def fileset_json(tmp_path) -> Path:
    path = tmp_path / "fileset.json"
    path.write_text(json.dumps(write_pfnano_fileset(tmp_path / "inputs", 4)))
    return path


@pytest.mark.parametrize("executor", ["dask", "futures"])
def test_ctrl_c_prints_one_line_writes_the_log_and_the_rerun_resumes(fileset_json, tmp_path, executor):
    output = tmp_path / "out"
    run = command(fileset_json, output, "--workers", "2", "--chunksize", "1", "--executor", executor)
    process = subprocess.Popen(run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(list(output.glob("*/*.root"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the run finished before it could be interrupted"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
        text, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, text
    assert len(lines_of(text)) == 1, text
    assert text.startswith("coffea-lorentz: interrupted; rerun the same command to resume (") and "chunks done" in text
    logs = list((output / "_logs").glob("*.log"))
    assert len(logs) == 1 and "INTERRUPTED" in logs[0].read_text()

    rerun = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    skipped = int(" ".join(rerun.stdout.split()).split(" skipped (done earlier)")[0].rsplit(" ", 1)[-1])
    assert skipped >= 3
    assert json.loads((output / "manifest.json").read_text())["events"] == 20


def test_a_dead_runs_lock_is_taken_over_with_one_plain_line(tmp_path):
    import socket

    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(write_pfnano_fileset(tmp_path / "inputs", 1)))
    output = tmp_path / "out"
    output.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (output / ".coffea-lorentz.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid,
                                                             "started_utc": "2026-01-01T00:00:00+00:00", "run_id": "x"}))
    result = subprocess.run(command(fileset, output, "--workers", "0"), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result.stderr) == [
        f"coffea-lorentz run: warning: output {output}: taking over the lock of a run that is no longer alive "
        f"(pid {dead.pid}, started 2026-01-01T00:00:00+00:00)"], result.stderr
