"""Classifier reweighting: morph a nominal jet sample into an alternative one with per-jet weights.

A classifier trained with cross-entropy to tell jets of the alternative generator configuration
(class 1) from jets of the nominal one (class 0) converges to
f(x) = N_alt p_alt(x) / (N_alt p_alt(x) + N_nom p_nom(x)), N being the training jets per class.
The likelihood ratio is then

    w(x) = p_alt(x) / p_nom(x) = (N_nom / N_alt) · f(x) / (1 − f(x)),

and nominal jets weighted by w are distributed like alternative ones (the "classifier trick";
e.g. Andreassen & Nachman, DCTR, arXiv:1907.08209). The classifier is one of the zoo's
Lorentz-invariant taggers (``beam_reference=False``): it sees only the constituent four-vectors,
never the jet-level observables used for the closure test. The default is ``lorentz_efn``, an
energy flow network on jet-rest-frame invariants whose unnormalised particle sum carries the
multiplicity and whose pair flow sees both the rest-frame angles and the pair masses. On the FSR
αs variation (QCD jets, 300–450 GeV, 4000 training jets a sample) it brings jet mass, soft-drop
mass and multiplicity from χ²/ndf 7–23 to about 1 on 4000 held-out jets (README, "Reweighting").

One module per concept:

- :mod:`.weights` — w = f/(1 − f) with its clipping, per-event weights, reweighter names: what a
  worker applying weights imports (no torch).
- :mod:`.lookup` — :func:`find_reweighter`: a shipped reweighter by short name (``"fsr"``) or one
  on disk by path → :class:`ReweighterInfo` (JSON only; no torch).
- :mod:`.domain` — :class:`TrainingDomain` (the jets a reweighter was trained on) and
  :func:`count_outside`: jets of a run outside it, whose weights are extrapolations (no torch).
- :mod:`.samples` — :class:`JetSample` (padded constituents and jet observables), reading the
  generator's HDF5 datasets, splitting and pooling samples (no torch).
- :mod:`.classifier` — :class:`ReweightConfig`, :func:`train_classifier` with early stopping and a
  logistic calibration of the log-odds folded into the output layer, :func:`predict_probability`.
- :mod:`.closure_check` — :func:`closure` (χ²/ndf per observable, with its ndf and the errors of
  both samples, before and after; jet and event observables) and
  :func:`plot_closure` (drawn in a style context; no torch). Not named ``closure``: that is the
  function's name, and a submodule of the same name would shadow it on this package.
- :mod:`.diagnostics` — :func:`effective_sample_size`, :func:`weight_summary` (clipped weights),
  :func:`reliability_curve` and :func:`plot_reliability`: what to check before trusting weights (no torch).
- :mod:`.events` — event-level reweighting: :func:`event_objects` (each event as one set of
  four-momenta: PF candidates, or AK4 jets + leptons + MET), :func:`read_event_sample` (training
  events from PFNano files, read as a run reads them) and the pass's ``EventInput`` (no torch).
- :mod:`.saving` — :func:`save_reweighter`, :func:`load_reweighter`: ``reweight_<name>.pt`` + ``.json``.
- :mod:`.workflow` — :func:`run_reweighting`: split, train, closure, save and plot in one call.

Every name is also available from this package, loaded on first access, so
``import coffea_lorentz.reweight.weights`` (or ``from coffea_lorentz.reweight import
weights_from_probability``) does not import torch.
"""

from __future__ import annotations

import importlib

#: Public name → the module of this package that defines it.
_HOMES: dict[str, str] = {
    "weights_from_probability": "weights",
    "event_weights": "weights",
    "jet_weights": "weights",
    "leading_jet_event_weights": "weights",
    "reweighter_name": "weights",
    "ReweighterInfo": "lookup",
    "find_reweighter": "lookup",
    "find_reweighters": "lookup",
    "shipped_reweighters": "lookup",
    "TrainingDomain": "domain",
    "count_outside": "domain",
    "JetSample": "samples",
    "concatenate_samples": "samples",
    "split_sample": "samples",
    "ReweightConfig": "classifier",
    "TrainHistory": "classifier",
    "train_config": "classifier",
    "train_classifier": "classifier",
    "predict_probability": "classifier",
    "logit_difference": "classifier",
    "fit_calibration": "classifier",
    "fold_calibration": "classifier",
    "CLOSURE_OBSERVABLES": "closure_check",
    "ObservableClosure": "closure_check",
    "ClosureResult": "closure_check",
    "EVENT_OBSERVABLES": "closure_check",
    "effective_sample_size": "diagnostics",
    "WeightSummary": "diagnostics",
    "weight_summary": "diagnostics",
    "ReliabilityCurve": "diagnostics",
    "reliability_curve": "diagnostics",
    "plot_reliability": "diagnostics",
    "closure": "closure_check",
    "plot_closure": "closure_check",
    "EVENT_OBJECTS": "events",
    "event_objects": "events",
    "event_observables": "events",
    "read_event_sample": "events",
    "save_reweighter": "saving",
    "load_reweighter": "saving",
    "ReweightResult": "workflow",
    "run_reweighting": "workflow",
    "held_out_event_weights": "workflow",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    module = _HOMES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
