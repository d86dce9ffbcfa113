"""Batching and unflattening: every jet comes back in place, padding is exact, buckets are tight."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_lorentz.batch import BatchConfig, LazyBatches, make_batches, plan_batches, scatter, unflatten
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.read import JetConstituents


def make_jets(n_constituents: list[int], n_jets: list[int], seed: int = 0) -> JetConstituents:
    """Flat constituents whose E encodes (jet, position) so every entry can be traced."""
    rng = np.random.default_rng(seed)
    total = int(np.sum(n_constituents))
    jet_of = np.repeat(np.arange(len(n_constituents)), n_constituents)
    position = np.concatenate([np.arange(n) for n in n_constituents]) if total else np.zeros(0, int)
    p4 = rng.normal(size=(total, 4)).astype(np.float32)
    p4[:, 0] = jet_of * 1000 + position
    pt = np.concatenate([np.sort(rng.uniform(1, 100, n))[::-1] for n in n_constituents]).astype(np.float32) if total else np.zeros(0, np.float32)
    return JetConstituents(p4=p4, pt=pt, n_constituents=np.asarray(n_constituents, np.int64), n_jets=np.asarray(n_jets, np.int64))


def test_round_trip_every_jet_in_place():
    jets = make_jets([3, 0, 17, 200, 1, 64, 65, 128, 129], [2, 0, 3, 0, 4])
    batches = make_batches(jets, BatchConfig())
    outputs = [b.p4[:, 0, 0].astype(np.float32) for b in batches]  # E of the first constituent = jet * 1000
    per_jet = scatter(batches, outputs, jets.total_jets)
    expected = np.arange(jets.total_jets) * 1000.0
    expected[1] = np.nan  # the jet with no constituents
    np.testing.assert_array_equal(per_jet, expected.astype(np.float32))
    jagged = unflatten(per_jet, jets.n_jets)
    assert ak.num(jagged).tolist() == [2, 0, 3, 0, 4]
    assert ak.flatten(jagged)[2] == 2000.0


def test_buckets_are_tight_and_truncate_at_max():
    config = BatchConfig(max_constituents=128, buckets=(16, 32, 64, 96, 128))
    jets = make_jets([3, 16, 17, 33, 64, 65, 97, 200], [8])
    batches = make_batches(jets, config)
    length_of_jet = {int(j): b.p4.shape[1] for b in batches for j in b.jet_index}
    assert length_of_jet == {0: 16, 1: 16, 2: 32, 3: 64, 4: 64, 5: 96, 6: 128, 7: 128}
    long_jet = next(b for b in batches if 7 in b.jet_index)
    row = int(np.flatnonzero(long_jet.jet_index == 7)[0])
    assert long_jet.mask[row].sum() == 128  # truncated to the 128 leading-pT constituents
    np.testing.assert_array_equal(long_jet.p4[row, :, 0], 7000 + np.arange(128))


def test_mask_and_zero_padding():
    jets = make_jets([5, 2], [2])
    (batch,) = make_batches(jets, BatchConfig(buckets=(8,), max_constituents=8))
    assert batch.p4.shape == (2, 8, 4) and batch.p4.dtype == np.float32
    assert batch.mask.dtype == bool
    assert batch.mask.sum(axis=1).tolist() == [5, 2]
    assert np.all(batch.p4[~batch.mask] == 0.0)
    # real entries come first and keep the stored (pT-descending) order
    np.testing.assert_array_equal(batch.p4[1, :2, 0], [1000, 1001])


def test_batch_size_limit_splits_buckets():
    jets = make_jets([4] * 10, [10])
    batches = make_batches(jets, BatchConfig(buckets=(4,), max_constituents=4, max_batch_size=3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert np.concatenate([b.jet_index for b in batches]).tolist() == list(range(10))


@pytest.mark.parametrize("n_jets", [[0, 0, 0], []])
def test_events_without_jets(n_jets):
    jets = make_jets([], n_jets)
    batches = make_batches(jets)
    assert batches == []
    result = unflatten(scatter(batches, [], 0), jets.n_jets)
    assert ak.num(result).tolist() == n_jets


def test_scatter_rejects_wrong_shapes():
    jets = make_jets([3, 3], [2])
    batches = make_batches(jets, BatchConfig(buckets=(4,), max_constituents=4))
    with pytest.raises(InvalidInputError, match="batch of 2 jets"):
        scatter(batches, [np.zeros(3, np.float32)], jets.total_jets)
    with pytest.raises(InvalidInputError, match="1 batches but 0 outputs"):
        scatter(batches, [], jets.total_jets)


@pytest.mark.parametrize("bad", [dict(max_constituents=0), dict(max_batch_size=0), dict(buckets=(0, 8))])
def test_config_rejects_bad_values(bad):
    with pytest.raises(InvalidInputError):
        BatchConfig(**bad)


# -- tail merging --------------------------------------------------------------------------------

UNMERGED = BatchConfig(request_cost_slots=0)
UNMERGED_SMALL = BatchConfig(max_batch_size=3, request_cost_slots=0)


def realistic_lengths(n_jets: int, seed: int) -> np.ndarray:
    """Constituent counts of boosted fat jets: log-normal around 45 (1–250), 3 % of jets empty."""
    rng = np.random.default_rng(seed)
    n_constituents = np.clip(np.rint(rng.lognormal(np.log(45), 0.5, n_jets)), 1, 250).astype(np.int64)
    n_constituents[rng.random(n_jets) < 0.03] = 0
    return n_constituents


def plain_jets(n_constituents: np.ndarray) -> JetConstituents:
    total = int(n_constituents.sum())
    return JetConstituents(p4=np.zeros((total, 4), np.float32), pt=np.zeros(total, np.float32),
                           n_constituents=n_constituents, n_jets=np.array([len(n_constituents)]))


def assert_valid_plan(plan, jets: JetConstituents, config: BatchConfig) -> None:
    """Every jet with constituents in exactly one batch, no batch too big, every jet fits its length."""
    sent = np.concatenate(plan.jet_index)
    np.testing.assert_array_equal(np.sort(sent), np.flatnonzero(jets.n_constituents > 0))
    assert max(len(index) for index in plan.jet_index) <= config.batch_size
    for index, length in zip(plan.jet_index, plan.lengths):
        assert np.all(np.minimum(jets.n_constituents[index], config.max_constituents) <= length)
    assert np.all(np.diff(plan.lengths) >= 0)  # shortest first


@pytest.mark.parametrize("n_jets", [200, 300, 700, 1500])
def test_tail_merging_sends_fewer_requests_within_the_padding_bound(n_jets):
    config = BatchConfig()
    saved = []
    for seed in range(4):
        jets = plain_jets(realistic_lengths(n_jets, seed))
        unmerged, merged = plan_batches(jets, UNMERGED), plan_batches(jets, config)
        assert_valid_plan(merged, jets, config)
        assert len(merged) <= len(unmerged)
        assert merged.padding_ratio <= max(config.max_padding_ratio, unmerged.padding_ratio)
        # each merge removes one request and adds at most request_cost_slots padded slots
        n_merges = len(unmerged) - len(merged)
        assert merged.padded_slots - unmerged.padded_slots <= n_merges * config.request_cost_slots
        saved.append(n_merges)
    assert sum(saved) > 0, saved


def test_tail_merging_obeys_a_tight_padding_bound():
    jets = plain_jets(realistic_lengths(700, 0))
    loose = BatchConfig(request_cost_slots=10**9, max_padding_ratio=10.0)
    assert len(plan_batches(jets, loose)) < len(plan_batches(jets, UNMERGED))
    for ratio in (1.3, 1.31, 1.4):
        plan = plan_batches(jets, BatchConfig(request_cost_slots=10**9, max_padding_ratio=ratio))
        assert plan.padding_ratio <= ratio
        assert_valid_plan(plan, jets, loose)


def test_tail_merging_moves_a_tail_only_into_room_and_skips_empty_buckets():
    config = BatchConfig(buckets=(4, 8, 16), max_constituents=16, max_batch_size=4, request_cost_slots=10**6,
                         max_padding_ratio=10.0)
    # bucket 4: 5 jets (tail 1); bucket 8: none; bucket 16: 2 jets (room 2) → the tail joins bucket 16
    jets = make_jets([4, 4, 4, 4, 4, 16, 16], [7])
    plan = plan_batches(jets, config)
    assert [index.tolist() for index in plan.jet_index] == [[0, 1, 2, 3], [5, 6, 4]]
    assert plan.lengths.tolist() == [4, 16]
    # bucket 16 full (4 jets): no room, nothing moves
    jets = make_jets([4] * 5 + [16] * 4, [9])
    assert [len(index) for index in plan_batches(jets, config).jet_index] == [4, 1, 4]
    # the same with the move costing more than a request: nothing moves
    jets = make_jets([4, 4, 4, 4, 4, 16, 16], [7])
    dear = BatchConfig(buckets=(4, 8, 16), max_constituents=16, max_batch_size=4, request_cost_slots=11,
                       max_padding_ratio=10.0)
    assert [len(index) for index in plan_batches(jets, dear).jet_index] == [4, 1, 2]


@pytest.mark.parametrize("merge", [False, True])
def test_round_trip_with_and_without_merging(merge):
    config = BatchConfig(max_batch_size=3, request_cost_slots=10**6 if merge else 0, max_padding_ratio=100.0)
    jets = make_jets([3, 0, 17, 200, 1, 64, 65, 128, 129, 5, 40, 2], [2, 0, 3, 0, 4, 3])
    batches = make_batches(jets, config)
    assert (len(batches) < len(make_batches(jets, UNMERGED_SMALL))) == merge
    for batch in batches:  # padding: real entries first, in place; zeros after
        counts = batch.mask.sum(axis=1)
        np.testing.assert_array_equal(counts, np.minimum(jets.n_constituents[batch.jet_index], 128))
        np.testing.assert_array_equal(batch.p4[:, 0, 0], batch.jet_index * 1000.0)
        assert np.all(batch.p4[~batch.mask] == 0.0)
    per_jet = scatter(batches, [b.p4[:, 0, 0].astype(np.float32) for b in batches], jets.total_jets)
    expected = np.arange(jets.total_jets) * 1000.0
    expected[1] = np.nan
    np.testing.assert_array_equal(per_jet, expected.astype(np.float32))


def test_lazy_batches_pad_once_and_match_make_batches():
    jets = make_jets(list(realistic_lengths(50, 3)), [50])
    plan = plan_batches(jets, BatchConfig(max_batch_size=8))
    lazy = LazyBatches(jets, plan)
    assert lazy[1] is lazy[1]
    assert len(lazy[:2]) == 2
    for built, expected in zip(lazy, make_batches(jets, BatchConfig(max_batch_size=8))):
        np.testing.assert_array_equal(built.p4, expected.p4)
        np.testing.assert_array_equal(built.mask, expected.mask)
        np.testing.assert_array_equal(built.jet_index, expected.jet_index)


@pytest.mark.parametrize("bad", [dict(request_cost_slots=-1), dict(max_padding_ratio=0.9),
                                 dict(max_padding_ratio=float("nan"))])
def test_config_rejects_bad_merging_values(bad):
    with pytest.raises(InvalidInputError):
        BatchConfig(**bad)


def physical_jets(n_constituents: np.ndarray, seed: int = 0) -> JetConstituents:
    """Massless constituents of jets along x (pT 1–100 GeV, |Δη|, |Δφ| ~ 0.3), pT-descending per jet."""
    rng = np.random.default_rng(seed)
    total = int(n_constituents.sum())
    pt = rng.exponential(15.0, total) + 0.5
    offsets = np.concatenate([[0], np.cumsum(n_constituents)])
    jet_of = np.repeat(np.arange(len(n_constituents)), n_constituents)
    pt = pt[np.lexsort((-pt, jet_of))]
    eta, phi = rng.normal(0, 0.3, total), rng.normal(0, 0.3, total)
    p4 = np.stack([pt * np.cosh(eta), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1).astype(np.float32)
    assert offsets[-1] == total
    return JetConstituents(p4=p4, pt=pt.astype(np.float32), n_constituents=n_constituents,
                           n_jets=np.array([len(n_constituents)]))


@pytest.mark.parametrize("tagger", ["identity", "lorentznet"])
def test_merged_batches_score_like_unmerged_ones(tagger):
    """Merged jets are padded further and share a batch with others; the padding is masked, so the
    identity model gives identical scores and a Lorentz tagger agrees within the shipped tolerance."""
    torch = pytest.importorskip("torch")
    from coffea_lorentz.infer import TorchBackend
    from coffea_lorentz.symmetry import TOLERANCE, relative_change

    jets = physical_jets(np.minimum(realistic_lengths(150, 3) // 2, 40), seed=5)  # 0–40 constituents
    common = dict(max_constituents=32, buckets=(8, 16, 24, 32), max_batch_size=16)
    unmerged = make_batches(jets, BatchConfig(**common, request_cost_slots=0))
    merged = make_batches(jets, BatchConfig(**common, request_cost_slots=10**6, max_padding_ratio=100.0))
    assert len(merged) < len(unmerged)
    backend = TorchBackend(tagger)
    reference = scatter(unmerged, backend.infer_batches(unmerged), jets.total_jets)
    scores = scatter(merged, backend.infer_batches(merged), jets.total_jets)
    if tagger == "identity":
        np.testing.assert_array_equal(scores, reference)
    else:
        tolerance = TOLERANCE[torch.float32]
        real = jets.n_constituents > 0
        change = relative_change(torch.from_numpy(reference[real]), torch.from_numpy(scores[real]))
        assert change <= max(tolerance.padding, tolerance.batch), change


def test_default_batch_size_is_the_backends_and_256_in_process():
    from coffea_lorentz.batch import IN_PROCESS_BATCH_SIZE
    from coffea_lorentz.infer import TorchBackend

    assert BatchConfig().max_batch_size is None and BatchConfig().batch_size == IN_PROCESS_BATCH_SIZE == 256
    assert BatchConfig(max_batch_size=1000).batch_size == 1000
    assert TorchBackend("identity").request_size() == IN_PROCESS_BATCH_SIZE
