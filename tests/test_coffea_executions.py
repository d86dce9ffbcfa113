"""One processor with a ``Tagger``, run both ways coffea 2026 runs processors, gives the same scores.

- ``coffea.processor.Runner`` (virtual NanoEvents per chunk) with the iterative and the futures
  executor (the processor pickled to worker processes);
- ``coffea.dataset_tools.preprocess`` + ``apply_to_fileset`` (dask-awkward NanoEvents) and
  ``dask.compute`` on a real ``distributed`` LocalCluster.

Both score the same chunks (Runner ``chunksize`` = preprocess ``step_size``) and every score of
every jet is compared, per dataset and file, in entry order: event numbers, jet counts and NaN
scores (jets without constituents) exactly; in-process torch scores exactly; scores through the
real Triton server to 1e-6, because its dynamic batcher may merge concurrent requests of the same
length into one batch and these float32 taggers change in the last bits with batch composition
(≤ 5e-7 measured on lloca) — which requests arrive together depends on the workers' timing.
"""

from __future__ import annotations

import awkward as ak
import dask
import dask_awkward as dak
import numpy as np
import pytest
from coffea import processor
from coffea.dataset_tools import apply_to_fileset, preprocess
from coffea.nanoevents import PFNanoAODSchema

from coffea_lorentz import Tagger
from coffea_lorentz.testing import require_triton, triton_server_fixture, write_small_pfnano

pytestmark = pytest.mark.slow

TAGGERS = ("lloca", "lorentz_efn")
CHUNK = 3  # events per chunk: 5-event files give chunks [0, 3) and [3, 5)
triton_server = triton_server_fixture(taggers=TAGGERS, scope="module", skip_if_unavailable=not require_triton())


class FatJetScores(processor.ProcessorABC):
    """Scores of every FatJet with each tagger, with the event number; works on any NanoEvents mode.

    Runner (eager/virtual chunks): ``{dataset: {(file, first entry): {"event": …, tagger: …}}}``.
    apply_to_fileset (dask-awkward): ``{"event": …, tagger: …}`` lazy arrays of the whole dataset.
    """

    def __init__(self, tagger: Tagger):
        self.tagger = tagger

    def process(self, events):
        scores = self.tagger(events)
        columns = {"event": events.event, **scores}
        if isinstance(events, dak.Array):
            return columns
        # the scores are plain arrays that pickle back from worker processes; the event numbers are
        # read lazily from the chunk's file and carry NanoEvents behaviour, so they go back as numpy
        columns["event"] = ak.to_numpy(events.event)
        metadata = events.metadata
        return {metadata["dataset"]: {(metadata["filename"], metadata["entrystart"]): columns}}

    def postprocess(self, accumulator):
        return accumulator


@pytest.fixture(scope="module")
def fileset(tmp_path_factory) -> dict:
    """Two datasets of two 5-event files; one dataset per PFNano layout (a dataset shares one layout)."""
    folder = tmp_path_factory.mktemp("executions")
    return {dataset: {"files": {str(write_small_pfnano(folder / f"{dataset}{i}.root", seed=seed + i, layout=layout)): "Events"
                                for i in range(2)}}
            for dataset, layout, seed in (("ttbar", "new", 30), ("qcd", "old", 40))}


def runner_columns(output: dict, fileset: dict) -> dict[str, dict[str, np.ndarray]]:
    """The Runner's per-chunk output → per dataset, the flat columns in file and entry order."""
    result = {}
    for dataset, spec in fileset.items():
        chunks = sorted(output[dataset].items(), key=lambda item: (list(spec["files"]).index(item[0][0]), item[0][1]))
        result[dataset] = {name: np.concatenate([ak.to_numpy(ak.ravel(columns[name])) for _, columns in chunks])
                           for name in ("event", *TAGGERS)}
    return result


def make_tagger(backend: str, request) -> Tagger:
    if backend == "torch":
        return Tagger(list(TAGGERS), backend="torch", n_threads=1)  # the same thread count in every process
    server = request.getfixturevalue("triton_server")
    return Tagger(list(TAGGERS), server=f"grpc://{server.grpc_url}")


@pytest.fixture(scope="module", params=["triton", "torch"])
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def dask_result(request, backend, fileset, dask_cluster) -> dict[str, dict[str, np.ndarray]]:
    from distributed import Client

    tagger = make_tagger(backend, request)
    with Client(dask_cluster) as client:
        runnable, _ = preprocess(fileset, step_size=CHUNK, align_clusters=False)
        steps = {dataset: [tuple(step) for f in spec["files"].values() for step in f["steps"]]
                 for dataset, spec in runnable.items()}
        assert steps == {dataset: [(0, 3), (3, 5)] * 2 for dataset in fileset}
        lazy = apply_to_fileset(FatJetScores(tagger), runnable, schemaclass=PFNanoAODSchema)
        for columns in lazy.values():
            assert columns["lloca"].npartitions == 4
        (computed,) = dask.compute(lazy, scheduler=client.get)
    return {dataset: {name: ak.to_numpy(ak.ravel(array)) for name, array in columns.items()}
            for dataset, columns in computed.items()}


@pytest.mark.parametrize("executor", ["iterative", "futures"])
def test_runner_and_apply_to_fileset_give_the_same_scores(executor, backend, fileset, dask_result, request):
    tagger = make_tagger(backend, request)
    chosen = processor.IterativeExecutor() if executor == "iterative" else processor.FuturesExecutor(workers=2)
    runner = processor.Runner(chosen, schema=PFNanoAODSchema, chunksize=CHUNK)
    output = runner(fileset, processor_instance=FatJetScores(tagger), treename="Events")
    from_runner = runner_columns(output, fileset)
    assert set(from_runner) == set(dask_result) == {"ttbar", "qcd"}
    for dataset, columns in from_runner.items():
        np.testing.assert_array_equal(columns["event"], dask_result[dataset]["event"])
        for name in TAGGERS:
            got, expected = columns[name], dask_result[dataset][name]
            assert len(got) == len(expected) > 0
            np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
            if backend == "torch":
                np.testing.assert_array_equal(got, expected, err_msg=f"{dataset} {name}")
            else:
                np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6, equal_nan=True, err_msg=f"{dataset} {name}")
