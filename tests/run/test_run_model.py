"""The run model on real ROOT files and real Dask, scoring in-process: resume, fault isolation,
exclusive output, the completion marker, and the inputs that used to break a run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import ConfigurationError, OutputError
from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.run.lock import LOCK_NAME

from .conftest import EVENTS_PER_FILE, SCORE, TAGGER, config, corrupt_baskets, make_fileset, read_rows, truncate


def input_ids(fileset: dict) -> list[tuple[int, int]]:
    ids = []
    for spec in fileset.values():
        for path in spec["files"]:
            arrays = uproot.open(path)["Events"].arrays(["luminosityBlock", "event"], library="np")
            ids.extend(zip(arrays["luminosityBlock"].tolist(), arrays["event"].tolist()))
    return ids


def test_fresh_run_writes_verified_chunks_and_manifest(fileset, tmp_path):
    summary = run_tagging(fileset, tmp_path / "out", config())
    assert summary.complete and summary.processed == 8 and summary.skipped == 0  # 4 files × 2 chunks
    rows = read_rows(summary)
    assert list(zip(rows["luminosityBlock"].tolist(), rows["event"].tolist())) == input_ids(fileset)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["events"] == 4 * EVENTS_PER_FILE
    assert sorted(c["path"] for c in manifest["chunks"]) == sorted(
        os.path.relpath(url, tmp_path / "out") for url in summary.outputs)
    assert manifest["settings"]["taggers"] == [TAGGER] and manifest["settings"]["max_constituents"] == 32
    with uproot.open(summary.outputs[0]) as file:
        record = json.loads(str(file["coffea_lorentz"]))
    assert (record["entry_start"], record["entry_stop"], record["rows"]) == (0, 3, 3)
    assert record["file_uuid"] and record["settings"]["model_sha256"][TAGGER] == manifest["settings"]["model_sha256"][TAGGER]
    assert not (tmp_path / "out" / LOCK_NAME).exists()
    assert manifest["datasets"]["sample"]["files"] == list(fileset["sample"]["files"])  # each input once, in order
    assert list(summary.stage_s) == ["start", "inspect", "plan", "chunks", "verify", "histograms", "manifest", "log"]
    assert all(seconds >= 0 for seconds in summary.stage_s.values())


def test_rerun_skips_done_chunks_and_redoes_only_missing_ones(fileset, tmp_path):
    out = tmp_path / "out"
    first = run_tagging(fileset, out, config())
    before = {url: os.stat(url).st_mtime_ns for url in first.outputs}
    removed = first.outputs[3]
    os.remove(removed)
    (out / "manifest.json").unlink()
    second = run_tagging(fileset, out, config())
    assert (second.processed, second.skipped) == (1, 7) and second.complete
    assert (out / "manifest.json").is_file()
    after = {url: os.stat(url).st_mtime_ns for url in second.outputs}
    assert [url for url in before if before[url] != after[url]] == [removed]
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(read_rows(second)[SCORE])),
                                  ak.to_numpy(ak.flatten(read_rows(first)[SCORE])))
    third = run_tagging(fileset, out, config())
    assert (third.processed, third.skipped) == (0, 8) and len(read_rows(third)) == 4 * EVENTS_PER_FILE


def test_bad_files_fail_alone_and_rerun_completes_them(tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 5)
    paths = list(fileset["sample"]["files"])
    good_copies = {p: tmp_path / f"good{i}.root" for i, p in enumerate(paths)}
    for path, copy in good_copies.items():
        shutil.copyfile(path, copy)
    truncate(tmp_path / "inputs" / "file01.root")
    corrupt_baskets(tmp_path / "inputs" / "file03.root")
    out = tmp_path / "out"

    summary = run_tagging(fileset, out, config())
    assert not summary.complete and summary.manifest is None and not (out / "manifest.json").exists()
    failed = {record.chunk.source: record for record in summary.failed} | {f.source: f for f in summary.bad_files}
    assert set(failed) == {paths[1], paths[3]}
    corrupt = [r for r in summary.failed if r.chunk.source == paths[3]]
    assert corrupt and all("decompress" in r.reason or "Error" in r.reason for r in corrupt)
    assert all("\n" not in r.reason for r in summary.failed)
    good = [r for r in summary.records if r.ok]
    assert {r.chunk.source for r in good} == {paths[0], paths[2], paths[4]}
    log = (out / summary.log.split(str(out) + "/", 1)[1]).read_text()
    assert paths[1] in log and f"{paths[3]} entries [0, 3)" in log

    for path in (paths[1], paths[3]):
        shutil.copyfile(good_copies[path], path)
    rerun = run_tagging(fileset, out, config())
    assert rerun.complete and rerun.skipped == 6 and rerun.processed == 4
    assert len(read_rows(rerun)) == 5 * EVENTS_PER_FILE
    assert json.loads((out / "manifest.json").read_text())["events"] == 5 * EVENTS_PER_FILE


def test_file_without_pf_candidates_is_a_listed_failure(fileset, tmp_path, shared_data):
    fileset["dimuon"] = {"files": {str(shared_data / "nano_dimuon.root"): "Events"}}
    summary = run_tagging(fileset, tmp_path / "out", config())
    assert not summary.complete
    assert [(f.dataset, "missing branches" in (f.error or "")) for f in summary.bad_files] == [("dimuon", True)]
    assert summary.processed == 8


def test_fail_fast_raises_the_first_error(tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 2)
    corrupt_baskets(tmp_path / "inputs" / "file00.root")
    with pytest.raises(Exception, match="decompress"):
        run_tagging(fileset, tmp_path / "out", config(fail_fast=True))


def test_other_settings_are_refused_unless_overwrite(fileset, tmp_path):
    out = tmp_path / "out"
    run_tagging(fileset, out, config())
    with pytest.raises(ConfigurationError, match="taggers.*lorentznet.*lloca"):
        run_tagging(fileset, out, config(taggers=("lloca",)))
    with pytest.raises(ConfigurationError, match="max_constituents"):
        run_tagging(fileset, out, config(batch_config=__import__("coffea_lorentz.batch").batch.BatchConfig(max_constituents=16)))
    summary = run_tagging(fileset, out, config(taggers=("lloca",), overwrite=True))
    assert summary.complete and summary.processed == 8
    assert set(read_rows(summary).fields) >= {"FatJet_lloca_score"} and SCORE not in read_rows(summary).fields
    assert sorted(p.name for p in (out / "sample").iterdir()) == sorted(os.path.basename(u) for u in summary.outputs)


def test_a_live_lock_refuses_and_a_dead_one_is_taken_over(fileset, tmp_path):
    import socket

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK_NAME).write_text(json.dumps({"host": socket.gethostname(), "pid": holder.pid,
                                                 "started_utc": "2026-01-01T00:00:00+00:00", "run_id": "x"}))
        with pytest.raises(OutputError, match=f"in use by another run.*pid {holder.pid}"):
            run_tagging(fileset, out, config())
    finally:
        holder.kill()
        holder.wait()
    with pytest.warns(UserWarning, match="no longer alive"):
        summary = run_tagging(fileset, out, config())
    assert summary.complete and not (out / LOCK_NAME).exists()


def test_temporary_files_of_a_killed_writer_are_cleaned(fileset, tmp_path):
    out = tmp_path / "out"
    (out / "sample").mkdir(parents=True)
    (out / "sample" / ".file00-0000_000000000000-000000000003.root.abc.tmp").write_bytes(b"half a file")
    summary = run_tagging(fileset, out, config())
    assert summary.complete and not list(out.rglob("*.tmp"))


def test_same_file_in_two_datasets_and_an_empty_file(tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 1, dataset="a")
    fileset["b"] = {"files": dict(fileset["a"]["files"])}
    empty = tmp_path / "inputs" / "empty.root"
    arrays = uproot.open(next(iter(fileset["a"]["files"])))["Events"].arrays(library="ak")[:0]
    with uproot.recreate(empty) as file:
        file["Events"] = {name: arrays[name] for name in arrays.fields}
    fileset["empty"] = {"files": {str(empty): "Events"}}
    summary = run_tagging(fileset, tmp_path / "out", config())
    assert summary.complete
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert {name: d["events"] for name, d in manifest["datasets"].items()} == {"a": 5, "b": 5, "empty": 0}
    rows = read_rows(summary)
    assert len(rows) == 10


def test_on_a_dask_cluster_rows_equal_events(fileset, tmp_path, dask_cluster):
    summary = run_tagging(fileset, tmp_path / "out", config(scheduler=dask_cluster.scheduler_address))
    assert summary.complete and summary.events == 4 * EVENTS_PER_FILE
    in_process = run_tagging(fileset, tmp_path / "out2", config())
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(read_rows(summary)[SCORE])),
                                  ak.to_numpy(ak.flatten(read_rows(in_process)[SCORE])))


def test_unknown_tagger_is_refused_before_anything_runs(fileset, tmp_path):
    with pytest.raises(ConfigurationError, match="unknown tagger 'lorentznett'.*did you mean lorentznet"):
        run_tagging(fileset, tmp_path / "out", config(taggers=("lorentznett",)))
    assert not (tmp_path / "out").exists()


def test_nonfinite_constituents_are_dropped_counted_and_named(tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 1)
    path = next(iter(fileset["sample"]["files"]))
    arrays = uproot.open(path)["Events"].arrays(library="ak")
    pt = ak.to_list(arrays["PFCands_pt"])
    first_constituent = int(arrays["FatJetPFCands_pFCandsIdx"][3][0])
    pt[3][first_constituent] = float("-inf")  # entry 3: one constituent of its one jet
    with uproot.recreate(path) as file:
        file["Events"] = {name: (ak.Array(pt) if name == "PFCands_pt" else arrays[name]) for name in arrays.fields}
    summary = run_tagging(fileset, tmp_path / "out", config(chunksize=5))
    assert summary.complete and summary.nonfinite_jets == {path: 1}
    scores = read_rows(summary)[SCORE]
    assert np.isfinite(ak.to_numpy(scores[3])).all()  # scored on the other constituents, never NaN or silent
    log = open(summary.log).read()
    assert f"NON-FINITE {path}: 1 jets" in log and "first entries [3]" in log


def test_local_server_binds_where_remote_workers_can_reach_it():
    from coffea_lorentz.run.local_server import server_host

    assert server_host(None, None) == "127.0.0.1"
    assert server_host(None, "tcp://127.0.0.1:8786") == "127.0.0.1"
    assert server_host("10.0.0.7", "tcp://10.1.2.3:8786") == "10.0.0.7"
    try:
        address = server_host(None, "tcp://10.1.2.3:8786")
    except ConfigurationError as err:  # a machine without a route off loopback must refuse, saying why
        assert "--server" in str(err)
    else:
        import ipaddress

        assert not ipaddress.ip_address(address).is_loopback


def test_score_histograms_plots_and_table_survive_a_resume(tmp_path):
    import pickle

    fileset = make_fileset(tmp_path / "a", 2, dataset="a") | make_fileset(tmp_path / "b", 1, dataset="b", seed=5)
    out = tmp_path / "out"
    first = run_tagging(fileset, out, config())
    saved = pickle.loads((out / "histograms.pkl").read_bytes())[SCORE]
    rows = read_rows(first)
    scores = ak.to_numpy(ak.flatten(rows[SCORE]))
    assert saved.sum() == np.isfinite(scores).sum()
    table = {row["dataset"]: row for row in first.datasets}
    assert {name: row["events"] for name, row in table.items()} == {"a": 10, "b": 5}
    assert sum(row["jets"] for row in table.values()) == len(scores)
    assert sum(row["no_constituents"] for row in table.values()) == int(np.isnan(scores).sum())
    finite_a = ak.to_numpy(ak.flatten(read_rows(first)[SCORE][:10]))
    finite_a = finite_a[np.isfinite(finite_a)]
    assert abs(table["a"]["mean"] - finite_a.mean()) < 1.0 / 50  # histogram mean, to a bin width
    assert (out / "plots" / f"{SCORE}.png").read_bytes()[:4] == b"\x89PNG"
    os.remove(first.outputs[0])
    resumed = run_tagging(fileset, out, config())
    assert resumed.skipped == 5 and resumed.processed == 1
    assert resumed.histograms[SCORE] == saved


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_cli_executors_maxchunks_skipbadfiles(executor, tmp_path, shared_data, capsys):
    from coffea_lorentz.cli import main

    fileset = make_fileset(tmp_path / "inputs", 2)
    fileset["dimuon"] = {"files": {str(shared_data / "nano_dimuon.root"): "Events"}}
    fileset_path = tmp_path / "fileset.json"
    fileset_path.write_text(json.dumps(fileset))
    base = ["run", str(fileset_path), "--output", str(tmp_path / "out"), "--backend", "torch", "--tagger", TAGGER,
            "--chunksize", "2", "--executor", executor, "--workers", "2", "--no-progress"]
    assert main(base + ["--maxchunks", "1"]) == 3  # the unusable file is a failure without --skipbadfiles
    assert main(base + ["--maxchunks", "1", "--skipbadfiles"]) == 0
    out = capsys.readouterr().out
    assert "part of the fileset only" in out and not (tmp_path / "out" / "manifest.json").exists()
    assert len(list((tmp_path / "out" / "sample").glob("*.root"))) == 1
    assert main(base + ["--skipbadfiles"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["events"] == 2 * EVENTS_PER_FILE and list(manifest["skipped_files"]) == [
        str(shared_data / "nano_dimuon.root")]
    text = " ".join(capsys.readouterr().out.split())
    assert "skipped 1 unusable input file (--skipbadfiles)" in text and "fix the cause" not in text


def test_copied_branches_make_outputs_that_nanoevents_reads(tmp_path, pfnano_file):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    summary = run_tagging({"cms": {"files": {str(pfnano_file): "Events"}}}, tmp_path / "out",
                          config(chunksize=4, copy_branches=("FatJet_*", "MET_*")))
    assert summary.complete
    inputs = uproot.open(pfnano_file)["Events"].arrays(["FatJet_pt", "FatJet_msoftdrop", "MET_pt"], library="ak")
    outputs = []
    for url in summary.outputs:
        events = NanoEventsFactory.from_root({url: "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
        outputs.append(events)
    pt = ak.concatenate([events.FatJet.pt for events in outputs])
    assert ak.to_list(pt) == ak.to_list(inputs["FatJet_pt"])
    assert ak.to_list(ak.concatenate([e.FatJet.msoftdrop for e in outputs])) == ak.to_list(inputs["FatJet_msoftdrop"])
    assert ak.to_list(ak.concatenate([e.MET.pt for e in outputs])) == ak.to_list(inputs["MET_pt"])
    scores = ak.concatenate([events.FatJet[f"{TAGGER}_score"] for events in outputs])
    assert ak.to_list(ak.num(scores)) == ak.to_list(ak.num(pt))
    assert float(ak.max(ak.concatenate([(e.FatJet[:, :1] + e.FatJet[:, :1]).mass for e in outputs]))) > 0  # four-vectors
    with pytest.raises(ConfigurationError, match="copy_branches"):
        run_tagging({"cms": {"files": {str(pfnano_file): "Events"}}}, tmp_path / "out", config(chunksize=4))
