"""What decides a training run: :class:`TrainConfig` (tagger, size, budget, schedule, seed, device)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .. import models
from ..errors import InvalidInputError

__all__ = ["TrainConfig"]

_SCHEDULES = ("cosine", "onecycle")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run.

    Attributes:
        tagger: registry name (:func:`coffea_lorentz.models.available`) or ``"package.module:Class"`` target.
        size: the tagger's size preset, ``"compact"`` or ``"large"``.
        beam_reference: build the tagger with the beam/time reference vectors.
        model_options: further keyword options of the tagger, as (name, value) pairs.
        epochs: most passes over the training set.
        batch_size: jets per training batch.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW decoupled weight decay.
        schedule: ``"cosine"`` (linear warm-up over the first epoch, then cosine to 0 at ``epochs``)
            or ``"onecycle"`` (PyTorch ``OneCycleLR``).
        grad_clip_norm: clip the global gradient norm to this (None: no clipping).
        patience: stop after this many epochs without a better validation score (0: never stop early).
        select_on: the validation score that picks the kept epoch: ``"auc"`` (ranking, for taggers)
            or ``"loss"`` (cross-entropy, a proper scoring rule: for classifiers whose
            probabilities are used, as in reweighting).
        max_constituents: leading-pT constituents kept per jet.
        n_train: train on this many jets drawn (seeded) from the training split; None = all.
        n_val: validate on this many jets of the validation split; None = all.
        seed: seeds the model initialisation, the subsampling and the batch order.
        device: ``"cpu"`` or ``"cuda"`` (must be available).
        n_threads: torch CPU threads during the run (None: leave as is).
    """

    tagger: str = "lorentznet"
    size: str = "compact"
    beam_reference: bool = False
    model_options: tuple[tuple[str, Any], ...] = ()
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-2
    schedule: str = "cosine"
    grad_clip_norm: float | None = 5.0
    patience: int = 5
    select_on: str = "auc"
    max_constituents: int = 128
    n_train: int | None = None
    n_val: int | None = None
    seed: int = 0
    device: str = "cpu"
    n_threads: int | None = None

    def __post_init__(self) -> None:
        if self.tagger not in models.available() and not models.is_target(self.tagger):
            raise InvalidInputError(
                f"TrainConfig.tagger: expected one of {', '.join(models.available())} or a 'package.module:Class' "
                f"target, got {self.tagger!r}"
            )
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "max_constituents": self.max_constituents}
        for name, value in positive.items():
            if value < 1:
                raise InvalidInputError(f"TrainConfig.{name}: expected >= 1, got {value}")
        for name in ("n_train", "n_val", "n_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InvalidInputError(f"TrainConfig.{name}: expected >= 1 or None, got {value}")
        if not self.lr > 0:
            raise InvalidInputError(f"TrainConfig.lr: expected > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise InvalidInputError(f"TrainConfig.weight_decay: expected >= 0, got {self.weight_decay}")
        if self.patience < 0:
            raise InvalidInputError(f"TrainConfig.patience: expected >= 0, got {self.patience}")
        if self.select_on not in ("auc", "loss"):
            raise InvalidInputError(f"TrainConfig.select_on: expected 'auc' or 'loss', got {self.select_on!r}")
        if self.schedule not in _SCHEDULES:
            raise InvalidInputError(f"TrainConfig.schedule: expected one of {_SCHEDULES}, got {self.schedule!r}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise InvalidInputError(f"TrainConfig.device: expected 'cpu' or 'cuda', got {self.device!r}")
        object.__setattr__(self, "model_options", tuple((str(k), v) for k, v in dict(self.model_options).items()))

    def build_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`coffea_lorentz.models.build` for this run's tagger."""
        return {"size": self.size, "beam_reference": self.beam_reference, **dict(self.model_options)}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``model_options`` as a dict)."""
        out = dataclasses.asdict(self)
        out["model_options"] = dict(self.model_options)
        return out
