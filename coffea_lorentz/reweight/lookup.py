"""Finding a reweighter by name or path: what a run, a processor or a :class:`~coffea_lorentz.Reweighter` applies.

A reweighter is a file pair ``reweight_<name>.pt`` (the classifier's state dict and build keywords)
and ``reweight_<name>.json`` (its architecture, the clipping ε and w_max, the class-size correction
and how it was made; :func:`coffea_lorentz.reweight.save_reweighter`). Shipped reweighters live in
``coffea_lorentz/weights/`` and are found by their short name (``"fsr"``); any other is given by
the path of its ``.pt`` or ``.json`` file. It is served like a tagger, under the model name
``reweight_<name>``.

JSON only: no torch is imported here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError, InvalidInputError
from .domain import TrainingDomain
from .weights import reweighter_name

__all__ = ["ReweighterInfo", "find_reweighter", "find_reweighters", "shipped_reweighters", "SHIPPED_DIR"]

#: Folder of the shipped weights (taggers and reweighters).
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True, kw_only=True)
class ReweighterInfo:
    """One reweighter on disk.

    Attributes:
        name: short name (``"fsr"``); branches ``weight_<name>`` and ``FatJet_weight_<name>``.
        model: the served model name, ``reweight_<name>``.
        weights: path of the ``.pt`` file.
        architecture: the classifier's registry name (``"lorentz_efn"``).
        epsilon: f is clipped to [ε, 1 − ε] before w = f / (1 − f).
        max_weight: w is clipped to [0, max_weight].
        prior_ratio: N_nominal / N_alternative of the training (corrects the odds).
        max_constituents: leading-pT constituents per jet the classifier was trained on.
        shipped: whether it ships with the package (then every worker finds it in its own install,
            so in-process workers need no shared disk).
        domain: the jets it was trained on (its record's ``domain``; None for a record without one).
        level: ``"jet"`` (a weight per fat jet, the event's = its leading jet's) or ``"event"`` (the
            classifier sees the whole event; one weight per event; :mod:`coffea_lorentz.reweight.events`).
        objects: an event-level reweighter's objects (``"pfcands"`` or ``"jets"``); None per jet.
    """

    name: str
    model: str
    weights: str
    architecture: str
    epsilon: float
    max_weight: float
    prior_ratio: float
    max_constituents: int
    shipped: bool = False
    domain: TrainingDomain | None = None
    level: str = "jet"
    objects: str | None = None

    @property
    def sha256(self) -> str:
        """SHA-256 of the ``.pt`` file."""
        return hashlib.sha256(Path(self.weights).read_bytes()).hexdigest()

    @property
    def record(self) -> dict:
        """The JSON record beside the weights (closure numbers, training, the commands that made it)."""
        return json.loads(Path(self.weights).with_suffix(".json").read_text())


def shipped_reweighters() -> list[str]:
    """Short names of the reweighters shipped with the package (``["fsr"]``)."""
    return sorted(path.stem.removeprefix("reweight_") for path in SHIPPED_DIR.glob("reweight_*.json")
                  if path.with_suffix(".pt").is_file())


def find_reweighter(reweighter: str | Path) -> ReweighterInfo:
    """The reweighter named ``reweighter``: a shipped short name (``"fsr"`` or ``"reweight_fsr"``) or
    the path of a ``reweight_<name>.pt`` / ``.json`` file.

    Raises :class:`~coffea_lorentz.errors.ConfigurationError` naming the closest shipped names, or
    the missing file, before anything runs.
    """
    text = str(reweighter)
    looks_like_path = text.endswith((".pt", ".json")) or "/" in text or Path(text).suffix != ""
    if looks_like_path:
        weights = Path(text).with_suffix(".pt").absolute()
        if not weights.is_file() or not weights.with_suffix(".json").is_file():
            missing = weights if not weights.is_file() else weights.with_suffix(".json")
            raise ConfigurationError(f"reweighter {text!r}: {missing} not found (a reweighter is a "
                                     f"reweight_<name>.pt with its .json beside it, from reweight-train)")
    else:
        weights = SHIPPED_DIR / f"{reweighter_name(text)}.pt"
        if not weights.is_file():
            shipped = shipped_reweighters()
            close = difflib.get_close_matches(text.removeprefix("reweight_"), shipped, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigurationError(f"unknown reweighter {text!r}{hint} (shipped: {', '.join(shipped) or 'none'}; "
                                     "or give the path of a reweight_<name>.pt)")
    try:
        record = json.loads(weights.with_suffix(".json").read_text())
        model = reweighter_name(str(record.get("name", weights.stem)))
        train = record.get("reweight_config", {})
        return ReweighterInfo(
            name=model.removeprefix("reweight_"), model=model, weights=str(weights),
            architecture=str(record["architecture"]), epsilon=float(record["epsilon"]),
            max_weight=float(record["max_weight"]), prior_ratio=float(record.get("prior_ratio", 1.0)),
            max_constituents=int(train.get("max_constituents", 128)),
            shipped=weights.parent == SHIPPED_DIR and weights.stem == model,
            domain=TrainingDomain.from_record(record.get("domain")),
            level=_level(record), objects=record.get("event_objects"),
        )
    except (ValueError, KeyError, TypeError, InvalidInputError) as err:
        raise ConfigurationError(f"reweighter {text!r}: {weights.with_suffix('.json')} is not a reweighter record "
                                 f"({type(err).__name__}: {err})") from None


def _level(record: dict) -> str:
    level = str(record.get("level", "jet"))
    if level not in ("jet", "event"):
        raise ValueError(f"'level' must be 'jet' or 'event', got {level!r}")
    if level == "event" and record.get("event_objects") not in ("pfcands", "jets"):
        raise ValueError(f"an event-level record needs 'event_objects' 'pfcands' or 'jets', got {record.get('event_objects')!r}")
    return level


def find_reweighters(reweighters) -> list[ReweighterInfo]:
    """:func:`find_reweighter` for each of ``reweighters``; two with the same short name are refused."""
    found = [find_reweighter(name) for name in reweighters]
    names = [info.name for info in found]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"a reweighter is named twice in {names}")
    return found
