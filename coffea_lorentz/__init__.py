"""coffea-lorentz: Lorentz-equivariant jet taggers inside coffea analyses.

The data flow, one module per step::

    read → batch → infer (Triton gRPC | torch) → unflatten → write
    driven per chunk by a coffea processor; chunks run as Dask tasks under the run model

Module map. The data-flow layers import downwards only — cli → run → processors → pipeline →
read/batch/infer/write → models — and nothing imports the CLI; the tools beside them (serve,
train, reweight, symmetry) build on models and errors (ARCHITECTURE.md has the rules):

- :mod:`coffea_lorentz.cli` — the ``coffea-lorentz`` command, one module per subcommand; the
  only place that parses arguments or prints for a person. Nothing else imports it.
- :mod:`coffea_lorentz.run` — the run model: chunks as Dask tasks, resume, fault isolation, lock,
  manifest.
- :mod:`coffea_lorentz.processors` — the coffea processors ``coffea-lorentz run`` drives
  (``TaggerProcessor``, ``ReweightProcessor``); :class:`~coffea_lorentz.tagger.Tagger` scores
  NanoEvents inside your own processor and :class:`~coffea_lorentz.reweighter.Reweighter` gives
  their reweighting factors; :func:`~coffea_lorentz.load.load_scores` reads a finished
  run's scores back beside the events.
- :mod:`coffea_lorentz.pipeline` — one chunk through read → batch → infer → unflatten.
- :mod:`coffea_lorentz.read` — NanoAOD/PFNano events → jagged fat-jet constituents as four-vectors.
- :mod:`coffea_lorentz.batch` — jagged constituents → padded, length-bucketed float32 batches
  plus a boolean mask, and scores back onto the jagged jet structure.
- :mod:`coffea_lorentz.infer` — one backend interface (``base``), what to run on (``spec``), the
  Triton gRPC client (``triton_client``, ``balance``, ``server_statistics``) and in-process torch
  (``torch_backend``); the Triton path imports no torch.
- :mod:`coffea_lorentz.write`, :mod:`coffea_lorentz.store` — chunk ROOT files with a metadata
  record, written atomically to a local folder or an fsspec URL.
- :mod:`coffea_lorentz.models` — the taggers: ``minkowski`` and ``frames`` (group primitives) →
  ``layers`` and ``base`` (``TaggerModel``, the contract) → one network per file.
- :mod:`coffea_lorentz.symmetry` — the shipped symmetry checks and their per-dtype ``TOLERANCE``.
- :mod:`coffea_lorentz.serve`, :mod:`coffea_lorentz.repository`, :mod:`coffea_lorentz.export`,
  :mod:`coffea_lorentz.envoy` — a local Triton server (``TritonServer.serve_forever``), model
  repositories of exported taggers, Envoy in front of several servers.
- :mod:`coffea_lorentz.train` — training and evaluation on jet datasets;
  :mod:`coffea_lorentz.reweight` — classifier reweighting (``reweight.weights`` alone is what a
  worker applying weights imports); :mod:`coffea_lorentz.metrics` — AUC, ROC, rejection.
- :mod:`coffea_lorentz.generate` — Pythia 8 + FastJet samples (optional dependencies).
- :mod:`coffea_lorentz.errors` — every exception, one base class; :mod:`coffea_lorentz.threads`
  — torch's thread count, set for a scope; :mod:`coffea_lorentz.plotting` — one colour per dataset,
  taggers' display names, entries beyond an axis; :mod:`coffea_lorentz.testing` — fixtures for tests.

``Tagger``, ``Reweighter`` and ``load_scores`` are loaded on first use, so importing the package stays light
(no torch, no awkward).
"""

from .errors import CoffeaLorentzError

__version__ = "0.1.0"

#: The tagger ``coffea-lorentz run``, ``demo`` and ``serve`` use when none is named (it ships trained weights).
DEFAULT_TAGGER = "lloca"

__all__ = ["CoffeaLorentzError", "DEFAULT_TAGGER", "Tagger", "Reweighter", "load_scores", "__version__"]

#: Public names loaded on first access: name → module.
_LAZY = {"Tagger": ".tagger", "Reweighter": ".reweighter", "load_scores": ".load"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
