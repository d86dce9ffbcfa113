"""A trained reweighter on disk: ``reweight_<name>.pt`` (state dict and build keywords) beside
``reweight_<name>.json`` (architecture, clipping, class-size correction, closure numbers).

The model repository serves such a pair like any tagger under the name ``reweight_<name>``, and
:class:`coffea_lorentz.processors.reweight.ReweighterSpec` reads the JSON to apply it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import models
from ..errors import InvalidInputError, ModelMismatchError
from .classifier import ReweightConfig
from .weights import reweighter_name

__all__ = ["save_reweighter", "load_reweighter"]


def save_reweighter(
    directory: str | Path,
    name: str,
    model: nn.Module,
    config: ReweightConfig,
    *,
    prior_ratio: float = 1.0,
    extra: Mapping[str, object] | None = None,
) -> Path:
    """Write ``reweight_<name>.pt`` ({"state_dict", "config"}) and ``reweight_<name>.json`` in ``directory``.

    The JSON names the architecture (``"architecture"``, a registry name), its build keywords
    (``"config"``), the clipping (``"epsilon"``, ``"max_weight"``), the class-size correction
    ``"prior_ratio"`` (see :func:`weights_from_probability`) and whatever ``extra`` holds
    (closure numbers, sample descriptions, the training ``domain`` of :mod:`.domain`). Returns the ``.pt`` path. Copying both files into
    ``coffea_lorentz/weights/`` lets the model repository serve ``reweight_<name>``.
    """
    stem = reweighter_name(name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights_path = directory / f"{stem}.pt"
    torch.save({"state_dict": model.state_dict(), "config": config.model_config}, weights_path)
    info = {
        "name": stem,
        "architecture": config.tagger,
        "config": config.model_config,
        "epsilon": config.epsilon,
        "max_weight": config.max_weight,
        "prior_ratio": float(prior_ratio),
        "class_1": "alternative",
        "weight": "prior_ratio * f / (1 - f), f clipped to [epsilon, 1 - epsilon], then clipped to [0, max_weight]",
        "reweight_config": {k: v for k, v in dataclasses.asdict(config).items() if k != "tagger_options"}
        | {"tagger_options": dict(config.tagger_options)},
    }
    info.update(extra or {})
    (directory / f"{stem}.json").write_text(json.dumps(info, indent=2, default=_json_default) + "\n")
    return weights_path


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_reweighter(path: str | Path) -> tuple[nn.Module, dict]:
    """The classifier (eval mode) and the JSON description of the reweighter saved at ``path``.

    ``path`` is the ``reweight_<name>.pt`` file or its ``.json`` beside it.
    """
    path = Path(path)
    weights_path, info_path = path.with_suffix(".pt"), path.with_suffix(".json")
    for needed in (weights_path, info_path):
        if not needed.is_file():
            raise InvalidInputError(f"reweighter file not found: {needed} (expected both {weights_path.name} and {info_path.name})")
    info = json.loads(info_path.read_text())
    architecture = info.get("architecture")
    if not isinstance(architecture, str) or (
        architecture not in models.available() and not models.is_target(architecture)
    ):
        raise ModelMismatchError(
            f"{info_path}: 'architecture' must name a registered tagger ({models.available()}) or a "
            f"'package.module:Class' target, got {architecture!r}"
        )
    model = models.pretrained(info["architecture"], weights=weights_path, **info.get("config", {}))
    return model, info
