"""Per-jet and per-event reweighting weights from classifier probabilities: what a worker applying
a reweighter needs, and nothing more (numpy and awkward; no torch, no training code).

A classifier trained with cross-entropy to tell jets of the alternative configuration (class 1)
from nominal ones (class 0) gives the probability f(x); the density ratio is

    w(x) = p_alt(x) / p_nom(x) = prior_ratio · f(x) / (1 − f(x)),   prior_ratio = N_nom / N_alt

(see :mod:`coffea_lorentz.reweight`). Clipping: f is clipped to [ε, 1 − ε] before the ratio, so a
jet the classifier is certain about cannot produce 0 or ∞; the weight is then clipped to
[0, ``max_weight``]. A NaN probability (a jet without constituents, which the scoring pipeline
does not score) gets weight 1.

Per-event weight: the weight of the leading (highest-pT, index 0 of the pT-ordered ``FatJet``
collection) fat jet; 1 for an event without fat jets (:func:`event_weights`; a run's
``weight_<name>``, and the event-level closure of a per-jet reweighter through
:func:`leading_jet_event_weights`). The reweighting was learnt on single jets,
so this is the natural choice for analyses built on the leading jet; a product over jets would
multiply per-jet errors and assume the jets of an event are independent, which they are not.
"""

from __future__ import annotations

from collections.abc import Sequence

import awkward as ak
import numpy as np

from ..errors import InvalidInputError

__all__ = ["weights_from_probability", "jet_weights", "event_weights", "leading_jet_event_weights", "reweighter_name"]


def weights_from_probability(
    probability: np.ndarray | Sequence[float],
    *,
    epsilon: float = 1e-3,
    max_weight: float = 10.0,
    prior_ratio: float = 1.0,
) -> np.ndarray:
    """Per-jet weights w = prior_ratio · f / (1 − f) from classifier probabilities f of class 1 (alternative).

    ``probability`` is any array of f ∈ [0, 1]; it is clipped to [``epsilon``, 1 − ``epsilon``]
    first, and the weight is clipped to [0, ``max_weight``] last. NaN probabilities (jets that
    were not scored) give weight 1. ``prior_ratio`` = N_nominal / N_alternative corrects for a
    classifier trained on unequal class sizes (:attr:`TrainHistory.prior_ratio`; 1 for balanced
    classes). Returns float64, same shape.

    >>> weights_from_probability([0.5, 0.75, 1.0, float("nan")], epsilon=0.01, max_weight=50)
    array([ 1.,  3., 50.,  1.])
    """
    f = np.asarray(probability, dtype=np.float64)
    if not 0 < epsilon < 0.5:
        raise InvalidInputError(f"weights_from_probability: epsilon must lie in (0, 0.5), got {epsilon}")
    if max_weight <= 0:
        raise InvalidInputError(f"weights_from_probability: max_weight must be > 0, got {max_weight}")
    if prior_ratio <= 0:
        raise InvalidInputError(f"weights_from_probability: prior_ratio must be > 0, got {prior_ratio}")
    finite = f[np.isfinite(f)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise InvalidInputError(
            f"weights_from_probability: probabilities must lie in [0, 1], got range [{finite.min()}, {finite.max()}]"
        )
    clipped = np.clip(f, epsilon, 1.0 - epsilon)
    weights = np.clip(prior_ratio * clipped / (1.0 - clipped), 0.0, max_weight)
    return np.where(np.isnan(f), 1.0, weights)


def jet_weights(probability: ak.Array, *, epsilon: float = 1e-3, max_weight: float = 10.0,
                prior_ratio: float = 1.0) -> ak.Array:
    """Jagged float32 per-jet weights [n_events][n_jets] from jagged probabilities f of class 1
    (:func:`weights_from_probability` of every jet; NaN → 1)."""
    flat = ak.to_numpy(ak.flatten(probability, axis=None))
    values = weights_from_probability(flat, epsilon=epsilon, max_weight=max_weight,
                                      prior_ratio=prior_ratio).astype(np.float32)
    return ak.unflatten(values, ak.num(probability, axis=1))


def event_weights(jet_weights: ak.Array) -> np.ndarray:
    """Per-event weights from jagged per-jet weights [n_events][n_jets] (jets pT-ordered).

    The weight of the leading jet (index 0), 1 for events without jets; float32 [n_events].
    """
    leading = ak.firsts(jet_weights, axis=1)
    return np.asarray(ak.to_numpy(ak.fill_none(leading, 1.0)), dtype=np.float32)


def leading_jet_event_weights(probability: np.ndarray, n_jets: np.ndarray, *, epsilon: float = 1e-3,
                              max_weight: float = 10.0, prior_ratio: float = 1.0) -> np.ndarray:
    """Per-event weights float32 [n_events] as a run writes ``weight_<name>`` of a per-jet reweighter,
    from the probability f of each event's leading jet (float [n_events]; NaN: not scored) and the
    event's number of jets (int [n_events]): :func:`jet_weights` then :func:`event_weights` (the
    leading jet decides the event's weight, so its other jets need not be scored)."""
    has = np.asarray(n_jets) > 0
    probability = np.asarray(probability, dtype=np.float64)
    if probability.shape != has.shape:
        raise InvalidInputError(f"leading_jet_event_weights: expected one probability per event {has.shape}, "
                                f"got {probability.shape}")
    leading = ak.unflatten(probability[has], has.astype(np.int64))
    return event_weights(jet_weights(leading, epsilon=epsilon, max_weight=max_weight, prior_ratio=prior_ratio))


def reweighter_name(name: str) -> str:
    """The served model name and weights file stem of reweighter ``name``: ``reweight_<name>``."""
    return name if name.startswith("reweight_") else f"reweight_{name}"
