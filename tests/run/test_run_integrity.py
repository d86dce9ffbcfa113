"""What an output folder holds after a run, with real ROOT files and in-process scoring: exactly the
current plan's chunk files (stale ones moved aside), nothing outside ``--output``, and no torn
chunk file accepted as done."""

from __future__ import annotations

import json
import os

import awkward as ak
import numpy as np
import pytest
import uproot

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.run import RunConfig, run_tagging

from .conftest import EVENTS_PER_FILE, SCORE, TAGGER, config, corrupt_baskets, make_fileset, read_rows


def shrink(path: str, entries: int) -> None:
    """Rewrite the input ``path`` with its first ``entries`` entries only."""
    arrays = uproot.open(path)["Events"].arrays(library="ak")[:entries]
    with uproot.recreate(path) as file:
        file["Events"] = {name: arrays[name] for name in arrays.fields}


def ids_of(paths) -> list[tuple[int, int]]:
    ids = []
    for path in paths:
        arrays = uproot.open(path)["Events"].arrays(["luminosityBlock", "event"], library="np")
        ids.extend(zip(arrays["luminosityBlock"].tolist(), arrays["event"].tolist()))
    return sorted(ids)


def folder_ids(folder) -> list[tuple[int, int]]:
    """The event ids a glob over the dataset folder reads (what a user does downstream)."""
    return ids_of(sorted(str(p) for p in folder.glob("*.root")))


def test_chunk_files_outside_the_plan_are_moved_aside(tmp_path):
    fileset = make_fileset(tmp_path / "a", 3, dataset="a") | make_fileset(tmp_path / "b", 1, dataset="b", seed=7)
    paths = list(fileset["a"]["files"])
    out = tmp_path / "out"
    assert run_tagging(fileset, out, config()).complete
    assert len(list((out / "a").glob("*.root"))) == 6 and len(list((out / "b").glob("*.root"))) == 2

    shrink(paths[0], 2)  # 5 → 2 entries: its chunks [0, 3) and [3, 5) are no longer planned
    current = {"a": {"files": {paths[0]: "Events", paths[1]: "Events"}}}  # file02 and dataset b left
    summary = run_tagging(current, out, config())
    assert summary.complete and (summary.processed, summary.skipped) == (1, 2)
    assert len(summary.stale_files) == 2 + 2 + 2
    assert folder_ids(out / "a") == ids_of(paths[:2])  # every current event exactly once, nothing else
    assert not list((out / "b").glob("*.root"))
    moved = sorted(str(p.relative_to(out / "_stale")) for p in (out / "_stale").rglob("*.root"))
    assert moved == summary.stale_files
    assert "STALE" in open(summary.log).read()
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(c["path"] for c in manifest["chunks"]) == sorted(
        str(p.relative_to(out)) for p in (out / "a").glob("*.root"))

    # --maxchunks: the chunks beyond it are still the plan's; nothing is moved
    limited = run_tagging(current, out, config(max_chunks=1))
    assert limited.stale_files == [] and folder_ids(out / "a") == ids_of(paths[:2])


def test_an_uninspectable_input_keeps_its_chunk_files(tmp_path):
    fileset = make_fileset(tmp_path / "a", 2, dataset="a")
    paths = list(fileset["a"]["files"])
    out = tmp_path / "out"
    run_tagging(fileset, out, config())
    os.rename(paths[1], f"{paths[1]}.away")  # unreachable for now: not a reason to lose its finished chunks
    summary = run_tagging(fileset, out, config())
    assert summary.bad_files and summary.stale_files == []
    assert len(list((out / "a").glob("*.root"))) == 4


@pytest.mark.parametrize("name", ["../../escape", "/abs/escape", "a/b", "..", "_logs"])
def test_dataset_names_never_leave_the_output(tmp_path, name):
    fileset = make_fileset(tmp_path / "inputs", 1)
    fileset = {name if not name.startswith("/") else str(tmp_path / name.lstrip("/")): fileset["sample"]}
    out = tmp_path / "deep" / "er" / "out"
    with pytest.raises(InvalidInputError, match="dataset name .* one plain path segment"):
        run_tagging(fileset, out, config())
    assert not (tmp_path / "deep").exists() and not (tmp_path / "escape").exists()
    assert not (tmp_path / "abs").exists()


