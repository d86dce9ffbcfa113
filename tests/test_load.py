"""``coffea_lorentz.load_scores``: a finished run's scores back beside the input events, checked by event id.

A real run (in-process torch, chunks of 3 events) writes real chunk files and ``manifest.json``;
the scores are read back for whole datasets and for coffea chunks that straddle the run's chunks.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz import Tagger, load_scores
from coffea_lorentz.errors import InvalidInputError, OutputError
from coffea_lorentz.run import RunConfig, run_tagging
from coffea_lorentz.testing import write_pfnano_fileset, write_small_pfnano

TAGGER = "lloca"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """Two datasets of two 5-event files each, tagged in chunks of 3 events; (fileset, output)."""
    folder = tmp_path_factory.mktemp("load")
    fileset = {**write_pfnano_fileset(folder / "a", 2, dataset="a", seed=10),
               **write_pfnano_fileset(folder / "b", 2, dataset="b", seed=20)}
    config = RunConfig(taggers=(TAGGER,), backend="torch", n_workers=0, chunksize=3, progress=False)
    summary = run_tagging(fileset, folder / "out", config)
    assert summary.complete
    return fileset, folder / "out"


def chunk_events(path, dataset: str, start: int, stop: int):
    """The events of one coffea chunk, with the metadata coffea's Runner gives a processor."""
    metadata = {"dataset": dataset, "filename": str(path), "treename": "Events", "entrystart": start,
                "entrystop": stop}
    return NanoEventsFactory.from_root({str(path): "Events"}, entry_start=start, entry_stop=stop,
                                       schemaclass=PFNanoAODSchema, mode="virtual", metadata=metadata).events()


def assert_same_rows(got: ak.Array, expected: ak.Array) -> None:
    """Equal identifiers, FatJet counts and scores (NaN where the other has NaN)."""
    assert got.fields == expected.fields
    for name in ("run", "luminosityBlock", "event"):
        np.testing.assert_array_equal(ak.to_numpy(got[name]), ak.to_numpy(expected[name]))
    assert ak.num(got.FatJet, axis=1).tolist() == ak.num(expected.FatJet, axis=1).tolist()
    score = f"{TAGGER}_score"
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(got.FatJet[score])),
                                  ak.to_numpy(ak.flatten(expected.FatJet[score])))


def test_whole_dataset_in_input_order_with_ids_checked(finished_run):
    fileset, output = finished_run
    files = list(fileset["a"]["files"])
    scores = load_scores(output, "a", files=files)
    inputs = [uproot.open(path)["Events"].arrays(["run", "luminosityBlock", "event", "nFatJet"], library="np")
              for path in files]
    assert len(scores) == 10
    for name in ("run", "luminosityBlock", "event"):
        np.testing.assert_array_equal(ak.to_numpy(scores[name]), np.concatenate([i[name] for i in inputs]))
    assert ak.num(scores.FatJet, axis=1).tolist() == np.concatenate([i["nFatJet"] for i in inputs]).tolist()
    assert str(ak.type(scores.FatJet[f"{TAGGER}_score"])) == "10 * var * float32"
    # the same numbers a Tagger gives on the run's chunks ([0, 3) and [3, 5) of each file)
    tagger = Tagger(TAGGER, backend="torch")
    expected = np.concatenate([ak.to_numpy(ak.flatten(tagger(chunk_events(path, "a", start, stop))))
                               for path in files for start, stop in ((0, 3), (3, 5))])
    np.testing.assert_array_equal(ak.to_numpy(ak.flatten(scores.FatJet[f"{TAGGER}_score"])), expected)


def test_file_order_follows_files(finished_run):
    fileset, output = finished_run
    files = list(fileset["b"]["files"])
    forward = load_scores(output, "b", files=files)
    backward = load_scores(output, "b", files=files[::-1])
    assert_same_rows(backward[:5], forward[5:])
    assert len(load_scores(output, "b", check=False)) == 10


def test_a_chunk_that_straddles_the_run_s_chunks(finished_run):
    fileset, output = finished_run
    path = list(fileset["a"]["files"])[1]
    events = chunk_events(path, "a", 2, 5)
    rows = load_scores(output, "a", events=events)
    whole = load_scores(output, "a", files=[path])
    assert_same_rows(rows, whole[2:5])
    events["FatJet", f"{TAGGER}_score"] = rows.FatJet[f"{TAGGER}_score"]
    assert ak.num(events.FatJet[f"{TAGGER}_score"], axis=1).tolist() == ak.num(events.FatJet, axis=1).tolist()


def test_rows_of_other_events_are_refused(finished_run, tmp_path):
    fileset, output = finished_run
    path = list(fileset["a"]["files"])[0]
    other = write_small_pfnano(tmp_path / "other.root")  # another file: not an input of the run
    with pytest.raises(InvalidInputError, match="not an input of dataset 'a'"):
        load_scores(output, "a", events=chunk_events(other, "a", 0, 5))
    with pytest.raises(InvalidInputError, match="entries \\[5, 9\\) are in no chunk"):
        load_scores(output, "a", events=chunk_events(path, "a", 0, 9))


def test_an_input_rewritten_since_the_run_is_detected(tmp_path):
    """The input's event ids changed after the run: both ways of loading name the entry."""
    fileset = write_pfnano_fileset(tmp_path / "in", 1, dataset="a", seed=1)
    (path,) = fileset["a"]["files"]
    summary = run_tagging(fileset, tmp_path / "out",
                          RunConfig(taggers=(TAGGER,), backend="torch", n_workers=0, chunksize=3, progress=False))
    assert summary.complete
    with uproot.open(path) as file:
        arrays = file["Events"].arrays(library="ak")
    arrays["event"] = arrays["event"] + np.uint64(1)
    _rewrite(path, arrays)
    with pytest.raises(InvalidInputError, match="entry 0 has .* in the output but .* in the input"):
        load_scores(tmp_path / "out", "a")
    with pytest.raises(InvalidInputError, match="entry 3 has"):
        load_scores(tmp_path / "out", "a", events=chunk_events(path, "a", 3, 5))
    assert len(load_scores(tmp_path / "out", "a", check=False)) == 5


def _rewrite(path, arrays: ak.Array) -> None:
    tree = {name: arrays[name] for name in ("run", "luminosityBlock", "event")}
    for collection in ("FatJet", "PFCands", "FatJetPFCands"):
        fields = [name for name in arrays.fields if name.startswith(f"{collection}_")]
        tree[collection] = ak.zip({name[len(collection) + 1:]: arrays[name] for name in fields})
    with uproot.recreate(path) as file:
        file.mktree("Events", {name: value.type for name, value in tree.items()},
                    field_name=lambda outer, inner: inner if outer == "" else f"{outer}_{inner}",
                    counter_name=lambda counted: f"n{counted}").extend(tree)


def test_an_unfinished_run_and_an_unknown_dataset(finished_run, tmp_path):
    _, output = finished_run
    with pytest.raises(OutputError, match="no manifest.json"):
        load_scores(tmp_path, "a")
    with pytest.raises(InvalidInputError, match="no dataset 'c' in the run \\(datasets: a, b\\)"):
        load_scores(output, "c")
