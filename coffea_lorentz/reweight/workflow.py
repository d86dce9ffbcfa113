"""Reweighting in one call: hold out jets, train the classifier, weight the held-out nominal jets,
run the closure test (χ²/ndf per observable, effective sample size and clipping of the weights, the
classifier's reliability curve), and save the reweighter, the closure plot and the reliability plot.

Given held-out *events* too (a fileset's test split, :attr:`coffea_lorentz.fileset_jets.FilesetJets.events`),
a per-jet reweighter's closure also covers the event observables, each event weighted as ``run``
writes ``weight_<name>`` (:func:`held_out_event_weights`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from ..errors import InvalidInputError
from .classifier import ReweightConfig, TrainHistory, predict_probability, train_classifier
from .closure_check import EVENT_OBSERVABLES, ClosureResult, closure, plot_closure
from .diagnostics import plot_reliability, reliability_curve, weight_summary
from .domain import domain_of_samples
from .samples import JetSample, split_sample
from .saving import save_reweighter
from .weights import leading_jet_event_weights, reweighter_name, weights_from_probability

__all__ = ["ReweightResult", "run_reweighting", "held_out_closure", "held_out_event_closure", "held_out_event_weights"]


@dataclass(frozen=True)
class ReweightResult:
    """What :func:`run_reweighting` produced."""

    model: nn.Module
    history: TrainHistory
    closure: ClosureResult
    weights_path: Path | None
    plot_path: Path | None
    test_weights: np.ndarray
    reliability_path: Path | None = None
    test_event_weights: np.ndarray | None = None


def run_reweighting(
    nominal: JetSample,
    alternative: JetSample,
    config: ReweightConfig = ReweightConfig(),
    *,
    test_fraction: float = 0.3,
    output_dir: str | Path | None = None,
    name: str = "alternative",
    n_bins: int = 12,
    log=None,
    record: dict | None = None,
    closure_observables: tuple[str, ...] = (),
    event_objects: str | None = None,
    held_out: tuple[JetSample, JetSample] | None = None,
    held_out_events: tuple[JetSample, JetSample] | None = None,
    domain=None,
    progress: bool = False,
) -> ReweightResult:
    """Hold out ``test_fraction`` of each sample, train on the rest, and run the closure on the held-out jets.

    With ``output_dir``, the reweighter (:func:`save_reweighter`, closure numbers included, the
    training ``domain`` (:func:`~coffea_lorentz.reweight.domain.domain_of_samples` of the jets of
    both samples), plus ``record``: how it was made, e.g. the command and the samples) and the
    closure plot ``closure_<name>.png`` and the reliability plot ``calibration_<name>.png`` are
    written there. ``closure_observables``: observables compared besides the standard ones (each
    must be in both samples).

    ``held_out`` (nominal, alternative): jets kept apart already (e.g. the test split of a fileset,
    :mod:`coffea_lorentz.fileset_jets`); then all of ``nominal`` and ``alternative`` are trained on
    and ``test_fraction`` is not used. ``held_out_events`` (nominal, alternative): held-out events
    of a per-jet reweighter (one entry per event: its leading fat jet's constituents, the event
    observables and ``n_fat_jets``; :attr:`~coffea_lorentz.fileset_jets.FilesetJets.events`): the
    closure then adds the event observables (:func:`held_out_event_closure`). ``domain`` (a :class:`~coffea_lorentz.reweight.domain.TrainingDomain`)
    replaces the one computed from the jets. With ``output_dir`` the classifier's state after each
    epoch is kept in ``reweight_<name>.resume.pt`` there, and a rerun continues from it.

    ``event_objects`` (``"pfcands"`` or ``"jets"``): the samples hold events, not jets
    (:func:`~coffea_lorentz.reweight.events.read_event_sample`); the record then says
    ``level: "event"`` and names the objects, and holds no jet ``domain``.
    """
    if held_out is not None:
        (nom_train, alt_train), (nom_test, alt_test) = (nominal, alternative), held_out
    else:
        if not 0 < test_fraction < 1:
            raise InvalidInputError(f"run_reweighting: test_fraction must lie in (0, 1), got {test_fraction}")
        nom_train, nom_test = split_sample(nominal, (1 - test_fraction, test_fraction), seed=config.seed + 10)
        alt_train, alt_test = split_sample(alternative, (1 - test_fraction, test_fraction), seed=config.seed + 11)
    resume = Path(output_dir) / f"{reweighter_name(name)}.resume.pt" if output_dir is not None else None
    if resume is not None:
        resume.parent.mkdir(parents=True, exist_ok=True)
    model, history = train_classifier(nom_train, alt_train, config, log=log, resume=resume, progress=progress)
    f = predict_probability(model, nom_test, max_constituents=config.max_constituents)
    f_alternative = predict_probability(model, alt_test, max_constituents=config.max_constituents)
    result = held_out_closure(f, f_alternative, nom_test.observables, alt_test.observables, config,
                              prior_ratio=history.prior_ratio, n_bins=n_bins, extra_observables=closure_observables,
                              level="jet" if event_objects is None else "event")
    event_weights = None
    if held_out_events is not None and event_objects is None:
        events = held_out_event_closure(model, *held_out_events, config, prior_ratio=history.prior_ratio, n_bins=n_bins)
        result, event_weights = result.with_events(events[0]), events[1]
    weights = weights_from_probability(
        f, epsilon=config.epsilon, max_weight=config.max_weight, prior_ratio=history.prior_ratio
    )
    weights_path = plot_path = None
    if output_dir is not None:
        if event_objects is None:
            if domain is None:
                domain = domain_of_samples((nominal, alternative), max_constituents=config.max_constituents,
                                           sample=_sample_text(record or {}, len(nominal), len(alternative)))
            level = {"level": "jet", "domain": domain.as_record()}
        else:
            level = {"level": "event", "event_objects": event_objects}
        extra = {
            **level,
            **(record or {}),
            "closure": {**result.as_dict(), "held_out_fraction": round(len(nom_test) / (len(nom_train) + len(nom_test)), 4)},
            "training": {
                "n_nominal": len(nom_train),
                "n_alternative": len(alt_train),
                "train_loss": history.train_loss,
                "val_loss": history.val_loss,
                "val_auc": history.val_auc,
                "best_epoch": history.best_epoch,
                "calibration": {"slope": history.calibration[0], "intercept": history.calibration[1]},
                "wall_s": history.wall_s,
            },
        }
        weights_path = save_reweighter(output_dir, name, model, config, prior_ratio=history.prior_ratio, extra=extra)
        plot_path = plot_closure(result, Path(output_dir) / f"closure_{reweighter_name(name)}.png",
                                 title=f"{reweighter_name(name)}: nominal → alternative")
        reliability_path = plot_reliability(result.reliability, Path(output_dir) / f"calibration_{reweighter_name(name)}.png",
                                            title=f"{reweighter_name(name)}: held-out calibration")
    return ReweightResult(model=model, history=history, closure=result, weights_path=weights_path,
                          plot_path=plot_path, test_weights=weights,
                          reliability_path=reliability_path if output_dir is not None else None,
                          test_event_weights=event_weights)


def held_out_closure(f_nominal: np.ndarray, f_alternative: np.ndarray, nominal: dict, alternative: dict,
                     config: ReweightConfig, *, prior_ratio: float, n_bins: int = 12,
                     extra_observables: tuple[str, ...] = (), level: str = "jet") -> ClosureResult:
    """The closure of held-out entries from the classifier's probabilities ``f_nominal`` [n_nominal] and
    ``f_alternative`` [n_alternative] (NaN: not scored, weight 1) and the observables of each sample:
    χ²/ndf per observable, the weights' summary (effective N, clipping) and the reliability curve."""
    weights = weights_from_probability(f_nominal, epsilon=config.epsilon, max_weight=config.max_weight,
                                       prior_ratio=prior_ratio)
    summary = weight_summary(f_nominal, epsilon=config.epsilon, max_weight=config.max_weight,
                             prior_ratio=prior_ratio)
    curve = reliability_curve(f_nominal, f_alternative)
    return closure(nominal, alternative, weights, n_bins=n_bins, extra_observables=extra_observables,
                   weight_summary=summary, reliability=curve, level=level)


