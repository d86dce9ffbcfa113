"""Top-tagging dataset: selection, HDF5 round trip, splits, determinism, reader errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from coffea_lorentz.errors import InputFileError, InvalidInputError
from coffea_lorentz.generate import SPLITS, available, load_dataset
from coffea_lorentz.generate.dataset import DatasetConfig

requires_generator = pytest.mark.skipif(
    not available(), reason="pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')"
)


@pytest.fixture(scope="module")
def splits(dataset_file):
    return {split: load_dataset(dataset_file, split) for split in SPLITS}


def test_shapes_dtypes_and_mask(splits):
    for p4, mask, label, observables in splits.values():
        n_jets = len(label)
        assert p4.shape == (n_jets, 200, 4) and p4.dtype == np.float32
        assert mask.shape == (n_jets, 200) and mask.dtype == bool
        assert label.dtype == np.int8 and set(np.unique(label)) <= {0, 1}
        assert {"pt", "eta", "mass", "msoftdrop", "n_constituents", "tau32"} <= set(observables)
        assert all(len(v) == n_jets for v in observables.values())
        # Real constituents first, zero padding after; the mask counts min(all constituents, 200).
        np.testing.assert_array_equal(mask.sum(axis=1), np.minimum(observables["n_constituents"], 200))
        assert np.all(mask[:, :-1] >= mask[:, 1:])
        assert np.all(p4[~mask] == 0)
        assert np.all(p4[..., 0][mask] > 0)


def test_classes_are_balanced_and_splits_are_60_20_20(splits):
    labels = np.concatenate([s[2] for s in splits.values()])
    assert labels.sum() == (labels == 0).sum() > 10
    sizes = np.array([len(splits[s][2]) for s in SPLITS])
    np.testing.assert_allclose(sizes / sizes.sum(), [0.6, 0.2, 0.2], atol=1.5 / sizes.sum() + 0.01)


def test_splits_are_disjoint(dataset_file):
    keys = {}
    with h5py.File(dataset_file) as handle:
        for split in SPLITS:
            group = handle[split]
            keys[split] = set(zip(group["label"][...], group["event"][...], group["observables/pt"][...]))
            assert len(keys[split]) == len(group["label"])
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]


def test_pt_window_eta_and_constituent_sums(splits):
    for p4, mask, label, observables in splits.values():
        assert np.all((observables["pt"] > 550) & (observables["pt"] < 650))
        assert np.all(np.abs(observables["eta"]) < 2)
        total = p4.astype(np.float64).sum(axis=1)
        complete = observables["n_constituents"] <= 200
        np.testing.assert_allclose(np.hypot(total[:, 1], total[:, 2])[complete], observables["pt"][complete], rtol=1e-4)
        # Constituents are pT-descending.
        pt = np.hypot(p4[..., 1], p4[..., 2])
        assert np.all((pt[:, :-1] >= pt[:, 1:] - 1e-3) | ~mask[:, 1:])


def test_top_jets_are_heavier_than_qcd_jets(splits):
    observables = {k: np.concatenate([s[3][k] for s in splits.values()]) for k in ("msoftdrop", "tau32")}
    label = np.concatenate([s[2] for s in splits.values()])
    assert observables["msoftdrop"][label == 1].mean() > observables["msoftdrop"][label == 0].mean() + 50
    assert observables["tau32"][label == 1].mean() < observables["tau32"][label == 0].mean()


def test_attributes_name_the_variation_and_settings(dataset_file):
    with h5py.File(dataset_file) as handle:
        assert handle.attrs["variation"] == "nominal"
        assert "HardQCD:all = on" in handle.attrs["pythia_settings"]
        assert handle.attrs["seed"] == 5


@requires_generator
def test_same_seed_same_dataset_and_alternative_gets_its_own_label(tmp_path):
    from coffea_lorentz.generate import GeneratorConfig, generate_dataset

    paths = {}
    for name, alternative in (("a", False), ("b", False), ("alt", True)):
        paths[name] = tmp_path / f"{name}.h5"
        generator = GeneratorConfig(process="qcd", pthat_min_gev=500.0, alternative=alternative)
        generate_dataset(paths[name], generators=[generator], n_events=30, seed=9, events_per_task=30)
    for split in SPLITS:
        for first, second in zip(load_dataset(paths["a"], split)[:3], load_dataset(paths["b"], split)[:3]):
            np.testing.assert_array_equal(first, second)
    with h5py.File(paths["alt"]) as handle:
        assert handle.attrs["variation"] == "alternative"
        assert "TimeShower:alphaSvalue = 0.120" in handle.attrs["pythia_settings"]
    assert not np.array_equal(load_dataset(paths["a"], "train")[0], load_dataset(paths["alt"], "train")[0])


@pytest.mark.parametrize("split", ["training", "all", ""])
def test_unknown_split_raises(dataset_file, split):
    with pytest.raises(InvalidInputError, match="split"):
        load_dataset(dataset_file, split)


def test_missing_and_foreign_files_raise(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        load_dataset(tmp_path / "absent.h5", "train")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as handle:
        handle.create_dataset("x", data=np.zeros(3))
    with pytest.raises(InputFileError, match="format"):
        load_dataset(foreign, "train")
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(InputFileError, match="not an HDF5 file"):
        load_dataset(text, "train")


@pytest.mark.parametrize(
    "kwargs", [{"min_pt_gev": 700.0}, {"max_constituents": 0}, {"split_fractions": (0.5, 0.5, 0.5)}]
)
def test_invalid_dataset_config_raises(kwargs):
    with pytest.raises(InvalidInputError):
        DatasetConfig(**kwargs)


@requires_generator
def test_event_counts_per_process_are_recorded(tmp_path):
    from coffea_lorentz.generate import GeneratorConfig, generate_dataset

    generators = [GeneratorConfig(process=p, pthat_min_gev=500.0) for p in ("ttbar", "qcd")]
    path = tmp_path / "uneven.h5"
    summary = generate_dataset(path, generators=generators, n_events={"ttbar": 20, "qcd": 10}, seed=2,
                               events_per_task=10)
    assert summary.n_events == {"ttbar": 20, "qcd": 10}
    with h5py.File(path) as handle:
        assert json.loads(handle.attrs["n_events"]) == {"ttbar": 20, "qcd": 10}
    with pytest.raises(InvalidInputError, match="each of"):
        generate_dataset(path, generators=generators, n_events={"ttbar": 20}, seed=2)
