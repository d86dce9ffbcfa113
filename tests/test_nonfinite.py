"""Non-finite constituents are dropped and counted, never scored: real PFNano files in both layouts.

Each test writes a small PFNano file (:func:`write_small_pfnano`), then writes a copy in which chosen
constituents carry NaN or ±inf, and a copy in which the same constituents are removed from their
jets (their ``FatJetPFCands`` links deleted). A file with bad values must read, and score, exactly
like the file without those constituents.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from coffea.nanoevents import NanoEventsFactory, PFNanoAODSchema

from coffea_lorentz.batch import BatchConfig
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.infer import TorchBackend
from coffea_lorentz.models import trained_max_constituents
from coffea_lorentz.pipeline import TaggedChunk, score_branch, tag_events
from coffea_lorentz.read import JetConstituents, jet_constituents
from coffea_lorentz.testing import write_small_pfnano
from coffea_lorentz.testing.samples import write_nanoaod_tree

#: Collections of a small PFNano file, each written as ``n<name>`` and ``<name>_<field>`` branches.
COLLECTIONS = ("FatJet", "PFCands", "FatJetPFCands")

#: A constituent to spoil: (event, jet within the event, rank of its link among the jet's links,
#: PFCands field, value). Jets of ``write_small_pfnano``: [[12, 40], [], [0, 5], [150], [3, 70, 1]].
Spoil = tuple[int, int, int, str, float]

#: One bad constituent of each kind, in different jets, plus a jet (event 4, jet 2) whose only
#: constituent is bad and a huge but finite η whose energy overflows float32.
SPOILS: tuple[Spoil, ...] = (
    (0, 0, 3, "pt", np.nan),
    (2, 1, 0, "eta", -np.inf),
    (4, 1, 10, "mass", np.inf),
    (3, 0, 7, "eta", 200.0),
    (4, 2, 0, "pt", np.nan),
)


def open_events(path: Path) -> ak.Array:
    return NanoEventsFactory.from_root({str(path): "Events"}, schemaclass=PFNanoAODSchema, mode="virtual").events()


def read_tree(path: Path) -> dict[str, ak.Array | np.ndarray]:
    """The ``Events`` tree as {branch or collection: array}; collections as jagged records."""
    with uproot.open(path) as file:
        arrays = file["Events"].arrays(library="ak")
    tree: dict[str, ak.Array | np.ndarray] = {}
    for name in ("run", "luminosityBlock", "event"):
        tree[name] = ak.to_numpy(arrays[name])
    for collection in COLLECTIONS:
        prefix = f"{collection}_"
        fields = [f for f in arrays.fields if f.startswith(prefix)]
        tree[collection] = ak.zip({f[len(prefix):]: arrays[f] for f in fields})
    return tree


def write_tree(path: Path, tree: dict[str, ak.Array | np.ndarray]) -> Path:
    """Write ``tree`` (as from :func:`read_tree`) with the PFNano branch names."""
    return write_nanoaod_tree(path, tree)


def link_positions(tree: dict, event: int, jet: int) -> np.ndarray:
    """Positions in event ``event``'s ``FatJetPFCands`` of jet ``jet``'s links, in stored order."""
    links = tree["FatJetPFCands"][event]
    if "jetIdx" in links.fields:
        return np.flatnonzero(ak.to_numpy(links.jetIdx) == jet)
    n_constituents = ak.to_numpy(tree["FatJet"].nConstituents[event]).astype(np.int64)
    start = int(n_constituents[:jet].sum())
    return np.arange(start, start + int(n_constituents[jet]))


def spoiled_and_removed(source: Path, folder: Path, spoils: tuple[Spoil, ...]) -> tuple[Path, Path]:
    """Two copies of ``source``: one with each spoiled constituent's value replaced, one without those constituents."""
    tree = read_tree(source)
    pfcands = {f: ak.to_list(tree["PFCands"][f]) for f in tree["PFCands"].fields}
    links = {f: ak.to_list(tree["FatJetPFCands"][f]) for f in tree["FatJetPFCands"].fields}
    has_counts = "nConstituents" in tree["FatJet"].fields
    n_constituents = ak.to_list(tree["FatJet"].nConstituents) if has_counts else None
    removed: dict[int, set[int]] = {}
    for event, jet, rank, field, value in spoils:
        position = int(link_positions(tree, event, jet)[rank])
        pfcands[field][event][links["pFCandsIdx"][event][position]] = value
        removed.setdefault(event, set()).add(position)
        if has_counts:
            n_constituents[event][jet] -= 1

    def typed(values: list, like: ak.Array) -> ak.Array:
        return ak.values_astype(ak.Array(values), ak.type(like).content.content.primitive)

    spoiled = dict(tree)
    spoiled["PFCands"] = ak.zip({f: typed(v, tree["PFCands"][f]) for f, v in pfcands.items()})
    cut = dict(tree)
    cut["FatJetPFCands"] = ak.zip({
        f: typed([[x for i, x in enumerate(row) if i not in removed.get(e, ())] for e, row in enumerate(v)],
                 tree["FatJetPFCands"][f])
        for f, v in links.items()
    })
    if has_counts:
        cut["FatJet"] = ak.with_field(tree["FatJet"], typed(n_constituents, tree["FatJet"].nConstituents),
                                      "nConstituents")
    return write_tree(folder / "spoiled.root", spoiled), write_tree(folder / "removed.root", cut)