def held_out_event_weights(model: nn.Module, events: JetSample, *, max_constituents: int, epsilon: float,
                           max_weight: float, prior_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """The weights of ``events`` [n_events] (each entry an event's leading fat jet, observable
    ``n_fat_jets``) as ``run --reweighter`` writes ``weight_<name>`` for them: (f float64 [n_events],
    the classifier's probability of the leading fat jet, NaN when not scored; w float32
    [n_events], :func:`~coffea_lorentz.reweight.weights.leading_jet_event_weights` — the leading
    fat jet's weight, 1 for an event without a scored one)."""
    if "n_fat_jets" not in events.observables:
        raise InvalidInputError("held_out_event_weights: the events need the observable 'n_fat_jets' "
                                "(read with read_fileset_jets(..., test_events=True))")
    f = predict_probability(model, events, max_constituents=max_constituents)
    weights = leading_jet_event_weights(f, events.observables["n_fat_jets"], epsilon=epsilon, max_weight=max_weight,
                                        prior_ratio=prior_ratio)
    return f, weights


def held_out_event_closure(model: nn.Module, nominal: JetSample, alternative: JetSample, config: ReweightConfig, *,
                           prior_ratio: float, n_bins: int = 12) -> tuple[ClosureResult, np.ndarray]:
    """The event-level closure of a per-jet reweighter on held-out events (see
    :func:`held_out_event_weights`): the event observables of ``nominal`` weighted as a run weights
    them against those of ``alternative``, with the event weights' summary. Returns the closure
    (``level="event"``) and the nominal events' weights float32 [n_nominal]."""
    f, weights = held_out_event_weights(model, nominal, max_constituents=config.max_constituents,
                                        epsilon=config.epsilon, max_weight=config.max_weight, prior_ratio=prior_ratio)
    summary = weight_summary(f, epsilon=config.epsilon, max_weight=config.max_weight, prior_ratio=prior_ratio)
    present = tuple(name for name in EVENT_OBSERVABLES if name in nominal.observables and name in alternative.observables)
    result = closure(nominal.observables, alternative.observables, weights, observables=present, n_bins=n_bins,
                     weight_summary=summary, level="event")
    return result, weights


def _sample_text(record: dict, n_nominal: int, n_alternative: int) -> str:
    """What the training jets were, for the ``domain`` record: the sample files when ``record`` names them."""
    paths = {key: value.get("path") for key, value in record.get("samples", {}).items() if isinstance(value, dict)}
    if paths.get("nominal") and paths.get("alternative"):
        return f"{n_nominal} jets of {paths['nominal']} (nominal) vs {n_alternative} of {paths['alternative']} (alternative)"
    return f"{n_nominal} nominal vs {n_alternative} alternative jets"
