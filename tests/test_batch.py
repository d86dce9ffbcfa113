"""Batching and unflattening: every jet comes back in place, padding is exact, buckets are tight."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest

from coffea_lorentz.batch import BatchConfig, make_batches, scatter, unflatten
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
