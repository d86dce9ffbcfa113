"""A model spec: what tensors a model takes, built from which variables, and what it gives back.

The JSON form (``"format": "coffea-lorentz-model-spec/1"``)::

    {
      "format": "coffea-lorentz-model-spec/1",
      "inputs": [
        {"name": "pf_features", "layout": "channels_first",          # [B, C, P]; or "particles_first" [B, P, C]
         "length": 128,                                              # fixed P; or {"min": 1, "max": 128}
         "pad_mode": "constant",                                     # or "wrap" (repeat the jet's objects)
         "variables": [
            {"name": "part_pt_log", "median": 1.7, "norm_factor": 0.7,
             "lower_bound": -5, "upper_bound": 5, "replace_inf_value": 0, "pad": 0}, ...]},
        ...],
      "outputs": ["softmax"],                                        # output tensor names; the first is read
      "classes": ["QCD", "Hbb", "Hcc"],                              # optional: branch names per class
      "softmax": false                                               # apply a softmax to the output
    }

Each variable is a name of :mod:`coffea_lorentz.features`; one input holds variables of one kind
of objects (PF candidates or secondary vertices). A variable's value x becomes
``clip((x − median) · norm_factor, lower_bound, upper_bound)``; a result that is not finite
(log 0, say, with infinite bounds) becomes ``replace_inf_value``; padded places hold ``pad``. Every
field but ``name`` has a default (median 0, norm_factor 1, bounds ±inf, replace_inf_value 0, pad 0).
A length ``{"min": m, "max": M}`` pads each batch to its longest jet, clamped to [m, M], as CMS
SONIC does; a fixed length pads every jet to it. Objects beyond the length are dropped, leading pT
first kept.

A weaver-core ``preprocess.json`` is read as such a spec directly (:func:`load_spec`): its
``input_names``, per input ``var_names``, ``var_length`` (or ``min_length``/``max_length``) and
``var_infos`` (the same fields as above), ``output_names``, channel-first layout.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .features import objects_of

__all__ = ["SPEC_FORMAT", "VariableSpec", "InputSpec", "ModelSpec", "load_spec", "LAYOUTS", "PAD_MODES"]

#: Version of the JSON form of a spec.
SPEC_FORMAT = "coffea-lorentz-model-spec/1"
#: Tensor layouts: channels first [B, C, P] (weaver, SONIC) or particles first [B, P, C].
LAYOUTS = ("channels_first", "particles_first")
#: How padded places are filled: with ``pad`` ("constant"), or by repeating the jet's objects ("wrap").
PAD_MODES = ("constant", "wrap")


def _number(value: Any, default: float, where: str) -> float:
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{where}: expected a number, got {value!r}") from None


@dataclass(frozen=True)
class VariableSpec:
    """One variable of an input and its transform (see the module docstring)."""

    name: str
    median: float = 0.0
    norm_factor: float = 1.0
    lower_bound: float = -math.inf
    upper_bound: float = math.inf
    replace_inf_value: float = 0.0
    pad: float = 0.0

    @classmethod
    def from_json(cls, name: str, info: Mapping[str, Any] | None, where: str) -> VariableSpec:
        info = dict(info or {})
        where = f"{where}, variable {name!r}"
        values = {key: _number(info.get(key), getattr(cls, key), f"{where}: {key}")
                  for key in ("median", "norm_factor", "lower_bound", "upper_bound", "replace_inf_value", "pad")}
        if values["lower_bound"] > values["upper_bound"]:
            raise ConfigurationError(f"{where}: lower_bound {values['lower_bound']} > upper_bound "
                                     f"{values['upper_bound']}")
        return cls(name=name, **values)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in ("median", "norm_factor", "lower_bound", "upper_bound", "replace_inf_value", "pad"):
            value = getattr(self, key)
            out[key] = value if math.isfinite(value) else (None if key in ("lower_bound", "upper_bound") else value)
        return out


@dataclass(frozen=True)
class InputSpec:
    """One input tensor: ``variables`` of one kind of ``objects``, ``layout``, length and padding.

    ``length`` fixes P; else P is the batch's longest jet clamped to [``min_length``, ``max_length``].
    """

    name: str
    variables: tuple[VariableSpec, ...]
    objects: str
    layout: str = "channels_first"
    length: int | None = None
    min_length: int = 1
    max_length: int = 128
    pad_mode: str = "constant"

    @property
    def variable_names(self) -> tuple[str, ...]:
        return tuple(variable.name for variable in self.variables)

    @property
    def n_channels(self) -> int:
        return len(self.variables)

    @property
    def most_objects(self) -> int:
        """The most objects of a jet this input ever holds."""
        return self.length if self.length is not None else self.max_length

    def shape(self, length: int | str = "P") -> list:
        """Its shape without the batch axis: [C, P] or [P, C]."""
        return [self.n_channels, length] if self.layout == "channels_first" else [length, self.n_channels]

    def to_json(self) -> dict[str, Any]:
        length: Any = self.length if self.length is not None else {"min": self.min_length, "max": self.max_length}
        return {"name": self.name, "layout": self.layout, "length": length, "pad_mode": self.pad_mode,
                "variables": [variable.to_json() for variable in self.variables]}


@dataclass(frozen=True)
class ModelSpec:
    """Named inputs, the output tensor(s), class names; see the module docstring."""

    inputs: tuple[InputSpec, ...]
    outputs: tuple[str, ...] = ("output",)
    classes: tuple[str, ...] = ()
    softmax: bool = False
    source: str = field(default="<spec>", compare=False)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)

    def variables(self, objects: str) -> list[str]:
        """Every variable name of the inputs over ``objects``, once each, in order."""
        names = [name for spec in self.inputs if spec.objects == objects for name in spec.variable_names]
        return list(dict.fromkeys(names))

    def to_json(self) -> dict[str, Any]:
        return {"format": SPEC_FORMAT, "inputs": [spec.to_json() for spec in self.inputs],
                "outputs": list(self.outputs), "classes": list(self.classes), "softmax": self.softmax}

    def with_classes(self, classes: Sequence[str]) -> ModelSpec:
        from dataclasses import replace

        return replace(self, classes=tuple(str(name) for name in classes))

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, source: str = "<spec>") -> ModelSpec:
        """A spec from its JSON form or from a weaver ``preprocess.json`` (told apart by ``format``)."""
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"{source}: a model spec is a JSON object, got {type(data).__name__}")
        if "format" not in data and "input_names" in data:
            return cls._from_weaver(data, source=source)
        if data.get("format") != SPEC_FORMAT:
            raise ConfigurationError(f"{source}: unknown spec format {data.get('format')!r}; expected {SPEC_FORMAT!r} "
                                     "or a weaver preprocess.json (with input_names)")
        inputs = []
        for index, item in enumerate(data.get("inputs") or []):
            name = item.get("name")
            if not name:
                raise ConfigurationError(f"{source}: input {index} has no name")
            where = f"{source}: input {name!r}"
            variables = tuple(VariableSpec.from_json(v.get("name", ""), v, where) for v in item.get("variables") or [])
            inputs.append(_input(name, variables, item.get("length"), item.get("layout", "channels_first"),
                                 item.get("pad_mode", "constant"), where))
        return cls._checked(inputs, data.get("outputs") or ["output"], data.get("classes") or (),
                            bool(data.get("softmax", False)), source)

    @classmethod
    def _from_weaver(cls, data: Mapping[str, Any], *, source: str) -> ModelSpec:
        inputs = []
        for name in data["input_names"]:
            group = data.get(name)
            where = f"{source}: input {name!r}"
            if not isinstance(group, Mapping) or "var_names" not in group:
                raise ConfigurationError(f"{where}: listed in input_names but has no var_names")
            infos = group.get("var_infos") or {}
            variables = tuple(VariableSpec.from_json(var, infos.get(var), where) for var in group["var_names"])
            if "min_length" in group or "max_length" in group:
                length: Any = {"min": group.get("min_length", 1), "max": group.get("max_length", group.get("var_length"))}
            else:
                length = group.get("var_length")
            inputs.append(_input(name, variables, length, "channels_first", group.get("pad_mode", "constant"), where))
        return cls._checked(inputs, data.get("output_names") or ["output"], data.get("classes") or (), False, source)

    @classmethod
    def _checked(cls, inputs, outputs, classes, softmax, source) -> ModelSpec:
        if not inputs:
            raise ConfigurationError(f"{source}: the spec has no inputs")
        names = [spec.name for spec in inputs]
        if len(set(names)) != len(names):
            raise ConfigurationError(f"{source}: an input is named twice in {names}")
        return cls(inputs=tuple(inputs), outputs=tuple(str(o) for o in outputs),
                   classes=tuple(str(c) for c in classes), softmax=softmax, source=source)


def _input(name: str, variables: tuple[VariableSpec, ...], length: Any, layout: str, pad_mode: str,
           where: str) -> InputSpec:
    if not variables:
        raise ConfigurationError(f"{where}: no variables")
    if layout not in LAYOUTS:
        raise ConfigurationError(f"{where}: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if pad_mode not in PAD_MODES:
        raise ConfigurationError(f"{where}: pad_mode must be one of {', '.join(PAD_MODES)}, got {pad_mode!r}")
    objects = objects_of([variable.name for variable in variables], where=where)
    if isinstance(length, Mapping):
        low, high = length.get("min", 1), length.get("max")
        if not isinstance(high, int) or not isinstance(low, int) or not 0 < low <= high:
            raise ConfigurationError(f"{where}: length must be {{'min': m, 'max': M}} with 0 < m <= M, got {dict(length)}")
        return InputSpec(name, variables, objects, layout, None, low, high, pad_mode)
    if not isinstance(length, int) or isinstance(length, bool) or length < 1:
        raise ConfigurationError(f"{where}: length must be a positive integer or {{'min', 'max'}}, got {length!r}")
    return InputSpec(name, variables, objects, layout, length, length, length, pad_mode)


def load_spec(path: str | Path) -> ModelSpec:
    """Read a spec JSON or a weaver ``preprocess.json`` from ``path``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"{path}: model spec not found") from None
    except json.JSONDecodeError as err:
        raise ConfigurationError(f"{path}: not valid JSON ({err})") from None
    return ModelSpec.from_json(data, source=str(path))
