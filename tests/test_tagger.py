"""``coffea_lorentz.Tagger`` on coffea NanoEvents in every mode: eager, virtual and dask-awkward.

Real parts: real ROOT files (the CMS PFNano sample and small files in both PFNano layouts), a real
Triton server, dask-awkward graphs computed by dask. The dask path must give exactly the eager
scores and read only the constituent columns.
"""

from __future__ import annotations

import pickle
import sys

import awkward as ak
import dask
import dask_awkward as dak
import numpy as np
import pytest
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz import Tagger
from coffea_lorentz.errors import ConfigurationError, MissingBranchError
from coffea_lorentz.run import default_max_constituents
from coffea_lorentz.testing import require_triton, triton_server_fixture

TAGGERS = ("lloca", "lorentz_efn")
triton_server = triton_server_fixture(taggers=TAGGERS, scope="module", skip_if_unavailable=not require_triton())

#: What the constituents need, per PFNano layout; nothing else may be read.
COMMON_COLUMNS = {"nFatJet", "nFatJetPFCands", "FatJetPFCands_pFCandsIdx", "nPFCands",
                  "PFCands_pt", "PFCands_eta", "PFCands_phi", "PFCands_mass"}
LAYOUT_COLUMNS = {"new": COMMON_COLUMNS | {"FatJet_nConstituents"}, "old": COMMON_COLUMNS | {"FatJetPFCands_jetIdx"}}


def events_of(path, mode: str, **options):
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode=mode, **options).events()


def flat(scores) -> np.ndarray:
    return ak.to_numpy(ak.flatten(scores))


def necessary_columns(array) -> set[str]:
    (columns,) = dak.report_necessary_columns(array).values()
    return set(columns)


@pytest.fixture(params=["cms", "new", "old"])
def sample(request, small_pfnano_files):
    """(path, layout): the CMS sample (older layout; skipped where absent) and a made file in each layout."""
    if request.param == "cms":
        return request.getfixturevalue("pfnano_file"), "old"
    return small_pfnano_files[request.param], request.param


@pytest.fixture(scope="module")
def small_pfnano_files(tmp_path_factory):
    from coffea_lorentz.testing import write_small_pfnano

    folder = tmp_path_factory.mktemp("tagger")
    return {layout: write_small_pfnano(folder / f"small_{layout}.root", layout=layout) for layout in ("new", "old")}


# -- construction ------------------------------------------------------------------------------
def test_defaults_are_the_shipped_weights_own_and_the_run_s():
    tagger = Tagger("lloca", server="grpc://127.0.0.1:8001")
    assert tagger.batch_config.max_constituents == default_max_constituents(["lloca"]) == 32
    assert (tagger.backend, tagger.server, tagger.names) == ("triton", "grpc://127.0.0.1:8001", ("lloca",))
    several = Tagger(list(TAGGERS), backend="torch")
    assert several.batch_config.max_constituents == default_max_constituents(TAGGERS)
    assert Tagger("lloca", backend="torch", max_constituents=64).batch_config.max_constituents == 64


def test_pickles_as_plain_data():
    tagger = Tagger(list(TAGGERS), server="grpc://127.0.0.1:8001", timeout_s=30)
    copy = pickle.loads(pickle.dumps(tagger))
    assert copy == tagger and hash(copy) == hash(tagger)
    assert dict(copy.specs[0].options) == {"timeout_s": 30}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"taggers": "lloca"}, "server='grpc://HOST:PORT'"),
        ({"taggers": "lloka", "backend": "torch"}, "did you mean lloca"),
        ({"taggers": "lloca", "backend": "tensorrt"}, "backend must be one of"),
        ({"taggers": "lloca", "backend": "triton"}, "needs server="),
        ({"taggers": ["lloca", "lloca"], "backend": "torch"}, "named twice"),
        ({"taggers": [], "backend": "torch"}, "no tagger"),
        ({"taggers": "lloca", "server": "127.0.0.1:8001", "weights": "x.pt"}, "weights= is for backend='torch'"),
    ],
)
def test_bad_configuration_is_refused_before_any_work(arguments, message):
    with pytest.raises(ConfigurationError, match=message):
        Tagger(arguments.pop("taggers"), **arguments)


