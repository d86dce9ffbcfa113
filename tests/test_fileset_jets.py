"""Jets of a fileset for training (``coffea_lorentz.fileset_jets``): the constituents a model is trained
on equal, bit for bit, what ``run`` feeds it — through a train folder's spec (``run --tagger FOLDER``)
and through the zoo's batches (``run --tagger NAME``, ``--reweighter``) — on the real CMS file and on
small files of both PFNano layouts; the split follows the event numbers, whatever the chunking."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from coffea_lorentz.batch import BatchConfig
from coffea_lorentz.chunk import Chunk
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.fileset_jets import (
    JetSelection,
    SplitFractions,
    entry_buckets,
    event_buckets,
    read_fileset_jets,
    select_datasets,
)
from coffea_lorentz.pipeline import ChunkInputs
from coffea_lorentz.run.fileset import load_fileset
from coffea_lorentz.run.task import read_chunk_events
from coffea_lorentz.testing import xrootd_server_fixture
from coffea_lorentz.trained import trained_spec

MAX_CONSTITUENTS = 16


def _run_time_events(path: Path):
    import uproot

    entries = uproot.open(path)["Events"].num_entries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_chunk_events(Chunk(dataset="d", source=str(path), treename="Events", entry_start=0,
                                       entry_stop=entries))


def _training_rows(chunk: ChunkInputs) -> np.ndarray:
    """int64 [total_jets]: each jet's row among the training jets (jets with constituents, in order); −1 for none."""
    has = chunk.jets.n_constituents > 0
    return np.where(has, np.cumsum(has) - 1, -1)


def _compare(training_p4, training_mask, rows, run_p4, run_mask):
    width = max(training_p4.shape[1], run_p4.shape[1])
    pad = lambda a: np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2))  # noqa: E731
    np.testing.assert_array_equal(pad(training_p4[rows]), pad(run_p4))
    np.testing.assert_array_equal(pad(training_mask[rows]), pad(run_mask))


@pytest.fixture(params=["cms", "new", "old"])
def pfnano_input(request, pfnano_file, tmp_path) -> Path:
    if request.param == "cms":
        if not pfnano_file.is_file():
            pytest.skip(f"the CMS sample {pfnano_file} is absent")
        return pfnano_file
    from coffea_lorentz.testing.samples import write_small_pfnano

    return write_small_pfnano(tmp_path / f"small_{request.param}.root", layout=request.param)


def test_training_inputs_equal_the_run_time_inputs(pfnano_input):
    """Every jet: the p4 and mask a model is trained on equal those ``run`` builds for a train folder
    (spec tensors p4 [b, P, 4], mask [b, P, 1]) and for a zoo tagger or reweighter (batches p4 + mask)."""
    jets = read_fileset_jets(load_fileset([str(pfnano_input)]), max_constituents=MAX_CONSTITUENTS, step=3,
                             progress=False)
    training = jets.sample
    assert training.p4.dtype == np.float32 and training.mask.dtype == bool

    chunk = ChunkInputs(_run_time_events(pfnano_input), source=str(pfnano_input))
    rows = _training_rows(chunk)
    assert len(training) == int((rows >= 0).sum()) > 0
    assert np.array_equal(training.n_constituents, np.minimum(chunk.jets.n_constituents[rows >= 0], MAX_CONSTITUENTS))

    spec_batches = list(chunk.spec_inputs(trained_spec(MAX_CONSTITUENTS), batch_size=5))
    assert sum(len(b) for b in spec_batches) == len(training)
    for batch in spec_batches:
        _compare(training.p4, training.mask, rows[batch.jet_index], batch.tensors["p4"],
                 batch.tensors["mask"][..., 0] > 0.5)

    zoo_batches = list(chunk.batches(BatchConfig(max_constituents=MAX_CONSTITUENTS, max_batch_size=5)))
    assert sum(len(b) for b in zoo_batches) == len(training)
    for batch in zoo_batches:
        _compare(training.p4, training.mask, rows[batch.jet_index], batch.p4, batch.mask)


def test_split_follows_the_event_numbers_not_the_chunking(pfnano_file):
    if not pfnano_file.is_file():
        pytest.skip(f"the CMS sample {pfnano_file} is absent")
    fileset = load_fileset([str(pfnano_file)])
    whole = read_fileset_jets(fileset, max_constituents=8, step=100, progress=False)
    small = read_fileset_jets(fileset, max_constituents=8, step=3, progress=False)
    np.testing.assert_array_equal(whole.split, small.split)
    np.testing.assert_array_equal(whole.sample.p4, small.sample.p4)
    assert whole.files[0].uuid and whole.files[0].entries == 10 and whole.files[0].jets == len(whole.sample)
    assert sorted(whole.sample.observables) == ["eta", "mass", "msoftdrop", "n_constituents", "pt", "tau21", "tau32"]

    import uproot

    numbers = uproot.open(pfnano_file)["Events"].arrays(["run", "luminosityBlock", "event", "nFatJet"], library="np")
    buckets = np.repeat(event_buckets(numbers["run"], numbers["luminosityBlock"], numbers["event"]),
                        numbers["nFatJet"])
    np.testing.assert_array_equal(whole.split, SplitFractions().codes(buckets))


