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

>>> from coffea_lorentz import models
>>> "lorentznet" in models.available()
True
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch

__all__ = ["available", "build", "register", "pretrained", "shipped_weights"]

#: name → "module:Class"; the module is imported only when the tagger is built.
_REGISTRY: dict[str, str] = {
    "lorentznet": "coffea_lorentz.models.lorentznet:LorentzNet",
    "pelican": "coffea_lorentz.models.pelican:PELICAN",
    "lgn": "coffea_lorentz.models.lgn:LGN",
    "lorentz_transformer": "coffea_lorentz.models.lorentz_transformer:LorentzTransformer",
    "lloca": "coffea_lorentz.models.lloca:LLoCaTransformer",
    "baseline": "coffea_lorentz.models.baseline:ParticleTransformer",
    "identity": "coffea_lorentz.models.identity:Identity",
}


def available() -> list[str]:
    """Names accepted by :func:`build`, in registry order."""
    return list(_REGISTRY)


def register(name: str, target: str) -> None:
    """Add a tagger ``name`` built from ``target`` = ``"package.module:Class"``."""
    _REGISTRY[name] = target


def build(name: str, **config) -> torch.nn.Module:
    """Build tagger ``name`` with keyword ``config`` overriding its defaults.

    ``size="compact"`` (default, ≤ 50k parameters) or ``size="large"`` selects a preset; other
    keywords are the tagger's own options (see each tagger's docstring).
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown tagger {name!r}; available: {', '.join(_REGISTRY)}") from None
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**config)


#: Where trained weights ship: ``<name>.pt`` (a state dict) and ``<name>.json`` (how they were made).
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def shipped_weights(name: str) -> Path | None:
    """The state-dict file shipped for tagger ``name``, or None when it ships untrained."""
    path = WEIGHTS_DIR / f"{name}.pt"
    return path if path.is_file() else None


def pretrained(name: str, *, weights: str | Path | None = None, seed: int = 0, **config) -> torch.nn.Module:
    """Tagger ``name`` in eval mode with ``weights`` (default: the shipped ones, if any).

    Without weights the parameters are initialised from ``seed``, so every process that builds
    the same untrained tagger (the in-process backend, the Triton model repository) gets the same
    numbers. The global torch random state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build(name, **config)
    path = Path(weights) if weights is not None else shipped_weights(name)
    if path is not None:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            config_saved = state.get("config", {})
            if config_saved and not config:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(seed)
                    model = build(name, **config_saved)
            state = state["state_dict"]
        model.load_state_dict(state)
    return model.eval()
