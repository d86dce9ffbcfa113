"""The shipped tagger weights load and reproduce the test metrics recorded beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from coffea_lorentz import models
from coffea_lorentz.train import evaluate, load_split, thread_count

REPOSITORY = Path(__file__).resolve().parents[1]


def shipped_records() -> list[str]:
    """The shipped taggers' records (reweighters, ``reweight_*``, are checked in tests/test_reweighter.py)."""
    if not models.WEIGHTS_DIR.is_dir():
        return []
    return sorted(path.stem for path in models.WEIGHTS_DIR.glob("*.json") if not path.stem.startswith("reweight_"))


@pytest.fixture(params=shipped_records() or ["lorentznet"])
def record(request) -> dict:
    name = request.param
    if models.shipped_weights(name) is None:
        pytest.skip(f"no trained weights shipped for {name} (coffea_lorentz/weights/{name}.pt absent)")
    return json.loads((models.WEIGHTS_DIR / f"{name}.json").read_text())


def test_shipped_weights_reproduce_recorded_metrics(record):
    check = record["check"]
    data = REPOSITORY / check["path"]
    if not data.is_file():
        pytest.skip(f"the check dataset {check['path']} is not in this checkout")
    model = models.pretrained(record["tagger"])  # the shipped weights are the default
    jets = load_split(data, check["split"], max_constituents=check["max_constituents"])
    assert len(jets) == check["n_jets"]
    with thread_count(1):
        metrics, score = evaluate(model, jets)
    expected = check["metrics"]
    assert metrics["n_signal"] == expected["n_signal"] and metrics["n_background"] == expected["n_background"]
    # rank-based figures are exact unless float rounding on another CPU swaps two nearly equal scores
    assert metrics["auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-6)
    for key in ("rejection_at_0.3", "rejection_at_0.5"):
        assert metrics[key] == pytest.approx(expected[key], rel=1e-6)
    assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    # and they are trained: better than the jet mass alone on the recorded test split
    assert record["test_metrics"]["auc"] > record["mass_baseline_test_metrics"]["auc"]


def test_shipped_weights_match_their_record(record):
    state = torch.load(models.WEIGHTS_DIR / record["file"], map_location="cpu", weights_only=True)
    assert state["config"] == record["config"]
    model = models.build(record["tagger"], **record["config"])
    assert sum(p.numel() for p in model.parameters()) == record["n_parameters"]
    assert (models.WEIGHTS_DIR / record["file"]).stat().st_size < 1_000_000