def test_importing_the_package_and_the_tagger_loads_no_torch():
    import subprocess

    code = ("import sys, pickle\nimport coffea_lorentz\nassert 'torch' not in sys.modules\n"
            "from coffea_lorentz.tagger import Tagger\nimport coffea_lorentz.load\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False"


# -- eager, virtual, dask -----------------------------------------------------------------------
def test_dask_equals_eager_and_reads_only_the_constituent_columns(sample):
    path, layout = sample
    tagger = Tagger("lloca", backend="torch")
    eager = tagger(events_of(path, "eager"))
    accessed = []
    virtual = tagger(events_of(path, "virtual", access_log=accessed))
    assert {access.branch for access in accessed} == LAYOUT_COLUMNS[layout]
    lazy = tagger(events_of(path, "dask"))
    assert isinstance(lazy, dak.Array)
    assert necessary_columns(lazy) == LAYOUT_COLUMNS[layout]
    (computed,) = dask.compute(lazy)
    assert str(eager.type) == str(virtual.type) == str(computed.type) == f"{len(eager)} * var * float32"
    assert ak.num(computed, axis=1).tolist() == ak.num(eager, axis=1).tolist()
    np.testing.assert_array_equal(flat(computed), flat(eager))  # NaN (no constituents) included
    np.testing.assert_array_equal(flat(virtual), flat(eager))


def test_score_can_be_attached_to_the_events_in_every_mode(small_pfnano_files):
    tagger = Tagger("lloca", backend="torch")
    path = small_pfnano_files["new"]
    virtual = events_of(path, "virtual")
    virtual["FatJet", "lloca_score"] = tagger(virtual)
    lazy = events_of(path, "dask")
    lazy["FatJet", "lloca_score"] = tagger(lazy)
    selected = lazy.FatJet[lazy.FatJet.lloca_score > 0.5]
    (from_dask,) = dask.compute(selected.pt)
    expected = virtual.FatJet[virtual.FatJet.lloca_score > 0.5].pt
    assert from_dask.tolist() == expected.tolist()


def test_several_dask_partitions_each_scored_like_its_eager_file(tmp_path):
    """Two files → two partitions; each partition is scored as that file is scored eagerly."""
    from coffea_lorentz.testing import write_small_pfnano

    files = {str(write_small_pfnano(tmp_path / f"part{seed}.root", seed=seed)): "Events" for seed in (3, 4)}
    lazy = NanoEventsFactory.from_root(files, schemaclass=PFNanoAODSchema, mode="dask").events()
    assert lazy.npartitions == 2
    tagger = Tagger("lloca", backend="torch")
    (computed,) = dask.compute(tagger(lazy))
    expected = np.concatenate([flat(tagger(events_of(path, "eager"))) for path in files])
    np.testing.assert_array_equal(flat(computed), expected)


def test_missing_branches_fail_when_the_graph_is_built(shared_data):
    with pytest.raises(MissingBranchError, match="PFCands"):
        Tagger("lloca", backend="torch")(events_of(shared_data / "nano_dy.root", "dask"))


@pytest.mark.slow
def test_several_taggers_through_triton_share_one_pass(sample, triton_server):
    path, layout = sample
    server = f"grpc://{triton_server.grpc_url}"
    both = Tagger(list(TAGGERS), server=server)
    eager = both(events_of(path, "virtual"))
    assert set(eager) == set(TAGGERS)
    lazy = both(events_of(path, "dask"))
    assert set(lazy) == set(TAGGERS)
    # one read and one batching: a single coffea-lorentz node feeds both outputs
    layers = [name for name in lazy["lloca"].dask.layers if name.startswith("coffea-lorentz")]
    assert layers == [name for name in lazy["lorentz_efn"].dask.layers if name.startswith("coffea-lorentz")]
    assert len(layers) == 1
    assert necessary_columns(lazy["lloca"]) == LAYOUT_COLUMNS[layout]
    (computed,) = dask.compute(lazy)
    for name in TAGGERS:
        np.testing.assert_array_equal(flat(computed[name]), flat(eager[name]))
        alone = Tagger(name, server=server, max_constituents=both.batch_config.max_constituents)
        np.testing.assert_array_equal(flat(alone(events_of(path, "virtual"))), flat(eager[name]))
        in_process = Tagger(name, backend="torch", max_constituents=both.batch_config.max_constituents)
        np.testing.assert_allclose(flat(in_process(events_of(path, "virtual"))), flat(eager[name]),
                                   atol=1e-5, rtol=0, equal_nan=True)


@pytest.mark.slow
def test_a_worker_scoring_through_triton_never_imports_torch(triton_server, small_pfnano_files, tmp_path):
    """What a Dask worker does with a Triton Tagger: unpickle it, score a chunk. torch stays out."""
    import subprocess

    pickled = tmp_path / "tagger.pkl"
    pickled.write_bytes(pickle.dumps(Tagger("lloca", server=f"grpc://{triton_server.grpc_url}")))
    code = (
        "import pickle, sys\n"
        "from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema\n"
        f"tagger = pickle.loads(open({str(pickled)!r}, 'rb').read())\n"
        f"events = NanoEventsFactory.from_root({{{str(small_pfnano_files['new'])!r}: 'Events'}},"
        " schemaclass=PFNanoAODSchema, mode='virtual').events()\n"
        "scores = tagger(events)\n"
        "print(len(scores), 'torch' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["5", "False"]
