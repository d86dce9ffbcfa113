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

The coffea processor that ties them together lives in :mod:`processors.tagger`.
"""

from .errors import CoffeaLorentzError

__version__ = "0.1.0"

#: The tagger ``coffea-lorentz run``, ``demo`` and ``serve`` use when none is named (it ships trained weights).
DEFAULT_TAGGER = "lloca"

__all__ = ["CoffeaLorentzError", "DEFAULT_TAGGER", "__version__"]
