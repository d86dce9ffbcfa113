"""A resumed run prints the same figures as one that was never interrupted: non-finite inputs, jets
outside a reweighter's training domain and the weights' lines come from every chunk, the skipped
ones' read from their files' metadata records; a file of an older version, without figures, makes
the summary say what the figures cover."""

from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import pytest
import uproot

from coffea_lorentz.chunk import FIGURES_KEY
from coffea_lorentz.cli import main
from coffea_lorentz.testing import require_triton, server_unavailable_reason
from coffea_lorentz.testing.processes import interrupted_run
from coffea_lorentz.write import METADATA_KEY

from .conftest import TAGGER, make_fileset

#: What the figures print: the console's lines, and the log's.
_PRINTED = ("outside its training domain", "weight_fsr of dataset", "the non-finite, training-domain and weight")
_LOGGED = ("NON-FINITE ", "OUTSIDE TRAINING DOMAIN ", "WEIGHTS ", "PARTIAL FIGURES ")


def _with_a_nonfinite_constituent(path: str, entry: int) -> None:
    """Rewrite ``path`` with one constituent of entry ``entry``'s first jet at pT = -inf."""
    arrays = uproot.open(path)["Events"].arrays(library="ak")
    pt = ak.to_list(arrays["PFCands_pt"])
    pt[entry][int(arrays["FatJetPFCands_pFCandsIdx"][entry][0])] = float("-inf")
    with uproot.recreate(path) as file:
        file["Events"] = {name: (ak.Array(pt) if name == "PFCands_pt" else arrays[name]) for name in arrays.fields}


def _run(fileset_json, out, capsys, *extra) -> tuple[int, list[str], list[str], str]:
    """``coffea-lorentz run`` with fsr in-process, 2 events a chunk: exit status, its figure lines
    printed and logged, and its chunk counts line."""
    code = main(["run", str(fileset_json), "--reweighter", "fsr", "--backend", "torch", "--tagger", TAGGER,
                 "--workers", "0", "--chunksize", "2", "--no-progress", "--output", str(out), *extra])
    printed = capsys.readouterr().out
    lines = [line for line in printed.splitlines() if any(sign in line for sign in _PRINTED)]
    log = max((out / "_logs").glob("*.log"), key=lambda path: path.stat().st_mtime_ns).read_text()
    logged = [line for line in log.splitlines() if line.startswith(_LOGGED)]
    counts = " ".join(printed.split()).split("chunks │ ", 1)[1].split(" failed")[0]
    return code, lines, logged, counts


