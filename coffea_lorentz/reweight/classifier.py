"""The nominal-vs-alternative classifier: configuration, training with early stopping, a logistic
calibration of its log-odds folded into the output layer, and its probabilities.

The classifier is one of the zoo's Lorentz-invariant taggers (``beam_reference=False``): it sees
only the constituent four-vectors, never the jet-level observables used for the closure test. A
classifier trained briefly on a subtle difference (AUC ≈ 0.57) ranks jets well before its
log-odds reach the right scale, which the calibration (:func:`fit_calibration`,
:func:`fold_calibration`) corrects; the weights need the scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import models
from ..errors import InvalidInputError, ModelMismatchError
from ..threads import thread_count
from .samples import JetSample, concatenate_samples, split_sample

__all__ = [
    "ReweightConfig",
    "TrainHistory",
    "train_config",
    "train_classifier",
    "predict_probability",
    "logit_difference",
    "fit_calibration",
    "fold_calibration",
]


@dataclass(frozen=True, kw_only=True)
class ReweightConfig:
    """How the nominal-vs-alternative classifier is built and trained, and how weights are clipped.

    Attributes:
        tagger: classifier architecture, a name from :func:`coffea_lorentz.models.available`
            (a Lorentz-invariant one: ``lorentz_efn``, ``pelican``, ``lorentznet``, ...) or a
            ``"package.module:Class"`` target.
        size: the tagger's size preset (``"compact"`` or ``"large"``).
        tagger_options: further tagger keywords as ``(name, value)`` pairs (e.g. ``(("hidden", 16),)``).
        epochs: most training epochs; the state with the lowest validation loss is kept (the
            probabilities, not only the ranking, make the weights).
        batch_size: jets per optimiser step.
        lr: peak AdamW learning rate (cosine schedule).
        weight_decay: AdamW decoupled weight decay.
        patience: stop after this many epochs without a lower validation loss (0: never).
        validation_fraction: share of the training jets held out for early stopping.
        max_constituents: leading-pT constituents kept per jet (the scoring pipeline keeps 128).
        calibrate: fit a logistic calibration σ(a·z + b) of the log-odds z on the validation jets
            and fold it into the output layer. A small classifier trained briefly on a subtle
            difference ranks jets well long before its log-odds reach the right scale; the
            weights need the scale, which this 2-parameter fit restores.
        epsilon: f is clipped to [ε, 1 − ε] before w = f / (1 − f), so w ∈ [ε/(1−ε), (1−ε)/ε].
        max_weight: weights are finally clipped to [0, max_weight].
        seed: seeds the initial parameters and the batch order.
        n_threads: torch CPU threads during training (None leaves torch's setting).
    """

    tagger: str = "lorentz_efn"
    size: str = "compact"
    tagger_options: tuple[tuple[str, object], ...] = ()
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-2
    patience: int = 5
    validation_fraction: float = 0.25
    max_constituents: int = 128
    calibrate: bool = True
    epsilon: float = 1e-3
    max_weight: float = 10.0
    seed: int = 0
    n_threads: int | None = None

    def __post_init__(self) -> None:
        if self.tagger not in models.available() and not models.is_target(self.tagger):
            raise InvalidInputError(
                f"ReweightConfig.tagger: expected one of {models.available()} or a 'package.module:Class' "
                f"target, got {self.tagger!r}"
            )
        checks = (
            ("epochs", self.epochs >= 1, ">= 1"),
            ("batch_size", self.batch_size >= 2, ">= 2"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("patience", self.patience >= 0, ">= 0"),
            ("validation_fraction", 0 < self.validation_fraction < 1, "in (0, 1)"),
            ("max_constituents", self.max_constituents >= 1, ">= 1"),
            ("epsilon", 0 < self.epsilon < 0.5, "in (0, 0.5)"),
            ("max_weight", self.max_weight > 0, "> 0"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise InvalidInputError(f"ReweightConfig.{name}: expected {expected}, got {getattr(self, name)!r}")
        object.__setattr__(self, "tagger_options", tuple(sorted(dict(self.tagger_options).items())))

    @property
    def model_config(self) -> dict[str, object]:
        """Keywords for :func:`coffea_lorentz.models.build`: the size preset, two classes, no beam reference."""
        config: dict[str, object] = {"size": self.size, "n_classes": 2, "beam_reference": False}
        config.update(dict(self.tagger_options))
        return config


@dataclass(frozen=True)
class TrainHistory:
    """Per-epoch losses (cross-entropy, nats per jet) and validation AUC, the epoch kept (counted
    from 1), the prior ratio and the calibration.

    ``prior_ratio`` = N_nominal / N_alternative of the jets that set the output's scale (the
    validation jets when calibrated, else the training jets): the classifier is trained without
    class weights, so w = prior_ratio · f / (1 − f) is the density ratio.
    ``calibration`` = (slope a, intercept b) of the logistic calibration folded into the output
    layer (see :func:`fit_calibration`); (1, 0) without calibration.
    """

    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    val_auc: tuple[float, ...]
    best_epoch: int
    prior_ratio: float
    calibration: tuple[float, float]
    wall_s: float


def _jet_set(nominal: JetSample, alternative: JetSample, max_constituents: int):
    """Both samples as one :class:`coffea_lorentz.train.JetSet`, label 0 = nominal, 1 = alternative."""
    from ..train import JetSet, truncate

    pooled = concatenate_samples([nominal, alternative])
    p4, mask = truncate(pooled.p4, pooled.mask, max_constituents)
    labels = np.concatenate([np.zeros(len(nominal), np.int64), np.ones(len(alternative), np.int64)])
    return JetSet(p4=p4, mask=mask, label=labels, observables=pooled.observables)


def train_config(config: ReweightConfig):
    """The :class:`coffea_lorentz.train.TrainConfig` that trains the classifier of ``config``."""
    from ..train import TrainConfig

    return TrainConfig(
        tagger=config.tagger,
        size=config.size,
        beam_reference=False,
        model_options=config.tagger_options,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        patience=config.patience,
        select_on="loss",
        max_constituents=config.max_constituents,
        seed=config.seed,
        n_threads=config.n_threads,
    )


def logit_difference(model: nn.Module, sample: JetSample, *, max_constituents: int = 128) -> np.ndarray:
    """Raw log-odds l₁ − l₀ of the classifier, float64 [n_jets] (jets must have constituents)."""
    from ..train import JetSet, predict, truncate

    p4, mask = truncate(sample.p4, sample.mask, max_constituents)
    logits, _ = predict(model, JetSet(p4=p4, mask=mask, label=np.zeros(len(sample), np.int64)))
    return logits[:, 1].astype(np.float64) - logits[:, 0].astype(np.float64)


def fit_calibration(z_nominal: np.ndarray, z_alternative: np.ndarray, *, n_iterations: int = 50) -> tuple[float, float]:
    """Logistic (Platt) calibration: (a, b) maximising the likelihood of P(alternative | z) = σ(a·z + b).

    ``z_nominal`` and ``z_alternative`` are raw log-odds [n] of held-out jets of each class.
    Newton's method on the standardised z; returns the slope and intercept for the raw z.
    """
    z = np.concatenate([z_nominal, z_alternative]).astype(np.float64)
    y = np.concatenate([np.zeros(len(z_nominal)), np.ones(len(z_alternative))])
    center, spread = float(z.mean()), float(z.std())
    if not np.isfinite(spread) or spread == 0.0:
        return 0.0, float(np.log(len(z_alternative) / max(len(z_nominal), 1)))
    u = (z - center) / spread
    design = np.stack([u, np.ones_like(u)], axis=1)
    theta = np.zeros(2)
    for _ in range(n_iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (y - p)
        hessian = (design * (p * (1 - p))[:, None]).T @ design + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    slope = theta[0] / spread
    return float(slope), float(theta[1] - slope * center)


def _output_layer(model: nn.Module, n_classes: int = 2) -> nn.Linear:
    layers = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == n_classes]
    if not layers:
        raise ModelMismatchError(f"{type(model).__name__}: no Linear layer with {n_classes} outputs to calibrate")
    return layers[-1]


def fold_calibration(model: nn.Module, slope: float, intercept: float, probe: JetSample) -> nn.Module:
    """Make ``model``'s log-odds a·(l₁ − l₀) + b by rescaling its output layer in place.

    The last ``Linear`` with two outputs is multiplied by ``slope`` and ``intercept`` is added to
    the class-1 bias, so the architecture and the state-dict keys stay the same (the calibrated
    classifier is served like any tagger). Checked on the jets of ``probe``: raises
    :class:`~coffea_lorentz.errors.ModelMismatchError` when that layer does not produce the logits.
    """
    before = logit_difference(model, probe)
    layer = _output_layer(model)
    with torch.no_grad():
        layer.weight.mul_(slope)
        if layer.bias is None:
            raise ModelMismatchError(f"{type(model).__name__}: the output layer has no bias to calibrate")
        layer.bias.mul_(slope)
        layer.bias[1] += intercept
    after = logit_difference(model, probe)
    expected = slope * before + intercept
    # float32 logits: the raw log-odds carry ~1e-7 absolute error, multiplied by the slope
    if not np.allclose(after, expected, rtol=0.0, atol=1e-2 * max(1.0, float(np.abs(expected).max()))):
        raise ModelMismatchError(
            f"{type(model).__name__}: calibration could not be folded into the output layer "
            f"(max deviation {float(np.abs(after - expected).max()):.3g})"
        )
    return model


def train_classifier(
    nominal: JetSample,
    alternative: JetSample,
    config: ReweightConfig = ReweightConfig(),
    *,
    log=None,
    resume=None,
    progress: bool = False,
) -> tuple[nn.Module, TrainHistory]:
    """Train ``config.tagger`` to separate ``alternative`` (class 1) from ``nominal`` (class 0) jets.

    A ``config.validation_fraction`` share of each sample is held out; training is
    :func:`coffea_lorentz.train.fit` (AdamW, cosine schedule, plain cross-entropy, the epoch with
    the lowest validation loss kept). With ``config.calibrate`` the log-odds are then calibrated on
    the validation jets (:func:`fit_calibration`) and the calibration is folded into the output
    layer (:func:`fold_calibration`). The model is returned in eval mode with the history, whose
    ``prior_ratio`` corrects the weights for unequal class sizes.
    ``log(str)`` receives one line per epoch when given. ``resume`` (a file) keeps the state after
    each epoch and continues from it (:func:`coffea_lorentz.train.fit`); ``progress`` draws bars on stderr.
    """
    from ..train import fit

    if len(nominal) < 4 or len(alternative) < 4:
        raise InvalidInputError(
            f"train_classifier: expected at least 4 jets per sample, got {len(nominal)} nominal, {len(alternative)} alternative"
        )
    start = time.perf_counter()
    fractions = (1 - config.validation_fraction, config.validation_fraction)
    nom_train, nom_val = split_sample(nominal, fractions, seed=config.seed)
    alt_train, alt_val = split_sample(alternative, fractions, seed=config.seed + 1)
    train_jets = _jet_set(nom_train, alt_train, config.max_constituents)
    val_jets = _jet_set(nom_val, alt_val, config.max_constituents)
    with thread_count(config.n_threads):
        model, summary = fit(train_config(config), train_jets, val_jets, log=log, resume=resume, progress=progress)
        model = model.cpu().eval()
        calibration = (1.0, 0.0)
        if config.calibrate:
            nom_val, alt_val = (s.subset(np.flatnonzero(s.n_constituents > 0)) for s in (nom_val, alt_val))
            calibration = fit_calibration(
                logit_difference(model, nom_val, max_constituents=config.max_constituents),
                logit_difference(model, alt_val, max_constituents=config.max_constituents),
            )
            fold_calibration(model, *calibration, alt_val.subset(np.arange(min(len(alt_val), 64))))
            if log is not None:
                log(f"calibration on {len(nom_val) + len(alt_val)} validation jets: log-odds → "
                    f"{calibration[0]:.4g} · log-odds + {calibration[1]:.4g}")
    rows = summary["history"]
    history = TrainHistory(
        train_loss=tuple(float(r["train_loss"]) for r in rows),
        val_loss=tuple(float(r["val_loss"]) for r in rows),
        val_auc=tuple(float(r["val_auc"]) for r in rows),
        best_epoch=int(summary["best_epoch"]),
        prior_ratio=len(nom_val) / len(alt_val) if config.calibrate else len(nom_train) / len(alt_train),
        calibration=calibration,
        wall_s=time.perf_counter() - start,
    )
    return model, history


def predict_probability(model: nn.Module, sample: JetSample, *, max_constituents: int = 128) -> np.ndarray:
    """Softmax probability of class 1 (alternative), float64 [n_jets]; NaN for jets without constituents.

    Only the ``max_constituents`` leading-pT constituents are used, as in the scoring pipeline.
    """
    from ..train import JetSet, predict, truncate

    f = np.full(len(sample), np.nan)
    scored = np.flatnonzero(sample.n_constituents > 0)
    if scored.size:
        p4, mask = truncate(sample.p4[scored], sample.mask[scored], max_constituents)
        jets = JetSet(p4=p4, mask=mask, label=np.zeros(len(scored), np.int64))
        f[scored] = predict(model, jets)[1]
    return f