def test_dataset_name_refused_on_the_command_line_with_exit_2(tmp_path, capsys):
    from coffea_lorentz.cli import main

    fileset = make_fileset(tmp_path / "inputs", 1)
    path = tmp_path / "fileset.json"
    path.write_text(json.dumps({"../../escape": fileset["sample"]}))
    out = tmp_path / "x" / "out"
    code = main(["run", str(path), "--output", str(out), "--backend", "torch", "--tagger", TAGGER,
                 "--workers", "0", "--no-progress"])
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "'../../escape'" in lines[0], lines
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape").exists()


@pytest.mark.parametrize("damage", ["cut to 50%", "cut to 60%", "cut to 99%", "values overwritten"])
def test_a_torn_or_damaged_chunk_file_is_redone(tmp_path, damage):
    fileset = make_fileset(tmp_path / "inputs", 4)
    out = tmp_path / "out"
    first = run_tagging(fileset, out, config())
    expected = read_rows(first)
    torn = [first.outputs[1], first.outputs[6]]
    for url in torn:
        if damage == "values overwritten":  # the file still opens and reads, with other scores
            corrupt_baskets(url, branch=SCORE)
            continue
        data = open(url, "rb").read()
        with open(url, "wb") as file:
            file.write(data[: int(len(data) * float(damage.split()[-1].rstrip("%")) / 100)])
    rerun = run_tagging(fileset, out, config())
    assert rerun.complete and (rerun.processed, rerun.skipped) == (2, 6)
    redone = {f"{rerun.output}/{r.chunk.path}" for r in rerun.records if r.status == "done"}
    assert redone == set(torn)
    rows = read_rows(rerun)
    assert len(rows) == 4 * EVENTS_PER_FILE
    assert ak.to_list(rows["event"]) == ak.to_list(expected["event"])
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(rows[SCORE])), ak.to_numpy(ak.flatten(expected[SCORE])))
    manifest = json.loads((out / "manifest.json").read_text())
    import hashlib

    for chunk in manifest["chunks"]:
        data = (out / chunk["path"]).read_bytes()
        assert chunk["sha256"] == hashlib.sha256(data).hexdigest() and chunk["bytes"] == len(data)


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB tmpfs (room for about 8 chunk files of 44 kB and the run's own files); grown with ``grow()``."""
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=8m", str(folder)], check=True)

    try:
        yield folder, grow
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_a_failed_run_that_lists_what_was_not_written_and_resumes(tmp_path, small_disk):
    folder, grow = small_disk
    fileset = make_fileset(tmp_path / "inputs", 8)
    out = folder / "out"
    full = run_tagging(fileset, out, config())
    assert full.has_failures and not full.complete and full.manifest is None
    assert full.failed and all("no space left on the device" in r.reason for r in full.failed)
    assert full.not_written and full.log and os.path.isfile(full.log)  # the log is kept, here or beside
    log = open(full.log).read()
    assert "FAILED" in log and "no space left" in log
    assert not list(out.rglob("*.tmp"))

    grow()  # space freed: the same run resumes
    resumed = run_tagging(fileset, out, config())
    assert resumed.complete and not resumed.has_failures and resumed.skipped == 16 - len(full.failed)
    assert folder_ids(out / "sample") == ids_of(list(fileset["sample"]["files"]))


def test_an_input_damaged_in_a_range_names_the_fix(tmp_path):
    fileset = make_fileset(tmp_path / "inputs", 1)
    corrupt_baskets(next(iter(fileset["sample"]["files"])))  # opens and lists its entries; its baskets do not read
    summary = run_tagging(fileset, tmp_path / "out", config())
    assert summary.failed and not summary.bad_files
    for record in summary.failed:
        assert record.reason.startswith("input damaged or cut short in this range: replace the file (copy it again) "
                                        "and rerun; "), record.reason
        assert "\n" not in record.reason