def test_a_resumed_run_prints_the_figures_of_an_uninterrupted_one(tmp_path, capsys):
    fileset = make_fileset(tmp_path / "a", 2, dataset="a") | make_fileset(tmp_path / "b", 1, dataset="b", seed=5)
    bad_input = next(iter(fileset["a"]["files"]))
    _with_a_nonfinite_constituent(bad_input, 0)  # in the first chunk, [0, 2): done before the interruption
    fileset_json = tmp_path / "fileset.json"
    fileset_json.write_text(json.dumps(fileset))

    code, whole, whole_log, counts = _run(fileset_json, tmp_path / "whole", capsys)
    assert code == 0 and counts == "9 processed, 0 skipped (done earlier), 0", counts  # 3 files × 3 chunks
    assert any("outside its training domain" in line for line in whole)
    assert [line.split(":")[0] for line in whole if "weight_fsr of dataset" in line] == [
        "weight_fsr of dataset 'a'", "weight_fsr of dataset 'b'"]
    assert f"NON-FINITE {bad_input}: 1 jets had constituents with non-finite four-momenta (dropped); " \
           "first entries [0]" in whole_log
    assert {line.split(" ")[0] for line in whole_log} == {"NON-FINITE", "OUTSIDE", "WEIGHTS"}  # no partial note

    out = tmp_path / "resumed"
    code, _, _, counts = _run(fileset_json, out, capsys, "--maxchunks", "1")  # stopped after a chunk per dataset
    assert code == 0 and counts == "2 processed, 0 skipped (done earlier), 0", counts
    code, resumed, resumed_log, counts = _run(fileset_json, out, capsys)
    assert code == 0 and counts == "7 processed, 2 skipped (done earlier), 0", counts
    assert (resumed, resumed_log) == (whole, whole_log)
    # the manifest holds the same per-dataset figures: Σw of every chunk, the skipped ones' too
    figures = {"nonfinite_jets", "weights", "outside_domain", "figures_complete"}
    whole_figures, resumed_figures = (
        {name: {key: entry[key] for key in figures} for name, entry in json.loads((folder / "manifest.json").read_text())
         ["datasets"].items()} for folder in (tmp_path / "whole", out))
    assert whole_figures["a"]["nonfinite_jets"] == 1 and whole_figures["b"]["nonfinite_jets"] == 0
    assert whole_figures["a"]["weights"]["fsr"]["events"] == 10 and whole_figures["a"]["figures_complete"]
    assert whole_figures["a"]["outside_domain"]["fsr"]["jets"] > 0
    assert resumed_figures.keys() == whole_figures.keys()
    for name in whole_figures:
        weights, whole_weights = resumed_figures[name].pop("weights")["fsr"], whole_figures[name].pop("weights")["fsr"]
        assert resumed_figures[name] == whole_figures[name]
        assert weights.keys() == whole_weights.keys()
        for key in weights:  # sums added in another order
            assert weights[key] == pytest.approx(whole_weights[key], rel=1e-12)
    code, again, again_log, counts = _run(fileset_json, out, capsys)  # every chunk skipped
    assert code == 0 and counts == "0 processed, 9 skipped (done earlier), 0", counts
    assert (again, again_log) == (whole, whole_log)

    # a chunk file of an older version: the same file, its metadata record without figures
    chunk = sorted((out / "a").glob("*.root"))[0]
    with uproot.open(chunk) as file:
        record = json.loads(str(file[METADATA_KEY]))
    assert record[FIGURES_KEY]["nonfinite_jets"] == 1 and record[FIGURES_KEY]["nonfinite_events"] == [0]
    del record[FIGURES_KEY]
    with uproot.update(chunk) as file:
        file[METADATA_KEY] = json.dumps(record, sort_keys=True)
    code, older, older_log, counts = _run(fileset_json, out, capsys)
    assert code == 0 and counts == "0 processed, 9 skipped (done earlier), 0", counts  # the file still verifies
    note = ("the non-finite, training-domain and weight figures cover 8 of 9 chunks: the other 1 were written by an "
            "older version that did not record them (--overwrite redoes every chunk)")
    assert older[-1] == note and f"PARTIAL FIGURES {note}" in older_log
    assert not any(line.startswith("NON-FINITE") for line in older_log)  # its one non-finite jet is not counted
    manifest = json.loads((out / "manifest.json").read_text())
    assert not manifest["datasets"]["a"]["figures_complete"] and manifest["datasets"]["b"]["figures_complete"]
    assert manifest["datasets"]["a"]["nonfinite_jets"] == 0


@pytest.mark.skipif(server_unavailable_reason() is not None and not require_triton(),
                    reason=f"no local Triton server for the default mode: {server_unavailable_reason()}")
def test_a_run_stopped_with_ctrl_c_on_dask_workers_resumes_to_the_same_figures(tmp_path, capsys):
    """The default mode (a LocalCluster of worker processes, scoring through the run's own Triton server),
    stopped as Ctrl-C stops it, then rerun: its figure lines equal an uninterrupted in-process run's."""
    fileset_json = tmp_path / "fileset.json"
    fileset_json.write_text(json.dumps(make_fileset(tmp_path / "inputs", 4)))
    _, whole, whole_log, _ = _run(fileset_json, tmp_path / "whole", capsys)
    assert whole and whole_log
    output = tmp_path / "out"
    run = [sys.executable, "-m", "coffea_lorentz.cli", "run", str(fileset_json), "--reweighter", "fsr",
           "--tagger", TAGGER, "--workers", "2", "--chunksize", "2", "--no-progress", "--output", str(output)]
    returncode, text = interrupted_run(run, output, after_chunk_files=3)
    assert returncode == 130, text
    rerun = subprocess.run(run, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    printed = " ".join(rerun.stdout.split())
    skipped = int(printed.split(" skipped (done earlier)")[0].rsplit(" ", 1)[-1])
    assert 3 <= skipped < 12, printed  # 4 files × 3 chunks, some done before the interruption
    assert [line for line in rerun.stdout.splitlines() if any(sign in line for sign in _PRINTED)] == whole
    log = max((output / "_logs").glob("*.log"), key=lambda path: path.stat().st_mtime_ns).read_text()
    assert [line for line in log.splitlines() if line.startswith(_LOGGED)] == whole_log
