"""The tagger base class: every tagger shares the contract's keywords, a frozen keyword-only
config and the declared invariance; taggers can be named by ``"module:Class"``."""

from __future__ import annotations

import dataclasses

import pytest

from coffea_lorentz import models
from coffea_lorentz.errors import InvalidInputError
from coffea_lorentz.models.base import TaggerModel

TAGGERS = models.available()


@pytest.mark.parametrize("name", TAGGERS)
def test_every_tagger_is_a_tagger_with_a_frozen_keyword_only_config(name):
    model = models.build(name, n_classes=3)
    assert isinstance(model, TaggerModel)
    assert model.n_classes == 3 and model.beam_reference is False
    config = model.config
    assert dataclasses.is_dataclass(config)
    parameters = dataclasses.fields(config)
    assert all(field.kw_only for field in parameters), f"{name}: config fields must be keyword-only"
    if parameters:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, parameters[0].name, None)
    assert not {"n_classes", "beam_reference", "size"} & {field.name for field in parameters}  # owned by TaggerModel


@pytest.mark.parametrize("name", TAGGERS)
def test_invariance_follows_beam_reference(name):
    plain, beam = models.build(name), models.build(name, beam_reference=True)
    if type(plain).symmetry == "lorentz":
        assert (plain.invariance, beam.invariance) == ("lorentz", "z_boost_rotation")
    else:
        assert plain.invariance == beam.invariance == type(plain).symmetry


@pytest.mark.parametrize("n_classes", [0, -1, 1.5, True])
def test_bad_n_classes_is_refused_with_the_tagger_name(n_classes):
    with pytest.raises(InvalidInputError, match="lorentznet: n_classes must be an integer >= 1"):
        models.build("lorentznet", n_classes=n_classes)


def test_a_target_names_a_tagger_without_the_registry():
    model = models.build("coffea_lorentz.models.lorentz_efn:LorentzEFN", hidden=8)
    assert type(model).__name__ == "LorentzEFN" and model.config.hidden == 8
    assert models.is_target("pkg.mod:Class") and not models.is_target("lorentznet")
    assert models.resolve_target("lloca") == "coffea_lorentz.models.lloca:LLoCaTransformer"
    assert models.shipped_weights("coffea_lorentz.models.identity:Identity") is None
    assert models.pretrained("coffea_lorentz.models.identity:Identity").invariance == "z_rotation"
    with pytest.raises(InvalidInputError, match="cannot load"):
        models.build("coffea_lorentz.models.identity:NoSuchTagger")
    with pytest.raises(KeyError, match="unknown tagger 'nope'"):
        models.build("nope")


def test_register_still_adds_a_name_in_this_process(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    models.register("my_identity", "coffea_lorentz.models.identity:Identity")
    assert "my_identity" in models.available()
    assert type(models.build("my_identity")).__name__ == "Identity"
    with pytest.raises(InvalidInputError, match="package.module:Class"):
        models.register("broken", "no_colon_here")


def test_a_new_tagger_needs_only_its_class_keywords_and_layers():
    import torch
    from torch import nn

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class TinyConfig:
        hidden: int = 4

    class Tiny(TaggerModel, name="tiny", config=TinyConfig, presets={"compact": {}, "large": {"hidden": 8}}):
        def __init__(self, **options) -> None:
            super().__init__(**options)
            self.head = nn.Linear(self.config.hidden, self.n_classes)

        def forward(self, p4: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.head(torch.zeros(p4.shape[0], self.config.hidden, dtype=p4.dtype))

    tiny = Tiny(size="large", n_classes=3, beam_reference=True)
    assert (tiny.config.hidden, tiny.n_classes, tiny.invariance) == (8, 3, "z_boost_rotation")
    with pytest.raises(InvalidInputError, match="tiny: unknown option"):
        Tiny(width=3)
    with pytest.raises(TypeError, match="symmetry"):
        type("Bad", (TaggerModel,), {}, symmetry="parity")
    with pytest.raises(TypeError, match="presets lack the size"):
        type("Bad", (TaggerModel,), {}, presets={"compact": {}})
