"""The tagger base class: the contract every tagger shares, written once.

:class:`TaggerModel` owns what the contract (see :mod:`coffea_lorentz.models`) fixes for every tagger:

- the constructor keywords ``n_classes`` (logits [B, n_classes], class 1 = signal), ``size``
  (``"compact"`` or ``"large"`` preset) and ``beam_reference`` (bring in the beam and time
  reference vectors), plus the tagger's own options;
- ``self.config``: the tagger's frozen, keyword-only hyper-parameter dataclass, built from the
  preset ``size`` overridden by the options (:func:`resolve_config`; a typo is an error naming
  the tagger);
- :attr:`TaggerModel.invariance`: the group the logits are invariant under, for the shipped
  :mod:`coffea_lorentz.symmetry` checks.

A new tagger subclasses :class:`TaggerModel` (or :class:`~coffea_lorentz.models.layers.PairTagger`
when its cost is in [B, N, N, C] pair tensors) with its name, config dataclass and presets as
class keywords, builds its layers from ``self.config`` after ``super().__init__(**options)`` and
implements ``forward(p4, mask)`` (``logits`` for a pair tagger)::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class MyConfig:
        hidden: int = 32

    class MyTagger(TaggerModel, name="my_tagger", config=MyConfig, presets={"compact": {}, "large": {"hidden": 128}}):
        def __init__(self, **options) -> None:
            super().__init__(**options)
            self.head = nn.Linear(self.config.hidden, self.n_classes)

Registered (:func:`coffea_lorentz.models.register`) or named by its ``"package.module:Class"``
target, it then runs everywhere a shipped tagger does.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from torch import nn

from ..errors import InvalidInputError

__all__ = ["TaggerModel", "resolve_config", "SIZES", "INVARIANCES"]

ConfigT = TypeVar("ConfigT")

#: The size presets every tagger offers: ≤ 50k parameters for a CPU, and a larger GPU one.
SIZES: tuple[str, ...] = ("compact", "large")

#: The groups a tagger may be invariant under (its ``invariance``), largest first.
INVARIANCES: tuple[str, ...] = ("lorentz", "z_boost_rotation", "z_rotation", "none")


def resolve_config(
    config_cls: type[ConfigT],
    presets: Mapping[str, Mapping[str, Any]],
    *,
    size: str,
    where: str,
    **fields: Any,
) -> ConfigT:
    """Build a frozen config from preset ``size`` overridden by ``fields``.

    Raises :class:`~coffea_lorentz.errors.InvalidInputError` naming ``where`` (the tagger) for an
    unknown size or an option the config does not have.
    """
    if size not in presets:
        raise InvalidInputError(f"{where}: unknown size {size!r}; expected one of {', '.join(presets)}")
    known = {field.name for field in dataclasses.fields(config_cls)}  # type: ignore[arg-type]
    unknown = sorted(set(fields) - known)
    if unknown:
        expected = f"expected some of {', '.join(sorted(known))}" if known else "it takes none"
        raise InvalidInputError(f"{where}: unknown option(s) {', '.join(unknown)}; {expected}")
    values = dict(presets[size])
    values.update(fields)
    return config_cls(**values)


@dataclasses.dataclass(frozen=True, kw_only=True)
class _NoOptions:
    """The config of a tagger without hyper-parameters."""


class TaggerModel(nn.Module):
    """Base class of every tagger: ``forward(p4 [B, N, 4] GeV, mask [B, N] bool) → logits [B, n_classes]``.

    Keywords (all taggers): ``n_classes`` (≥ 1, default 2), ``size`` (a key of ``presets``,
    default ``"compact"``), ``beam_reference`` (default False); every other keyword is a field of
    ``config_class`` and overrides the preset.

    Class keywords of a subclass (``class T(TaggerModel, name=..., config=..., presets=...)``), kept as
    class attributes:
        name: the tagger's name in messages (its registry name).
        config → ``config_class``: frozen, keyword-only dataclass of its hyper-parameters.
        presets: ``size`` → field values, for every size in :data:`SIZES`.
        symmetry: the group the tagger is invariant under without beam reference:
            ``"lorentz"`` (default; ``beam_reference=True`` then leaves ``"z_boost_rotation"``),
            or a smaller group that beam reference does not change (``"z_rotation"``, ``"none"``).
    """

    name: ClassVar[str] = "tagger"
    config_class: ClassVar[type] = _NoOptions
    presets: ClassVar[Mapping[str, Mapping[str, Any]]] = types.MappingProxyType({size: {} for size in SIZES})
    symmetry: ClassVar[str] = "lorentz"

    # TorchScript compiles module properties unless told not to; the symmetry checks read it in Python only
    __jit_unused_properties__ = ["invariance"]

    def __init_subclass__(
        cls,
        *,
        name: str | None = None,
        config: type | None = None,
        presets: Mapping[str, Mapping[str, Any]] | None = None,
        symmetry: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        given = {"name": name, "config_class": config, "presets": presets, "symmetry": symmetry}
        for attribute, value in given.items():
            if value is not None:
                setattr(cls, attribute, value)
        if cls.symmetry not in INVARIANCES:
            raise TypeError(f"{cls.__name__}: symmetry must be one of {', '.join(INVARIANCES)}, got {cls.symmetry!r}")
        if not dataclasses.is_dataclass(cls.config_class):
            raise TypeError(f"{cls.__name__}: config must be a dataclass, got {cls.config_class!r}")
        missing = [size for size in SIZES if size not in cls.presets]
        if missing:
            raise TypeError(f"{cls.__name__}: presets lack the size(s) {', '.join(missing)}")

    def __init__(self, *, n_classes: int = 2, size: str = "compact", beam_reference: bool = False, **options: Any):
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
            raise InvalidInputError(f"{self.name}: n_classes must be an integer >= 1, got {n_classes!r}")
        self.n_classes = int(n_classes)
        self.beam_reference = bool(beam_reference)
        self.config = resolve_config(self.config_class, self.presets, size=size, where=self.name, **options)

    @property
    def invariance(self) -> str:
        """The group the logits are invariant under: ``"lorentz"``, ``"z_boost_rotation"`` (what
        ``beam_reference=True`` leaves of the Lorentz group), ``"z_rotation"`` or ``"none"``."""
        if self.symmetry == "lorentz" and self.beam_reference:
            return "z_boost_rotation"
        return self.symmetry
