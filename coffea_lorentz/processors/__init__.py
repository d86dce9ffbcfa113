"""coffea processors built on coffea-lorentz; run them with ``coffea-lorentz run`` or copy them.

- :class:`processors.tagger.TaggerProcessor` adds ``FatJet_<tagger>_score`` branches.
- :class:`processors.reweight.ReweightProcessor` adds ``weight_<name>`` (per event) and
  ``FatJet_weight_<name>`` (per jet) from a classifier w = f/(1 − f).
"""

from .reweight import ReweightProcessor
from .tagger import TaggerProcessor

__all__ = ["ReweightProcessor", "TaggerProcessor"]
