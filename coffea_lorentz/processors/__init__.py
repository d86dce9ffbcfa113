"""coffea processors built on coffea-lorentz; run them with ``coffea-lorentz run`` or copy them.

- :class:`~coffea_lorentz.processors.tagger.TaggerProcessor` adds ``FatJet_<tagger>_score`` branches.
- :class:`~coffea_lorentz.processors.reweight.ReweightProcessor` adds ``weight_<name>`` (per event)
  and ``FatJet_weight_<name>`` (per jet) from a classifier w = f/(1 − f).

They live inside the library, so nothing installed is named ``processors`` — the name of the folder
many analyses keep their own processors in. Each is loaded on first access, so a worker that runs
only the tagger never imports the reweighting code.
"""

__all__ = ["ReweightProcessor", "TaggerProcessor"]

#: Public names loaded on first access: name → module.
_LAZY = {"ReweightProcessor": ".reweight", "TaggerProcessor": ".tagger"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
