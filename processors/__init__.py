"""coffea processors built on coffea-lorentz; run them with ``coffea-lorentz run`` or copy them.

- :class:`processors.tagger.TaggerProcessor` adds ``FatJet_<tagger>_score`` branches.
"""

from .tagger import TaggerProcessor

__all__ = ["TaggerProcessor"]