def test_test_events_are_whole_events_with_their_leading_fat_jet(pfnano_file):
    """``test_events=True``: every test-split event (selected jets or not), whatever the chunking, with
    the constituents of its leading fat jet (the one a run weights it by) and the event observables."""
    if not pfnano_file.is_file():
        pytest.skip(f"the CMS sample {pfnano_file} is absent")
    import awkward as ak
    import uproot

    fileset = load_fileset([str(pfnano_file)])
    fractions = SplitFractions(train=0.4, val=0.1, test=0.5)
    cut = JetSelection(max_pt_gev=1500.0)  # leaves out most leading jets: their events stay
    whole = read_fileset_jets(fileset, max_constituents=8, fractions=fractions, selection=cut, progress=False,
                              test_events=True)
    small = read_fileset_jets(fileset, max_constituents=8, fractions=fractions, selection=cut, step=3,
                              progress=False, test_events=True)
    everything = read_fileset_jets(fileset, max_constituents=8, fractions=fractions, progress=False)
    assert read_fileset_jets(fileset, max_constituents=8, progress=False).events is None  # not asked for

    arrays = uproot.open(pfnano_file)["Events"].arrays(["run", "luminosityBlock", "event", "nFatJet", "Jet_pt"])
    numbers = {k: ak.to_numpy(arrays[k]) for k in ("run", "luminosityBlock", "event", "nFatJet")}
    test = fractions.codes(event_buckets(numbers["run"], numbers["luminosityBlock"], numbers["event"])) == 2
    events = whole.events
    assert 0 < len(events) == int(test.sum()) < 10
    np.testing.assert_array_equal(events.p4, small.events.p4)
    np.testing.assert_array_equal(events.observables["n_fat_jets"], numbers["nFatJet"][test])
    np.testing.assert_allclose(events.observables["ht"], ak.to_numpy(ak.sum(arrays["Jet_pt"], axis=1))[test])
    np.testing.assert_array_equal(events.observables["n_jets"], ak.to_numpy(ak.num(arrays["Jet_pt"]))[test])
    first = (np.cumsum(numbers["nFatJet"]) - numbers["nFatJet"])[test]  # index 0 of each test event's FatJets
    _compare(everything.sample.p4, everything.sample.mask, first, events.p4, events.mask)
    assert (everything.sample.observables["pt"][first] > 1500).any()  # a leading jet outside the selection


def test_hash_buckets_are_uniform_and_fixed():
    events = np.arange(100_000, dtype=np.uint64)
    buckets = event_buckets(np.ones_like(events), np.ones_like(events), events)
    counts = np.bincount(buckets, minlength=100)
    assert counts.min() > 850 and counts.max() < 1150  # 1000 expected per bucket
    # the hash is part of what a trained model records: its values must never change
    assert event_buckets(np.array([1, 1, 1]), np.array([2, 2, 2]), np.array([3, 4, 5])).tolist() == [91, 77, 39]
    assert entry_buckets("f2f7b0a2-043c-11ee-ada3-6ebde183beef", np.arange(4)).tolist() == [61, 91, 77, 46]
    codes = SplitFractions(train=0.5, val=0.25, test=0.25).codes(buckets)
    assert abs(np.mean(codes == 0) - 0.5) < 0.01 and abs(np.mean(codes == 2) - 0.25) < 0.01


def test_selection_and_max_jets(pfnano_file):
    if not pfnano_file.is_file():
        pytest.skip(f"the CMS sample {pfnano_file} is absent")
    fileset = load_fileset([str(pfnano_file)])
    everything = read_fileset_jets(fileset, max_constituents=8, progress=False)
    cut = JetSelection(min_pt_gev=300.0, max_abs_eta=2.0, min_mass_gev=10.0)
    selected = read_fileset_jets(fileset, max_constituents=8, selection=cut, progress=False)
    pt, eta, mass = (everything.sample.observables[k] for k in ("pt", "eta", "mass"))
    expected = (pt >= 300) & (np.abs(eta) <= 2) & (mass >= 10)
    assert 0 < len(selected.sample) == int(expected.sum()) < len(everything.sample)
    np.testing.assert_array_equal(selected.sample.observables["pt"], pt[expected])
    capped = read_fileset_jets(fileset, max_constituents=8, max_jets=5, step=2, progress=False)
    assert len(capped.sample) == 5
    np.testing.assert_array_equal(capped.sample.observables["pt"], pt[:5])
    assert json.dumps(cut.as_record()) and cut.describe() == "pT ≥ 300 GeV, mass ≥ 10 GeV, |η| ≤ 2"
    with pytest.raises(InvalidInputError, match="no jet"):
        read_fileset_jets(fileset, selection=JetSelection(min_pt_gev=1e6), progress=False)


