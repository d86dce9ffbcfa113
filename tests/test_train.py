"""Tests of coffea_lorentz.train and the train/evaluate CLI on a small Pythia dataset made on the spot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from coffea_lorentz import models
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.train import (
    JetSet,
    TrainConfig,
    _training_batches,
    build_model,
    evaluate,
    fit,
    load_split,
    train,
    truncate,
)

#: Small and quick: leading 16 constituents, one thread.
FAST = {"max_constituents": 16, "batch_size": 32, "n_threads": 1, "patience": 0}


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """≈ 280 jets (top and QCD, 550–650 GeV) from 300 tt̄ + 300 QCD Pythia events, seed 11."""
    generate = pytest.importorskip("coffea_lorentz.generate", reason="coffea_lorentz.generate is not importable")
    if not generate.available():
        pytest.skip("pythia8mc and fastjet are not importable (pip install 'coffea-lorentz[generate]')")
    path = tmp_path_factory.mktemp("jets") / "small.h5"
    generators = [generate.GeneratorConfig(process=p, pthat_min_gev=500.0) for p in ("ttbar", "qcd")]
    generate.generate_dataset(path, generators=generators, n_events=300, seed=11, workers=1, events_per_task=300)
    return path


@pytest.fixture(scope="module")
def trained(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, TrainConfig]:
    output = tmp_path_factory.mktemp("trained")
    config = TrainConfig(tagger="lorentznet", epochs=6, lr=3e-3, seed=3, **FAST)
    return train(config, small_dataset, output), output, config


def test_training_beats_random_and_writes_outputs(trained):
    result, output, config = trained
    assert result["test"]["auc"] > 0.6
    assert (output / "lorentznet.pt").is_file()
    assert json.loads((output / "metrics.json").read_text()) == result
    for path in result["plots"]:
        assert Path(path).is_file() and Path(path).stat().st_size > 1000
    assert result["epochs_run"] == config.epochs
    assert 1 <= result["best_epoch"] <= result["epochs_run"]
    assert result["n_parameters"] == sum(p.numel() for p in build_model(config).parameters())
    assert set(result["test"]) >= {"auc", "accuracy", "rejection_at_0.3", "rejection_at_0.5", "loss"}
    assert result["baselines"]["mass"]["auc"] > 0.5  # tops are heavier than QCD jets
    assert result["history"][-1]["train_loss"] < result["history"][0]["train_loss"]


def test_checkpoint_reloads_and_reproduces_metrics(trained, small_dataset):
    result, output, config = trained
    checkpoint = torch.load(output / "lorentznet.pt", map_location="cpu", weights_only=True)
    assert checkpoint["config"] == config.build_kwargs()
    assert checkpoint["train_config"]["max_constituents"] == config.max_constituents
    model = models.pretrained("lorentznet", weights=output / "lorentznet.pt")
    jets = load_split(small_dataset, "test", max_constituents=config.max_constituents)
    metrics, _ = evaluate(model, jets)
    assert metrics == result["test"]


def test_training_is_deterministic(small_dataset):
    config = TrainConfig(tagger="lorentznet", epochs=1, n_train=64, seed=5, **FAST)
    train_jets = load_split(small_dataset, "train", max_constituents=config.max_constituents)
    val_jets = load_split(small_dataset, "val", max_constituents=config.max_constituents)
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(1)
        first, _ = fit(config, train_jets.take(np.arange(64)), val_jets)
        second, _ = fit(config, train_jets.take(np.arange(64)), val_jets)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(first.state_dict()["encoder.weight"], build_model(config).state_dict()["encoder.weight"])


def test_n_train_larger_than_split_raises(small_dataset, tmp_path):
    config = TrainConfig(tagger="lorentznet", epochs=1, n_train=10**6, **FAST)
    with pytest.raises(InvalidInputError, match="n_train"):
        train(config, small_dataset, tmp_path)


def _parser() -> argparse.ArgumentParser:
    from coffea_lorentz.cli import train as train_cli

    parser = argparse.ArgumentParser(prog="coffea-lorentz")
    train_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_train_then_evaluate(small_dataset, tmp_path, capsys):
    parser = _parser()
    args = parser.parse_args(
        ["train", "--tagger", "lorentznet", "--data", str(small_dataset), "--output", str(tmp_path),
         "--epochs", "1", "--n-train", "64", "--max-constituents", "16", "--threads", "1", "--quiet"]
    )
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "jet mass alone" in printed and "lorentznet" in printed
    recorded = json.loads((tmp_path / "metrics.json").read_text())
    assert recorded["n_train"] == 64
    args = parser.parse_args(
        ["evaluate", "--tagger", "lorentznet", "--weights", str(tmp_path / "lorentznet.pt"),
         "--data", str(small_dataset), "--json"]
    )
    assert args.func(args) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test"] == recorded["test"]  # max_constituents came from the checkpoint


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_cli_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args([command, "--help"])
    assert exit_info.value.code == 0
    assert "--tagger" in capsys.readouterr().out


def test_truncate_keeps_leading_pt():
    # jet 0: pT 1, 5, 3 (+ one padded slot holding garbage); jet 1: one constituent
    p4 = np.zeros((2, 4, 4), dtype=np.float32)
    p4[0, :3, 1] = [1.0, 5.0, 3.0]
    p4[0, :3, 0] = [1.0, 5.0, 3.0]
    p4[0, 3] = [99.0, 99.0, 0.0, 0.0]
    p4[1, 0] = [2.0, 0.0, 2.0, 0.0]
    mask = np.array([[True, True, True, False], [True, False, False, False]])
    out, out_mask = truncate(p4, mask, 2)
    assert out.shape == (2, 2, 4) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :, 1], [5.0, 3.0])
    np.testing.assert_array_equal(out_mask, [[True, True], [True, False]])
    np.testing.assert_array_equal(out[1, 1], 0.0)


def test_truncate_rejects_wrong_shapes():
    with pytest.raises(InvalidInputError, match="p4"):
        truncate(np.zeros((2, 3)), np.zeros((2, 3), dtype=bool), 2)


@pytest.mark.parametrize(("n_jets", "batch_size"), [(1, 4), (100, 7), (1000, 32)])
def test_training_batches_cover_every_jet_once(n_jets, batch_size):
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=n_jets)
    batches = _training_batches(lengths, batch_size, rng)
    everything = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(everything), np.arange(n_jets))
    assert max(len(b) for b in batches) <= batch_size


def test_training_batches_group_similar_lengths():
    rng = np.random.default_rng(1)
    lengths = rng.integers(1, 129, size=4096)
    batches = _training_batches(lengths, 32, rng)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 0.7 * len(lengths) * 128  # far below padding everything to the longest jet


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"tagger": "no_such_tagger"}, "tagger"),
        ({"epochs": 0}, "epochs"),
        ({"lr": 0.0}, "lr"),
        ({"n_train": 0}, "n_train"),
        ({"schedule": "step"}, "schedule"),
        ({"device": "tpu"}, "device"),
        ({"patience": -1}, "patience"),
    ],
)
def test_train_config_rejects_bad_values(options, field):
    with pytest.raises(InvalidInputError, match=field):
        TrainConfig(**options)


def test_jetset_take_keeps_observables():
    jets = JetSet(
        p4=np.zeros((3, 2, 4), np.float32),
        mask=np.ones((3, 2), bool),
        label=np.array([0, 1, 0]),
        observables={"mass": np.array([1.0, 2.0, 3.0])},
    )
    taken = jets.take(np.array([2, 0]))
    np.testing.assert_array_equal(taken.observables["mass"], [3.0, 1.0])
    assert len(taken) == 2
