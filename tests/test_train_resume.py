"""Resumable training: a run stopped after epoch 1 and started again ends with the weights, history and
metrics of one uninterrupted run (seeded, CPU); a rerun with other options is refused in one line."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.symmetry import random_jets
from coffea_lorentz.train import RESUME_FILE, JetSet, TrainConfig, train_on_jets


def _jets(n: int, seed: int) -> JetSet:
    p4, mask = random_jets(n, 12, min_constituents=3, dtype=torch.float32, seed=seed)
    label = (np.arange(n) % 2).astype(np.int64)
    p4 = (p4 * mask.unsqueeze(-1)).numpy()
    p4[label == 1, :, 0] *= 1.3  # a difference to learn
    return JetSet(p4=p4, mask=mask.numpy(), label=label, observables={"mass": np.zeros(n, dtype=np.float32)})


@pytest.fixture(scope="module")
def splits() -> dict[str, JetSet]:
    return {"train": _jets(96, 1), "val": _jets(32, 2), "test": _jets(32, 3)}


CONFIG = TrainConfig(tagger="lorentz_efn", epochs=3, batch_size=16, max_constituents=12, patience=0, seed=5,
                     n_threads=1)


def _weights(folder) -> dict[str, torch.Tensor]:
    return torch.load(folder / "lorentz_efn.pt", weights_only=True)["state_dict"]


def test_a_stopped_run_continues_to_the_uninterrupted_result(splits, tmp_path):
    whole = train_on_jets(CONFIG, splits, tmp_path / "whole", source="synthetic")

    first = train_on_jets(CONFIG, splits, tmp_path / "resumed", source="synthetic", stop_after_epoch=1)
    assert first["stopped_after"] == 1 and len(first["history"]) == 1
    assert (tmp_path / "resumed" / RESUME_FILE).is_file() and not (tmp_path / "resumed" / "metrics.json").exists()
    lines = []
    resumed = train_on_jets(CONFIG, splits, tmp_path / "resumed", source="synthetic", log=lines.append)
    assert lines[0].startswith("lorentz_efn: continuing after epoch 1") and len(lines) == 3  # epochs 2 and 3 run

    assert resumed["epochs_run"] == whole["epochs_run"] == 3 and resumed["best_epoch"] == whole["best_epoch"]
    for key in ("train_loss", "val_loss", "val_auc"):
        assert [row[key] for row in resumed["history"]] == [row[key] for row in whole["history"]]
    expected, got = _weights(tmp_path / "whole"), _weights(tmp_path / "resumed")
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)
    assert resumed["test"] == whole["test"]
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["epochs_run"] == 3


def test_other_options_are_refused_in_one_line(splits, tmp_path):
    train_on_jets(CONFIG, splits, tmp_path, source="synthetic", stop_after_epoch=1)

    with pytest.raises(InvalidInputError) as error:
        train_on_jets(replace(CONFIG, lr=2e-3), splits, tmp_path, source="synthetic")
    message = str(error.value)
    assert "\n" not in message and "resume.pt" in message and "lr" in message
    # other jets are other options too
    other = dict(splits, train=_jets(96, 9))
    with pytest.raises(InvalidInputError, match="train_jets"):
        train_on_jets(CONFIG, other, tmp_path, source="synthetic")