def test_unknown_dataset_names_the_closest():
    fileset = {"ttbar_2018": {"files": {"a.root": "Events"}}, "qcd": {"files": {"b.root": "Events"}}}
    assert list(select_datasets(fileset, ["qcd"], "--background")) == ["qcd"]
    with pytest.raises(InvalidInputError, match="--signal: no dataset 'ttbar' .*did you mean 'ttbar_2018'"):
        select_datasets(fileset, ["ttbar"], "--signal")


xrootd_server = xrootd_server_fixture(scope="module")


@pytest.mark.slow
def test_a_fileset_of_root_urls_reads_the_same_jets(xrootd_server, pfnano_file, tmp_path):
    """A fileset JSON naming ``root://`` URLs on a real XRootD server: the same jets, split and UUID as the local file."""
    if not pfnano_file.is_file():
        pytest.skip(f"the CMS sample {pfnano_file} is absent")
    xrootd_server.local_path("/inputs").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pfnano_file, xrootd_server.local_path("/inputs/pfnano.root"))
    url = xrootd_server.url_for("/inputs/pfnano.root")
    fileset_json = tmp_path / "fileset.json"
    fileset_json.write_text(json.dumps({"remote": {"files": {url: "Events"}}}))
    remote = read_fileset_jets(load_fileset([str(fileset_json)]), max_constituents=8, step=4, progress=False)
    local = read_fileset_jets(load_fileset([str(pfnano_file)]), max_constituents=8, progress=False)
    np.testing.assert_array_equal(remote.sample.p4, local.sample.p4)
    np.testing.assert_array_equal(remote.split, local.split)
    assert remote.files[0].source == url and remote.files[0].uuid == local.files[0].uuid


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--tagger", "lorentz_efn", "--output", "x"], "give either --data PATH.h5 or --fileset"),
    (["train", "--tagger", "lorentz_efn", "--output", "x", "--data", "a.h5", "--fileset", "f.json"],
     "give either --data PATH.h5 or --fileset"),
    (["train", "--tagger", "lorentz_efn", "--output", "x", "--fileset", "f.json", "--signal", "s"],
     "--signal DATASET... and --background DATASET..."),
    (["reweight-train", "--nominal", "a.h5", "b.h5", "--alternative", "c.h5", "--output", "x"],
     "one file each (several datasets need --fileset)"),
])
def test_the_command_line_refuses_incomplete_class_options(argv, message, capsys, tmp_path, monkeypatch):
    from coffea_lorentz.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(argv) != 0
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error


def test_split_percentages_must_add_up(pfnano_file, tmp_path, capsys):
    from coffea_lorentz.cli import main

    assert main(["reweight-train", "--fileset", str(pfnano_file), "--nominal", "pfnano", "--alternative", "pfnano",
                 "--output", str(tmp_path), "--split", "60", "20", "30"]) != 0
    assert "add up to 100" in capsys.readouterr().err


def test_a_train_folder_records_its_domain_and_run_reports_jets_outside(pfnano_file, tmp_path, monkeypatch, capsys):
    """``train --fileset … --jet-pt-min 400`` records the domain in ``metrics.json``; ``run --tagger FOLDER`` on
    the whole file then says how many jets lie outside it, as it does for a reweighter."""
    if not pfnano_file.is_file():
        pytest.skip(f"the CMS sample {pfnano_file} is absent")
    from coffea_lorentz.cli import main

    monkeypatch.setenv("COFFEA_LORENTZ_CACHE", str(tmp_path / "cache"))
    fileset = tmp_path / "fileset.json"
    fileset.write_text(json.dumps({"sig": [str(pfnano_file)], "bkg": [str(pfnano_file)]}))
    folder = tmp_path / "tagger"
    assert main(["train", "--tagger", "lorentz_efn", "--fileset", str(fileset), "--signal", "sig", "--background",
                 "bkg", "--jet-pt-min", "400", "--epochs", "1", "--max-constituents", "16", "--batch-size", "8",
                 "--split", "50", "25", "25", "--quiet", "--output", str(folder)]) == 0
    domain = json.loads((folder / "metrics.json").read_text())["domain"]
    assert domain["selection"] == {"min_pt_gev": 400.0} and domain["min_pt_gev"] >= 400
    assert domain["files"][0]["uuid"] == "f2f7b0a2-043c-11ee-ada3-6ebde183beef"
    assert domain["class_balance"]["signal"] == domain["class_balance"]["background"] > 0
    capsys.readouterr()

    everything = read_fileset_jets(load_fileset([str(pfnano_file)]), max_constituents=8, progress=False).sample
    pt, eta = everything.observables["pt"], everything.observables["eta"]
    outside = int(np.count_nonzero((pt < domain["min_pt_gev"]) | (pt > domain["max_pt_gev"])
                                   | (np.abs(eta) > domain["max_abs_eta"])))
    assert 0 < outside < len(pt)
    assert main(["run", str(pfnano_file), "--output", str(tmp_path / "run"), "--tagger", str(folder), "--backend",
                 "torch", "--workers", "0", "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert (f"tagger: {outside} of {len(pt)} jets" in printed.out + printed.err
            and "their scores are extrapolations" in printed.out + printed.err), printed
