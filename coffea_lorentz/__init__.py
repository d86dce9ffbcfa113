"""coffea-lorentz: Lorentz-equivariant jet taggers inside coffea analyses.

The data flow, one module per step:

- :mod:`coffea_lorentz.read` — NanoAOD/PFNano events → jagged fat-jet constituents as four-vectors.
- :mod:`coffea_lorentz.batch` — jagged constituents → padded, length-bucketed float32 batches
  plus a boolean mask, and scores back onto the jagged jet structure.
- :mod:`coffea_lorentz.infer` — one backend interface: the Triton gRPC client or in-process torch.
- :mod:`coffea_lorentz.write` — new branches into ROOT files, atomically.
- :mod:`coffea_lorentz.models` — the taggers (Minkowski primitives → layers → networks).
- :mod:`coffea_lorentz.serve` — the local Triton server launcher;
  :mod:`coffea_lorentz.repository` — Triton model repositories from exported taggers.
- :mod:`coffea_lorentz.cli` — the ``coffea-lorentz`` command.

For an analysis: :class:`~coffea_lorentz.tagger.Tagger` scores the fat jets of coffea NanoEvents
(eager, virtual or dask-awkward) inside your own processor; :func:`~coffea_lorentz.load.load_scores`
reads a finished run's scores back beside the events. The processor ``coffea-lorentz run`` drives
lives in :mod:`coffea_lorentz.processors`. Both names are loaded on first use, so importing the
package stays light (no torch, no awkward).
"""

from .errors import CoffeaLorentzError

__version__ = "0.1.0"

#: The tagger ``coffea-lorentz run``, ``demo`` and ``serve`` use when none is named (it ships trained weights).
DEFAULT_TAGGER = "lloca"

__all__ = ["CoffeaLorentzError", "DEFAULT_TAGGER", "Tagger", "load_scores", "__version__"]

#: Public names loaded on first access: name → module.
_LAZY = {"Tagger": ".tagger", "load_scores": ".load"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