def flat_jet_index(n_jets: np.ndarray, event: int, jet: int) -> int:
    return int(np.sum(n_jets[:event])) + jet


@pytest.fixture(params=["new", "old"])
def layout(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def clean_file(tmp_path: Path, layout: str) -> Path:
    return write_small_pfnano(tmp_path / f"clean_{layout}.root", layout=layout)


@pytest.fixture(scope="module")
def lorentznet() -> TorchBackend:
    return TorchBackend("lorentznet")


def assert_same_constituents(got: JetConstituents, expected: JetConstituents) -> None:
    np.testing.assert_array_equal(got.p4, expected.p4)
    np.testing.assert_array_equal(got.pt, expected.pt)
    np.testing.assert_array_equal(got.n_constituents, expected.n_constituents)
    np.testing.assert_array_equal(got.n_jets, expected.n_jets)


@pytest.mark.parametrize(
    ("field", "value"),
    [("pt", np.nan), ("eta", -np.inf), ("mass", np.inf), ("phi", np.nan), ("pt", np.inf), ("eta", 200.0)],
)
def test_bad_constituent_is_dropped_and_counted(clean_file: Path, tmp_path: Path, field: str, value: float):
    spoiled, removed = spoiled_and_removed(clean_file, tmp_path, ((2, 1, 2, field, value),))
    jets = jet_constituents(open_events(spoiled), source=str(spoiled))
    expected = jet_constituents(open_events(removed), source=str(removed))
    assert_same_constituents(jets, expected)
    assert np.all(np.isfinite(jets.p4)) and np.all(np.isfinite(jets.pt))
    affected = flat_jet_index(jets.n_jets, 2, 1)
    assert jets.n_dropped.dtype == np.int64
    assert jets.n_dropped.tolist() == [1 if j == affected else 0 for j in range(jets.total_jets)]
    assert jets.n_constituents.tolist() == [12, 40, 0, 4, 150, 3, 70, 1]
    assert jets.affected_jets.tolist() == [j == affected for j in range(jets.total_jets)]
    assert jets.affected_events().tolist() == [2]
    assert expected.n_dropped.sum() == 0 and expected.affected_events().tolist() == []


def test_counts_over_several_jets(clean_file: Path, tmp_path: Path):
    spoiled, removed = spoiled_and_removed(clean_file, tmp_path, SPOILS + ((0, 0, 5, "phi", np.inf),))
    jets = jet_constituents(open_events(spoiled), source=str(spoiled))
    assert_same_constituents(jets, jet_constituents(open_events(removed)))
    clean = jet_constituents(open_events(clean_file))
    assert jets.n_dropped.tolist() == [2, 0, 0, 1, 1, 0, 1, 1]
    np.testing.assert_array_equal(jets.n_constituents + jets.n_dropped, clean.n_constituents)
    assert int(jets.n_dropped.sum()) == len(SPOILS) + 1 == int(clean.n_constituents.sum() - jets.n_constituents.sum())
    assert jets.affected_events().tolist() == [0, 2, 3, 4]
    assert jets.n_constituents[-1] == 0  # event 4, jet 2: its only constituent was bad


def test_scores_equal_the_file_without_bad_constituents(clean_file: Path, tmp_path: Path, lorentznet: TorchBackend):
    spoiled, removed = spoiled_and_removed(clean_file, tmp_path, SPOILS)
    config = BatchConfig(max_constituents=trained_max_constituents("lorentznet"))
    branch = score_branch("lorentznet")

    def tag(path: Path) -> TaggedChunk:
        return tag_events(open_events(path), {"lorentznet": lorentznet}, batch_config=config, source=str(path))

    got, without, clean = tag(spoiled), tag(removed), tag(clean_file)
    score = ak.to_numpy(ak.flatten(got.scores[branch]))
    # The same jets after dropping, through the same code path: the same scores, bit for bit.
    np.testing.assert_array_equal(score, ak.to_numpy(ak.flatten(without.scores[branch])))
    # NaN only where no constituent is left: the jet that never had any and the one whose only constituent was bad.
    no_constituents = got.jets.n_constituents == 0
    np.testing.assert_array_equal(np.isnan(score), no_constituents)
    assert no_constituents.tolist() == [False, False, True, False, False, False, False, True]
    # Jets that lost nothing keep their scores. The clean file's batches hold one more jet (the one whose only
    # constituent is spoiled here), and a matrix library need not round a row alike in batches of other sizes.
    unaffected = ~got.jets.affected_jets & ~no_constituents
    clean_score = ak.to_numpy(ak.flatten(clean.scores[branch]))
    np.testing.assert_allclose(score[unaffected], clean_score[unaffected], rtol=1e-6, atol=0)
    # Each affected jet with constituents left is scored on them, not left at its old value.
    assert np.all(np.isfinite(score[got.jets.affected_jets & ~no_constituents]))

    summary = got.summary(str(spoiled), "out.root")
    assert summary["nonfinite_jets"] == 5 == got.nonfinite_jets
    assert summary["nonfinite_constituents"] == 5 == got.nonfinite_constituents
    assert (summary["events"], summary["jets"]) == (5, 8)
    assert summary["constituents"] == clean.summary(str(clean_file), "out.root")["constituents"] - 5
    assert got.first_affected_events() == [0, 2, 3, 4]
    assert got.first_affected_events(limit=2) == [0, 2]
    assert got.first_affected_events(limit=0) == []
    clean_summary = clean.summary(str(clean_file), "out.root")
    assert (clean_summary["nonfinite_jets"], clean_summary["nonfinite_constituents"]) == (0, 0)
    assert clean.first_affected_events() == []


def test_jet_with_only_bad_constituents_scores_nan(clean_file: Path, tmp_path: Path):
    spoils = tuple((4, 0, rank, "pt", np.nan) for rank in range(3))
    spoiled, _ = spoiled_and_removed(clean_file, tmp_path, spoils)
    tagged = tag_events(open_events(spoiled), {"identity": TorchBackend("identity")}, source=str(spoiled))
    score = ak.to_numpy(ak.flatten(tagged.scores[score_branch("identity")]))
    jet = flat_jet_index(tagged.jets.n_jets, 4, 0)
    assert np.isnan(score[jet])
    assert np.isnan(score).tolist() == [j in (2, jet) for j in range(8)]
    assert tagged.jets.n_dropped[jet] == 3 and tagged.jets.n_constituents[jet] == 0
    assert tagged.summary(str(spoiled), "out.root")["nonfinite_jets"] == 1
    assert tagged.first_affected_events() == [4]


def test_default_and_checked_n_dropped():
    p4, pt = np.ones((3, 4), np.float32), np.ones(3, np.float32)
    jets = JetConstituents(p4=p4, pt=pt, n_constituents=np.array([2, 0, 1]), n_jets=np.array([1, 2]))
    assert jets.n_dropped.tolist() == [0, 0, 0] and jets.n_dropped.dtype == np.int64
    assert jets.affected_events().tolist() == []
    jets = JetConstituents(p4=p4, pt=pt, n_constituents=np.array([2, 0, 1]), n_jets=np.array([1, 2]),
                           n_dropped=np.array([0, 0, 4]))
    assert jets.affected_jets.tolist() == [False, False, True] and jets.affected_events().tolist() == [1]
    with pytest.raises(InvalidInputError, match=r"n_dropped has shape \(2,\); expected \(3,\)"):
        JetConstituents(p4=p4, pt=pt, n_constituents=np.array([2, 0, 1]), n_jets=np.array([1, 2]),
                        n_dropped=np.array([0, 0]))
