"""Jet taggers: Minkowski primitives → layers → one network per file.

Every tagger follows one contract, so batching, clients, the Triton server and training never
special-case a model:

- ``forward(p4, mask)`` takes ``p4`` float [B, N, 4] as (E, px, py, pz) in GeV and ``mask``
  bool [B, N] (True = real constituent) and returns logits [B, n_classes]
  (``n_classes=2`` by default, class 1 = signal). Float32 and float64 (``model.double()``) both work.
- Padded entries (``mask`` False) never change the output, whatever values they hold (NaN included).
- ``beam_reference=True`` adds the beam (z) and time reference vectors inside the model; the model
  is then invariant under boosts along z and rotations about z only, otherwise under the whole
  proper orthochronous Lorentz group.

Layout: :mod:`.minkowski` (the metric, inner products) and :mod:`.frames` (boosts, inverse
transforms, local frames) → :mod:`.layers` (masked MLPs, invariant embeddings) and :mod:`.base`
(:class:`~.base.TaggerModel`, the contract's keywords and ``invariance``) → one network per file.

A tagger is named by its registry name (:func:`available`) or by a ``"package.module:Class"``
target. :func:`register` adds a name in this process only; Dask workers are other processes, so
a tagger that must build there (``BackendSpec(kind="torch")``) is best named by its target.

>>> from coffea_lorentz import models
>>> "lorentznet" in models.available()
True
>>> type(models.build("coffea_lorentz.models.identity:Identity")).__name__
'Identity'
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch

from ..errors import InvalidInputError, ModelMismatchError
from .base import TaggerModel

__all__ = [
    "TaggerModel",
    "available",
    "build",
    "register",
    "is_target",
    "resolve_target",
    "pretrained",
    "shipped_weights",
    "weights_info",
    "trained_max_constituents",
]

#: name → "module:Class"; the module is imported only when the tagger is built.
_REGISTRY: dict[str, str] = {
    "lorentznet": "coffea_lorentz.models.lorentznet:LorentzNet",
    "pelican": "coffea_lorentz.models.pelican:PELICAN",
    "lgn": "coffea_lorentz.models.lgn:LGN",
    "lorentz_transformer": "coffea_lorentz.models.lorentz_transformer:LorentzTransformer",
    "lloca": "coffea_lorentz.models.lloca:LLoCaTransformer",
    "lorentz_efn": "coffea_lorentz.models.lorentz_efn:LorentzEFN",
    "baseline": "coffea_lorentz.models.baseline:ParticleTransformer",
    "identity": "coffea_lorentz.models.identity:Identity",
}


def available() -> list[str]:
    """Names accepted by :func:`build`, in registry order."""
    return list(_REGISTRY)


def register(name: str, target: str) -> None:
    """Add a tagger ``name`` built from ``target`` = ``"package.module:Class"``, in this process only.

    Other processes (Dask workers) do not see the registration; name the tagger by its target
    there (:func:`is_target`).
    """
    if not is_target(target):
        raise InvalidInputError(f"register({name!r}): target must be 'package.module:Class', got {target!r}")
    _REGISTRY[name] = target


def is_target(name: str) -> bool:
    """Whether ``name`` is a ``"package.module:Class"`` target rather than a registry name."""
    module_name, colon, class_name = name.partition(":")
    return bool(colon) and bool(module_name) and class_name.isidentifier()


def resolve_target(name: str) -> str:
    """The ``"package.module:Class"`` of tagger ``name`` (a registry name or a target itself)."""
    if is_target(name):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown tagger {name!r}; available: {', '.join(_REGISTRY)} (or a 'package.module:Class' target)"
        ) from None


def build(name: str, **config) -> torch.nn.Module:
    """Build tagger ``name`` (registry name or ``"package.module:Class"``) with keyword ``config``
    overriding its defaults.

    ``size="compact"`` (default, ≤ 50k parameters) or ``size="large"`` selects a preset; other
    keywords are the tagger's own options (see each tagger's docstring).
    """
    module_name, class_name = resolve_target(name).split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise InvalidInputError(f"tagger {name!r}: cannot load {module_name}:{class_name} ({err})") from err
    return cls(**config)


#: Where trained weights ship: ``<name>.pt`` (a state dict, or a dict holding ``"state_dict"`` and the
#: build keywords ``"config"``) and ``<name>.json`` (how they were made; for a model that is not a
#: registry name, such as a reweighter, also its registry ``"architecture"`` and ``"config"``).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def shipped_weights(name: str) -> Path | None:
    """The state-dict file shipped for model ``name``, or None when it ships untrained (or is a target)."""
    if is_target(name):
        return None
    path = WEIGHTS_DIR / f"{name}.pt"
    return path if path.is_file() else None


def weights_info(name: str, weights: str | Path | None = None) -> dict:
    """The JSON record beside ``weights`` (default: the shipped weights of ``name``); {} if none."""
    path = Path(weights) if weights is not None else shipped_weights(name)
    info_path = path.with_suffix(".json") if path is not None else None
    if info_path is None or not info_path.is_file():
        return {}
    return json.loads(info_path.read_text())


def trained_max_constituents(name: str) -> int | None:
    """How many leading-pT constituents the shipped weights of ``name`` were trained on, if recorded."""
    value = weights_info(name).get("train_config", {}).get("max_constituents")
    return int(value) if value is not None else None


def pretrained(name: str, *, weights: str | Path | None = None, seed: int = 0, **config) -> torch.nn.Module:
    """Model ``name`` in eval mode with ``weights`` (default: the shipped ones, if any).

    ``name`` is a registry name, or the name of shipped weights whose JSON record names the registry
    ``"architecture"`` (a reweighter ``reweight_<name>``, say). Build keywords come from ``config``,
    else from the checkpoint's ``"config"``, else from the record's ``"config"``. Without weights
    the parameters are initialised from ``seed``, so every process that builds the same untrained
    tagger (the in-process backend, the Triton model repository) gets the same numbers. The global
    torch random state is left untouched.
    """
    path = Path(weights) if weights is not None else shipped_weights(name)
    if path is not None and not path.is_file():
        raise InvalidInputError(f"weights for model {name!r} not found: {path}")
    info = weights_info(name, path)
    architecture = name if name in _REGISTRY or is_target(name) else info.get("architecture", name)
    state = torch.load(path, map_location="cpu", weights_only=True) if path is not None else None
    if isinstance(state, dict) and "state_dict" in state:
        config = config or dict(state.get("config") or {})
        state = state["state_dict"]
    if not config and architecture != name:
        config = dict(info.get("config") or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(architecture, **config)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            raise ModelMismatchError(f"{path}: weights do not fit model {name!r} ({err})") from err
    return model.eval()
