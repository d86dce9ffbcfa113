"""What ``coffea-lorentz run`` says when something goes wrong: one line that names the fix, the
right exit status, and nothing else — with real processes, real ROOT files and in-process scoring."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coffea_lorentz.testing import write_pfnano_fileset
from coffea_lorentz.testing.processes import interrupted_run

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
    returncode, text = interrupted_run(run, output, after_chunk_files=3)
    assert returncode == 130, text
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


def run_here(capsys, *arguments: str) -> tuple[int, list[str], str]:
    """``coffea-lorentz run`` in this process, in-process scoring: (exit status, stderr lines, stdout)."""
    from coffea_lorentz.cli import main

    code = main(["run", *arguments, "--backend", "torch", "--tagger", TAGGER, "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    return code, lines_of(captured.err), captured.out


def test_an_output_that_is_a_file_is_one_line(tmp_path, capsys):
    inputs = write_pfnano_fileset(tmp_path / "inputs", 1)
    (tmp_path / "afile").write_text("not a folder")
    code, errors, out = run_here(capsys, next(iter(inputs["sample"]["files"])), "--output", str(tmp_path / "afile"))
    assert code == 1 and errors == [f"coffea-lorentz run: error: output {tmp_path / 'afile'} is a file, not a folder: "
                                    "give a folder (it is created if missing)"] and not out


@pytest.mark.parametrize("exists", [False, True], ids=["new folder", "existing folder"])
def test_a_read_only_output_is_one_line(tmp_path, capsys, exists):
    inputs = write_pfnano_fileset(tmp_path / "inputs", 1)
    readonly = tmp_path / "readonly"
    (readonly / "out").mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only folder needs root (permissions do not stop root)")
    mounted = subprocess.run(["mount", "--bind", str(readonly), str(readonly)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {mounted.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(readonly)], check=True)
        output = readonly / ("out" if exists else "new")
        code, errors, _ = run_here(capsys, next(iter(inputs["sample"]["files"])), "--output", str(output))
    finally:
        subprocess.run(["umount", str(readonly)], check=True)
    assert code == 1 and errors == [f"coffea-lorentz run: error: output {output} cannot be written (read-only file "
                                    "system): choose a writable output folder"]


def test_no_server_at_the_given_address_says_how_to_get_one(tmp_path, capsys):
    from coffea_lorentz.cli import main
    from coffea_lorentz.serve import free_port

    inputs = write_pfnano_fileset(tmp_path / "inputs", 1)
    url = f"grpc://127.0.0.1:{free_port()}"
    code = main(["run", next(iter(inputs["sample"]["files"])), "--output", str(tmp_path / "out"), "--tagger", TAGGER,
                 "--server", url, "--server-wait-s", "1", "--workers", "0", "--no-progress"])
    errors = lines_of(capsys.readouterr().err)
    assert code == 1 and len(errors) == 1, errors
    assert errors[0].startswith(f"coffea-lorentz run: error: no Triton server answers at {url}: start one there with "
                                "`coffea-lorentz serve`, fix the address, or drop --server")
    assert not (tmp_path / "out").exists()


def test_a_cut_input_is_one_line_and_skipped_files_are_not_failures(tmp_path, capsys):
    from coffea_lorentz.testing import truncate_file

    inputs = write_pfnano_fileset(tmp_path / "inputs", 2)
    cut = list(inputs["sample"]["files"])[1]
    truncate_file(cut, 0.6)  # the file still opens; its baskets are gone
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps(inputs))
    code, _, out = run_here(capsys, str(fileset), "--output", str(tmp_path / "out"), "--chunksize", "2")
    text = " ".join(out.split())
    assert code == 3 and "failed (1 file, 0 chunks); fix the cause" in text, out
    assert (f"{cut} (all entries): cut short:" in text and "copy the file again, or leave it out with --skipbadfiles"
            in text), out
    assert " nan " not in f" {text.lower()} "  # no number printed as nan

    code, _, out = run_here(capsys, str(fileset), "--output", str(tmp_path / "out"), "--chunksize", "2",
                            "--skipbadfiles")
    text = " ".join(out.split())
    assert code == 0 and "skipped 1 unusable input file (--skipbadfiles):" in text, out
    assert "fix the cause" not in text and "failed (" not in text


def test_datasets_without_scores_print_no_nan(tmp_path, capsys):
    import uproot

    from coffea_lorentz.testing import truncate_file

    inputs = write_pfnano_fileset(tmp_path / "inputs", 1)
    path = next(iter(inputs["sample"]["files"]))
    empty = tmp_path / "empty.root"  # no entries: one empty chunk, no jets, no scores
    arrays = uproot.open(path)["Events"].arrays(library="ak")[:0]
    with uproot.recreate(empty) as file:
        file["Events"] = {name: arrays[name] for name in arrays.fields}
    code, _, out = run_here(capsys, path, str(empty), "--output", str(tmp_path / "out"))
    text = " ".join(out.lower().split())
    assert code == 0 and "file00" in text and " nan " not in f" {text} ", out

    truncate_file(path, 0.6)  # the only file with events unusable: nothing scored at all
    code, _, out = run_here(capsys, path, "--output", str(tmp_path / "out2"))
    assert code == 3 and "0 processed" in out and " nan " not in f" {' '.join(out.lower().split())} ", out
